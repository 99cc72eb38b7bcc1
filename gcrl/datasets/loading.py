"""One entry point, :func:`load`, that detects a source's format and dispatches to its loader."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gcrl.datasets.trajectories import Trajectories
from gcrl.errors import DatasetNotFoundError, UnknownFormatError

FORMATS = ("gcrl", "d4rl", "minari", "ogbench")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK"


#: ``bundled:NAME`` names a dataset shipped inside the package (``gcrl/data/NAME.hdf5``).
BUNDLED_PREFIX = "bundled:"


def bundled_datasets() -> list[str]:
    """The names of the datasets shipped inside the package."""
    return sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "data").glob("*.hdf5"))


def resolve_source(source: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """``source`` itself, or for ``bundled:NAME`` the path of that bundled dataset."""
    text = str(source)
    if not text.startswith(BUNDLED_PREFIX):
        return source
    name = text[len(BUNDLED_PREFIX) :]
    path = Path(__file__).resolve().parents[1] / "data" / f"{name}.hdf5"
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{source}: no such bundled dataset; bundled: {', '.join(bundled_datasets())}"
        )
    return path


def detect_format(source: str | os.PathLike[str]) -> str:
    """The format name of ``source``: ``gcrl``, ``d4rl``, ``minari`` or ``ogbench``.

    Files are recognised by content, not extension: HDF5 files by gcrl's root attribute
    (native) or D4RL's root keys; zip files as OGBench npz; directories and bare ids
    (``namespace/name-v0``) as Minari datasets. ``bundled:NAME`` is a bundled native file.
    """
    from gcrl.datasets.minari_format import is_minari_dir

    source = resolve_source(source)
    path = Path(source)
    if path.is_dir():
        if is_minari_dir(path):
            return "minari"
        raise UnknownFormatError(f"{path}: a directory but not a Minari dataset")
    if not path.exists():
        if "/" in str(source) or "-v" in str(source):
            return "minari"  # a Minari dataset id; resolved (or refused) by the loader
        raise DatasetNotFoundError(f"{source}: no such file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5_MAGIC:
        import h5py

        from gcrl.datasets.d4rl_format import is_d4rl
        from gcrl.datasets.native_format import is_native

        with h5py.File(path, "r") as f:
            if is_native(f):
                return "gcrl"
            if any(name.startswith("episode_") for name in f):
                raise UnknownFormatError(
                    f"{path}: a Minari episode file; load its dataset directory instead"
                )
            if is_d4rl(f):
                return "d4rl"
        raise UnknownFormatError(
            f"{path}: HDF5 but neither gcrl (root attribute 'format') "
            "nor D4RL (root keys 'observations' and 'actions')"
        )
    if head.startswith(_ZIP_MAGIC):
        return "ogbench"
    raise UnknownFormatError(f"{path}: not an HDF5, npz or Minari dataset")


def load(source: str | os.PathLike[str], format: str | None = None, **options: Any) -> Trajectories:
    """Load any supported dataset as :class:`~gcrl.datasets.Trajectories`.

    ``format`` overrides detection. ``options`` go to the format's loader:
    ``gcrl``: none; ``d4rl``: ``max_episode_steps``, ``goal``, ``achieved_goal_dims``;
    ``minari``: ``progress``; ``ogbench``: ``terminals_are_timeouts``. ``bundled:NAME`` loads
    a dataset shipped inside the package.
    """
    source = resolve_source(source)
    if format is None:
        format = detect_format(source)
    if format == "gcrl":
        from gcrl.datasets.native_format import load_native

        return load_native(source, **options)
    if format == "d4rl":
        from gcrl.datasets.d4rl_format import load_d4rl

        if not Path(source).is_file():
            raise DatasetNotFoundError(f"{source}: no such file")
        return load_d4rl(source, **options)
    if format == "minari":
        from gcrl.datasets.minari_format import load_minari

        return load_minari(source, **options)
    if format == "ogbench":
        from gcrl.datasets.ogbench_format import load_ogbench

        return load_ogbench(source, **options)
    raise UnknownFormatError(f"format: unknown {format!r}; choose one of {', '.join(FORMATS)}")
