"""File plumbing every reader and writer shares: bundled datasets and atomic outputs.

Standard library only, so that any layer of gcrl may use it.

>>> str(resolve_source("data.hdf5"))
'data.hdf5'
>>> "pointmaze-medium-navigate" in bundled_datasets()
True
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gcrl.errors import DataError, DatasetNotFoundError, OutputExistsError

#: ``bundled:NAME`` names a dataset shipped inside the package (``gcrl/data/NAME.hdf5``).
BUNDLED_PREFIX = "bundled:"
_BUNDLED_DIR = Path(__file__).resolve().parent / "data"


def bundled_datasets() -> list[str]:
    """The names of the datasets shipped inside the package, sorted."""
    return sorted(p.stem for p in _BUNDLED_DIR.glob("*.hdf5"))


def resolve_source(source: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """``source`` itself, or for ``bundled:NAME`` the path of that bundled dataset."""
    text = str(source)
    if not text.startswith(BUNDLED_PREFIX):
        return source
    name = text[len(BUNDLED_PREFIX) :]
    path = _BUNDLED_DIR / f"{name}.hdf5"
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{source}: no such bundled dataset; bundled: {', '.join(bundled_datasets())}"
        )
    return path


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success, delete on error.

    The temporary file (``.<name>.<pid>-<random>.tmp``, created empty) has the permissions an
    ordinary ``open`` gives under the user's umask, so the output does too. Raises
    :class:`OutputExistsError` when ``path`` exists and ``overwrite`` is false.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"{target}: output exists; pass --force (overwrite=True) to replace"
        )
    if not target.parent.is_dir():
        raise DatasetNotFoundError(f"{target}: output directory {target.parent} does not exist")
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    open(tmp, "xb").close()  # exclusive: never another writer's file
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def refuse_output_among_inputs(
    sources: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> None:
    """Raise when ``output`` is one of ``sources`` (writing would destroy an input)."""
    target = Path(output).resolve()
    for source in sources:
        if Path(source).exists() and Path(source).resolve() == target:
            raise DataError(f"{output}: the output is also an input")
