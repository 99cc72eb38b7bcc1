"""The format registry and one entry point, :func:`load`, that detects a source's format.

Each format module declares a :class:`DatasetFormat`: its name, how it recognises a source
(from a :class:`SourceProbe`, which reads each fact about the source at most once) and its
loader. :func:`formats` imports the built-in format modules on first use; a new format is one
module with a ``FORMAT`` and one line in :data:`BUILTIN_FORMATS` (or a call to
:func:`register_format` from outside the package).

>>> list(formats())
['gcrl', 'd4rl', 'ogbench', 'minari']
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from gcrl.datasets.trajectories import Trajectories
from gcrl.errors import DatasetNotFoundError, UnknownFormatError, option, reading
from gcrl.io import resolve_source

#: Modules declaring the built-in formats, in the order detection tries them.
BUILTIN_FORMATS = (
    "gcrl.datasets.native_format",
    "gcrl.datasets.d4rl_format",
    "gcrl.datasets.ogbench_format",
    "gcrl.datasets.minari_reader",
)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK"


class SourceProbe:
    """Facts about a source path for format detection, each read at most once."""

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.source = source
        self.path = Path(source)

    @cached_property
    def exists(self) -> bool:
        """Whether the path exists."""
        return self.path.exists()

    @cached_property
    def is_dir(self) -> bool:
        """Whether the path is a directory."""
        return self.path.is_dir()

    @cached_property
    def head(self) -> bytes:
        """The file's first 8 bytes (empty for a directory or a missing path)."""
        if not self.path.is_file():
            return b""
        with open(self.path, "rb") as f:
            return f.read(8)

    @property
    def is_hdf5(self) -> bool:
        """The file starts with HDF5's signature."""
        return self.head == _HDF5_MAGIC

    @property
    def is_zip(self) -> bool:
        """The file starts with a zip signature (npz files are zip archives)."""
        return self.head.startswith(_ZIP_MAGIC)

    @cached_property
    def _hdf5_root(self) -> tuple[frozenset[str], dict[str, Any]]:
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                return frozenset(f), dict(f.attrs)
        except OSError as err:
            raise UnknownFormatError(f"{self.path}: an unreadable HDF5 file ({err})") from None

    @property
    def hdf5_keys(self) -> frozenset[str]:
        """Root keys of an HDF5 file (empty for anything else)."""
        return self._hdf5_root[0] if self.is_hdf5 else frozenset()

    @property
    def hdf5_attrs(self) -> dict[str, Any]:
        """Root attributes of an HDF5 file (empty for anything else)."""
        return self._hdf5_root[1] if self.is_hdf5 else {}


@dataclass(frozen=True)
class DatasetFormat:
    """One readable format: declared by its module as ``FORMAT``."""

    #: The name ``load(format=...)`` and ``--format`` take.
    name: str
    #: What holds the data: ``HDF5``, ``npz`` or ``Minari dataset`` (for error messages).
    kind: str
    #: What tells it apart within its kind (for error messages).
    signature: str
    #: True when the probed source is in this format. May raise a one-line error for a source
    #: that is clearly meant for it but unusable (a Minari episode file, for instance).
    recognises: Callable[[SourceProbe], bool]
    #: ``load(source, **options) -> Trajectories``.
    load: Callable[..., Trajectories]
    #: Whether its sources can be directories.
    takes_directories: bool = False


_REGISTRY: dict[str, DatasetFormat] = {}


def register_format(fmt: DatasetFormat) -> None:
    """Add a format after the built-in ones (detection tries formats in registration order)."""
    registry = formats()
    if fmt.name in registry:
        raise UnknownFormatError(f"format: {fmt.name!r} is registered already")
    registry[fmt.name] = fmt


def formats() -> dict[str, DatasetFormat]:
    """Every format by name, in detection order (the built-in modules imported on first use)."""
    if not _REGISTRY:
        for module in BUILTIN_FORMATS:
            fmt: DatasetFormat = importlib.import_module(module).FORMAT
            _REGISTRY[fmt.name] = fmt
    return _REGISTRY


