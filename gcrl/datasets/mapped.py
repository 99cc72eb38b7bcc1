"""Datasets larger than memory: a native file's columns as memory-mapped ``.npy`` files.

:func:`memory_mapped` returns a :class:`Trajectories` whose per-row columns (observations,
next observations, actions, rewards, ends, task ids, infos) are read-only ``numpy.memmap``
arrays, so indexing a batch reads only its rows from disk and the operating system keeps as
much of the file cached as memory allows; the rest of gcrl (relabeling, batches) works on it
unchanged. HDF5 stores the native format in compressed chunks, which cannot be mapped, so the
first call writes every column once, chunk by chunk (memory bounded by the chunk), as
uncompressed ``.npy`` files in a cache directory named after the file's absolute path, size
and modification time; later calls map those files directly. The cache is written to a
temporary directory and renamed into place when complete (an interrupt leaves none), and the
source file is only read.

numpy and h5py only.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from gcrl.datasets.native_format import NativeReader
from gcrl.datasets.trajectories import Observations, Trajectories
from gcrl.errors import GcrlError, UnwritableOutputError, reading
from gcrl.io import raise_if_interrupted, remove_stale_temporaries, resolve_source

#: Rows copied per step when the cache is written.
COPY_ROWS = 1 << 16
#: The default cache root (``$XDG_CACHE_HOME/gcrl/mapped``, else ``~/.cache/gcrl/mapped``).
CACHE_ENV = "XDG_CACHE_HOME"
#: Bump when the cache layout changes, so old caches are not read.
CACHE_VERSION = 1


def default_cache_root() -> Path:
    """Where mapped caches go unless a directory is given."""
    base = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache")
    return Path(base) / "gcrl" / "mapped"


def cache_dir_of(path: Path, root: Path) -> Path:
    """The cache directory of the native file ``path`` under ``root``: its name plus a hash of
    its absolute path, size and modification time (a rewritten file gets a new cache)."""
    stat = path.stat()
    key = f"{CACHE_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return root / f"{path.name}-{digest}"


def memory_mapped(
    source: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Trajectories:
    """The native file ``source`` as a :class:`Trajectories` of memory-mapped columns
    (written to the cache under ``cache_dir``, default :func:`default_cache_root`, on first
    use). Returns the record; a file in another format is a one-line
    :class:`~gcrl.errors.GcrlError` (``gcrl convert`` makes a native one)."""
    path = Path(resolve_source(source))
    root = default_cache_root() if cache_dir is None else Path(cache_dir)
    with reading(path):
        reader = NativeReader(path)
    with reader:
        cache = cache_dir_of(path, root)
        if not (cache / "layout.json").is_file():
            _write_cache(reader, cache)
        attrs = {"source": str(path), "source_format": "gcrl", **reader.attrs}
        episode_starts, tasks = reader.episode_starts, reader.tasks
    layout = json.loads((cache / "layout.json").read_text())
    columns = {name: np.load(cache / f"{name}.npy", mmap_mode="r") for name in layout["columns"]}

    def observations(prefix: str) -> Observations:
        if prefix in columns:
            return columns[prefix]
        keys = [n.split("/", 1)[1] for n in layout["columns"] if n.startswith(prefix + "/")]
        return {k: columns[f"{prefix}/{k}"] for k in keys}

    try:
        return Trajectories(
            observations=observations("observations"),
            actions=columns["actions"],
            rewards=columns["rewards"],
            terminals=columns["terminals"],
            timeouts=columns["timeouts"],
            next_observations=observations("next_observations"),
            episode_starts=episode_starts,
            task_ids=columns.get("task_ids"),
            tasks=tasks,
            infos={n.split("/", 1)[1]: v for n, v in columns.items() if n.startswith("infos/")},
            attrs={**attrs, "memory_mapped": str(cache)},
        )
    except GcrlError as err:
        raise err.with_source(path) from None


def _write_cache(reader: NativeReader, cache: Path) -> None:
    """Every per-row column of ``reader`` as ``<column>.npy`` (``/`` in a storage name
    becomes a subdirectory), plus ``layout.json``, written under a temporary name and renamed
    to ``cache``."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnwritableOutputError(f"{cache.parent}: cannot create ({err.strerror})") from None
    remove_stale_temporaries(cache)  # a killed writer's directory
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    n = reader.num_transitions
    layout: dict[str, Any] = {"columns": [], "rows": n}
    try:
        for name, (row_shape, dtype) in sorted(reader.layout().items()):
            target = tmp / f"{name}.npy"
            target.parent.mkdir(parents=True, exist_ok=True)
            out = np.lib.format.open_memmap(target, "w+", dtype=dtype, shape=(n, *row_shape))
            node = reader.dataset(name)
            for start in range(0, n, COPY_ROWS):
                raise_if_interrupted()
                stop = min(n, start + COPY_ROWS)
                out[start:stop] = node[start:stop]
            out.flush()
            del out
            layout["columns"].append(name)
        (tmp / "layout.json").write_text(json.dumps(layout))
        try:
            os.rename(tmp, cache)
        except OSError:
            if not (cache / "layout.json").is_file():  # not a writer that got there first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
