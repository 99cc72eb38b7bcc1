"""The integer codes of relabel strategies, as stored in files: a frozen table.

Offline relabeling marks each output row with ``infos/relabel_strategy``, a code into the
file's ``relabel_strategies`` attribute. The built-in codes never change: a new strategy gets
the next free code, so a file written by any gcrl version decodes to the same names.

>>> RELABEL_CODES["original"], RELABEL_CODES["future"], RELABEL_CODES["zero-reward"]
(0, 3, 9)
>>> code_table()[:4]
['original', 'current', 'final', 'future']
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gcrl.errors import ConfigError

#: Built-in strategy name -> code. Append only; never renumber.
BUILTIN_CODES: Mapping[str, int] = MappingProxyType(
    {
        "original": 0,
        "current": 1,
        "final": 2,
        "future": 3,
        "geometric": 4,
        "episode": 5,
        "random": 6,
        "random-task": 7,
        "high-reward": 8,
        "zero-reward": 9,
        "hindsight-instruction": 10,
    }
)
_codes: dict[str, int] = dict(BUILTIN_CODES)
#: Every registered strategy name -> code (the built-in ones and those added since).
RELABEL_CODES: Mapping[str, int] = MappingProxyType(_codes)
#: Codes are stored as uint8.
MAX_CODE = 255


def register_code(name: str, code: int | None = None) -> int:
    """Give strategy ``name`` a code (the next free one by default) and return it.

    Raises :class:`ConfigError` for a name or code already taken.
    """
    if name in _codes:
        raise ConfigError(f"relabel strategy {name!r}: has code {_codes[name]} already")
    code = max(_codes.values()) + 1 if code is None else int(code)
    if code in _codes.values() or not 0 <= code <= MAX_CODE:
        raise ConfigError(f"relabel strategy {name!r}: code {code} is taken or out of range")
    _codes[name] = code
    return code


def relabel_code(name: str) -> int:
    """The code of strategy ``name``."""
    try:
        return _codes[name]
    except KeyError:
        raise ConfigError(f"relabel strategy: unknown {name!r}") from None


def code_table() -> list[str]:
    """Names indexed by code, as stored in a file's ``relabel_strategies`` attribute (a code
    without a strategy, from a removed registration, is the empty string)."""
    table = [""] * (max(_codes.values()) + 1)
    for name, code in _codes.items():
        table[code] = name
    return table