def format_names() -> tuple[str, ...]:
    """The registered format names, in detection order."""
    return tuple(formats())


def detect_format(source: str | os.PathLike[str]) -> str:
    """The format name of ``source`` (see :func:`formats`).

    Files are recognised by content, not extension: HDF5 files by gcrl's root attribute
    (native) or D4RL's root keys; zip files as OGBench npz; directories and bare ids
    (``namespace/name-v0``) as Minari datasets. ``bundled:NAME`` is a bundled native file.
    """
    probe = SourceProbe(resolve_source(source))
    with reading(probe.path):
        for fmt in formats().values():
            if fmt.recognises(probe):
                return fmt.name
        raise _unrecognised(probe)


def root_attributes(source: str | os.PathLike[str]) -> dict[str, Any]:
    """The root attributes of an HDF5 source (a native file's provenance, such as the
    ``success_radius`` its rewards used), as plain Python values; ``{}`` for other sources."""
    probe = SourceProbe(resolve_source(source))
    if not probe.exists or probe.is_dir:
        return {}
    with reading(probe.path):
        raw = probe.hdf5_attrs
    return {
        k: v.item() if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else v
        for k, v in raw.items()
    }


def check_format_applies(source: str | os.PathLike[str], name: str) -> None:
    """Raise unless a format named explicitly (``--format``) can read what ``source`` is: an
    HDF5 format a file with HDF5's signature, an npz format a zip file. Without this check the
    storage library's own error (\"file signature not found\") would be all the user sees."""
    fmt = formats()[name]
    probe = SourceProbe(source)
    if not probe.exists or probe.is_dir:
        return
    with reading(probe.path):
        wrong = (fmt.kind == "HDF5" and not probe.is_hdf5) or (
            fmt.kind == "npz" and not probe.is_zip
        )
    if wrong:
        raise UnknownFormatError(
            f"{source}: {option('format')} {name} reads {fmt.kind} files, and this is not one"
        )


def _unrecognised(probe: SourceProbe) -> Exception:
    path = probe.path
    registered = list(formats().values())
    if probe.is_dir:
        kinds = _distinct(f.kind for f in registered if f.takes_directories)
        return UnknownFormatError(f"{path}: a directory but not a {' or '.join(kinds)}")
    if not probe.exists:
        return DatasetNotFoundError(f"{probe.source}: no such file")
    if probe.is_hdf5:
        known = " nor ".join(f"{f.name} ({f.signature})" for f in registered if f.kind == "HDF5")
        return UnknownFormatError(f"{path}: HDF5 but neither {known}")
    kinds = _distinct(f.kind for f in registered)
    listed = ", ".join(kinds[:-1]) + (f" or {kinds[-1]}" if len(kinds) > 1 else kinds[0])
    return UnknownFormatError(f"{path}: not an {listed}")


def _distinct(values: Any) -> list[str]:
    return list(dict.fromkeys(values))


def load(source: str | os.PathLike[str], format: str | None = None, **options: Any) -> Trajectories:
    """Load any supported dataset as :class:`~gcrl.datasets.Trajectories`.

    ``format`` overrides detection. ``options`` go to the format's loader:
    ``gcrl``: none; ``d4rl``: ``max_episode_steps``, ``goal``, ``achieved_goal_dims``;
    ``minari``: ``progress``; ``ogbench``: ``terminals_are_timeouts``. ``bundled:NAME`` loads
    a dataset shipped inside the package.
    """
    source = resolve_source(source)
    name = format or detect_format(source)
    fmt = formats().get(name)
    if fmt is None:
        raise UnknownFormatError(
            f"format: unknown {name!r}; choose one of {', '.join(format_names())}"
        )
    if format is not None:
        check_format_applies(source, name)
    with reading(source):
        return fmt.load(source, **options)
