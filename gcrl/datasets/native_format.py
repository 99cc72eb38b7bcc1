"""gcrl's native HDF5 format: writing (atomic, streamed) and lazy reading.

The layout is documented in ``docs/format.md``. Files are written to a temporary file in
the destination directory and renamed into place only once complete, so an interrupted
write never leaves a partial file behind.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from gcrl import __version__
from gcrl.datasets.loading import DatasetFormat, SourceProbe
from gcrl.datasets.trajectories import (
    Observations,
    Task,
    TaskTable,
    Trajectories,
    check_episode_index,
    check_finite,
    check_real_dtype,
    check_task_labels,
    episode_chunks,
)
from gcrl.errors import (
    DataError,
    DatasetNotFoundError,
    GcrlError,
    LengthMismatchError,
    MissingKeyError,
    UnknownFormatError,
    reading,
)
from gcrl.io import atomic_path, raise_if_interrupted, resolve_source

FORMAT_NAME = "gcrl"
FORMAT_VERSION = 1
#: Target size of one HDF5 chunk; about 1 MiB keeps both row slices and compression efficient.
CHUNK_BYTES = 1 << 20
COMPRESSIONS = ("lzf", "gzip", "none")
#: What ``--compression`` says of them.
COMPRESSION_HELP = (
    "HDF5 compression of the output: lzf (default, fast), gzip (smaller files, slower to "
    "write) or none"
)
_ROW_COLUMNS = ("actions", "rewards", "terminals", "timeouts")


#: The group of side tables: rows that are not transitions (goal references, for instance).
TABLES = "tables"


def _chunk_rows(row_shape: tuple[int, ...], itemsize: int) -> int:
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * itemsize)
    return int(max(1, min(1 << 16, CHUNK_BYTES // row_bytes)))


class NativeWriter:
    """Append trajectories to a new native file, then :meth:`close` to rename it into place.

    Use as a context manager; on an exception the temporary file is removed and nothing is
    written at ``path``. Each :meth:`append` takes whole episodes; a ``task`` labels all of
    its rows, otherwise the part's own task table is merged (indices by first appearance).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        compression: str = "lzf",
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise UnknownFormatError(
                f"compression: unknown {compression!r}; choose one of {', '.join(COMPRESSIONS)}"
            )
        self.path = Path(path)
        self._compression = None if compression == "none" else compression
        self._attrs = dict(attrs or {})
        self._atomic = atomic_path(self.path, overwrite=overwrite)
        self._tmp = self._atomic.__enter__()
        self._file = h5py.File(self._tmp, "w")
        self._rows = 0
        self._num_episodes = 0
        self._table = TaskTable()
        self._has_tasks: bool | None = None
        self._layout: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] | None = None

    def __enter__(self) -> NativeWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc_type, exc, tb)

    def abort(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        """Close and delete the temporary file; nothing appears at ``path``."""
        self._file.close()
        self._atomic.__exit__(exc_type or GcrlError, exc or GcrlError("aborted"), tb)

    @property
    def num_transitions(self) -> int:
        """Rows written so far."""
        return self._rows

    def append(self, part: Trajectories, task: Task | None = None) -> None:
        """Append ``part`` (whole episodes)."""
        raise_if_interrupted()
        task_ids = self._table.ids_for(part, task)
        if self._has_tasks is None:
            self._has_tasks = task_ids is not None
        elif self._has_tasks != (task_ids is not None):
            raise DataError(f"{self.path}: every appended dataset needs a task once one has a task")
        columns = part.columns()
        del columns["episode_starts"]
        if task_ids is not None:
            columns["task_ids"] = task_ids
        layout = {k: (v.shape[1:], v.dtype) for k, v in columns.items()}
        if self._layout is None:
            self._create({**columns, "episode_starts": part.episode_starts})
            self._layout = layout
        elif layout != self._layout:
            raise DataError(
                f"{self.path}: appended columns differ from the first: "
                f"{sorted(set(layout.items()) ^ set(self._layout.items()), key=str)}"
            )
        start, stop = self._rows, self._rows + len(part)
        for name, array in columns.items():
            dataset = self._file[name]
            dataset.resize(stop, axis=0)
            dataset[start:stop] = array
        # Written as it goes, so memory does not grow with the output (many short episodes).
        starts = self._file["episode_starts"]
        starts.resize(self._num_episodes + part.num_episodes, axis=0)
        starts[self._num_episodes :] = part.episode_starts + start
        self._num_episodes += part.num_episodes
        self._rows = stop

    def append_table(self, table: str, columns: Mapping[str, np.ndarray]) -> None:
        """Append rows to the side table ``table`` (``tables/<table>/<column>``: 1-D columns of
        one length, not per transition; :meth:`NativeReader.table` reads it back)."""
        raise_if_interrupted()
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise DataError(f"tables/{table}: columns of different lengths")
        group = self._file.require_group(f"{TABLES}/{table}")
        for name, values in columns.items():
            array = np.asarray(values)
            if name not in group:
                self._growable(group, name, array)
            dataset = group[name]
            start = len(dataset)
            dataset.resize(start + len(array), axis=0)
            dataset[start:] = array

    def _create(self, columns: dict[str, np.ndarray]) -> None:
        for name, array in columns.items():
            self._growable(self._file, name, array)

    def _growable(self, group: h5py.Group, name: str, array: np.ndarray) -> None:
        """An empty dataset ``name`` in ``group`` for rows like ``array``'s, chunked and
        compressed, that appends resize."""
        if array.dtype.kind in "OUS":
            raise DataError(f"{name}: dtype {array.dtype} cannot be stored; use numbers")
        group.create_dataset(
            name,
            shape=(0, *array.shape[1:]),
            maxshape=(None, *array.shape[1:]),
            dtype=array.dtype,
            chunks=(_chunk_rows(array.shape[1:], array.dtype.itemsize), *array.shape[1:]),
            compression=self._compression,
            shuffle=self._compression is not None and array.dtype.itemsize > 1,
        )

    def close(self) -> None:
        """Write the episode index, task table and attributes, then rename into place."""
        if self._rows == 0:
            self.abort()
            raise DataError(f"{self.path}: nothing to write, the dataset holds no transition")
        f = self._file
        if self._has_tasks:
            group = f.create_group("tasks")
            string = h5py.string_dtype("utf-8")
            group.create_dataset("names", data=[t.name for t in self._table.tasks], dtype=string)
            group.create_dataset("texts", data=[t.text for t in self._table.tasks], dtype=string)
        attrs = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "gcrl_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "num_transitions": self._rows,
            "num_episodes": self._num_episodes,
            "observations_are_dict": isinstance(f["observations"], h5py.Group),
        }
        for key, value in {**self._attrs, **attrs}.items():
            f.attrs[key] = _attr_value(value)
        f.close()
        self._atomic.__exit__(None, None, None)


def _attr_value(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
        return value
    return json.dumps(value)


def save(
    trajectories: Trajectories,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    compression: str = "lzf",
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``trajectories`` to ``path`` in the native format, atomically. Returns the path.

    ``attrs`` are stored as root attributes beside ``trajectories.attrs`` (provenance).
    """
    with NativeWriter(
        path,
        overwrite=overwrite,
        compression=compression,
        attrs={**trajectories.attrs, **(attrs or {})},
    ) as writer:
        writer.append(trajectories)
    return Path(path)


def is_native(file: h5py.File) -> bool:
    """True when an open HDF5 file is in gcrl's native format."""
    return bool(file.attrs.get("format") == FORMAT_NAME)


def _recognises(probe: SourceProbe) -> bool:
    return probe.is_hdf5 and probe.hdf5_attrs.get("format") == FORMAT_NAME


class NativeReader:
    """Lazy reader of a native file: metadata at once, rows only when asked.

    Holds the file open; use as a context manager or call :meth:`close`. Only the small 1-D
    columns needed for summaries (episode index, rewards, flags, task ids) are read whole;
    observations and actions are read a slice at a time.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(resolve_source(path))
        if not self.path.is_file():
            raise DatasetNotFoundError(f"{self.path}: no such file")
        with reading(self.path):
            self._file = h5py.File(self.path, "r")
        try:
            with reading(self.path):
                self._check()
        except Exception:
            self._file.close()
            raise

    def _check(self) -> None:
        f = self._file
        if not is_native(f):
            raise UnknownFormatError(f"{self.path}: not a gcrl file (root attribute 'format')")
        try:
            version = int(f.attrs.get("format_version", 0))
        except (TypeError, ValueError):
            raise UnknownFormatError(
                f"{self.path}: format_version {_plain(f.attrs['format_version'])!r} "
                "is not a version number"
            ) from None
        if version > FORMAT_VERSION:
            raise UnknownFormatError(
                f"{self.path}: format_version {version} is newer than this gcrl reads "
                f"({FORMAT_VERSION}); upgrade gcrl"
            )
        for key in ("observations", "next_observations", *_ROW_COLUMNS, "episode_starts"):
            if key not in f:
                raise MissingKeyError(f"{self.path}: missing key {key!r}")
        try:
            # The index is small (1-D): check it at open so lazy readers can trust it.
            check_episode_index(
                self.episode_starts, self.column("terminals"), self.column("timeouts")
            )
            # The other small columns too, so that a lazy summary refuses what loading would.
            rewards = self.column("rewards")
            check_real_dtype("rewards", rewards)
            if rewards.shape != (self.num_transitions,):
                raise DataError(
                    f"rewards: shape {rewards.shape}, expected ({self.num_transitions},)"
                )
            check_finite("rewards", rewards)
            task_ids = self.column("task_ids") if self.has("task_ids") else None
            check_task_labels(task_ids, self.tasks, self.num_transitions)
        except GcrlError as err:
            raise err.with_source(self.path) from None

    def __enter__(self) -> NativeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    # ----------------------------------------------------------------- metadata
    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes (format, version, provenance)."""
        return {k: _plain(v) for k, v in self._file.attrs.items()}

    @property
    def num_transitions(self) -> int:
        """N."""
        return int(self._file["actions"].shape[0])

    @property
    def episode_starts(self) -> np.ndarray:
        """Start row of each episode, ``[E]`` int64."""
        return np.asarray(self._file["episode_starts"][()], dtype=np.int64)

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The task table (empty when the file has no task labels)."""
        if "tasks" not in self._file:
            return ()
        group = self._file["tasks"]
        names = group["names"].asstr()[()]
        texts = group["texts"].asstr()[()]
        if len(names) != len(texts):
            raise LengthMismatchError(
                f"{self.path}: tasks/texts: {len(texts)} texts for {len(names)} task names"
            )
        return tuple(Task(str(n), str(t)) for n, t in zip(names, texts, strict=True))

    def column(self, name: str) -> np.ndarray:
        """One whole column by storage name, e.g. ``rewards`` or ``task_ids``."""
        if name not in self._file:
            raise MissingKeyError(f"{self.path}: missing key {name!r}")
        return np.asarray(self._file[name][()])

    def dataset(self, name: str) -> h5py.Dataset:
        """The HDF5 dataset of the column ``name`` (a storage name such as
        ``observations/observation``), unread."""
        node = self._file.get(name)
        if not isinstance(node, h5py.Dataset):
            raise MissingKeyError(f"{self.path}: missing key {name!r}")
        return node

    def has(self, name: str) -> bool:
        """True when the file holds the column ``name``."""
        return name in self._file

    def table(self, name: str) -> dict[str, np.ndarray] | None:
        """The side table ``name`` (see :meth:`NativeWriter.append_table`) read whole, or
        None when the file has none."""
        key = f"{TABLES}/{name}"
        if key not in self._file:
            return None
        with reading(self.path):
            return {column: np.asarray(data) for column, data in self._file[key].items()}

    def layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
        """Per-row shape and dtype of every column, by storage name."""
        out: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and not name.startswith(("tasks", TABLES)):
                if name != "episode_starts":
                    out[name] = (tuple(obj.shape[1:]), obj.dtype)

        self._file.visititems(visit)
        return out

    # ----------------------------------------------------------------- rows
    def read_episodes(self, first: int, stop: int) -> Trajectories:
        """Episodes ``[first, stop)`` as an in-memory record (reads only their rows)."""
        starts = self.episode_starts
        if not (0 <= first < stop <= len(starts)):
            raise IndexError(f"episodes [{first}, {stop}) out of [0, {len(starts)})")
        row0 = int(starts[first])
        row1 = int(starts[stop]) if stop < len(starts) else self.num_transitions
        return self._read(slice(row0, row1), starts[first:stop] - row0)

    def iter_chunks(self, max_rows: int = 1 << 18) -> Iterator[Trajectories]:
        """Stream the file as records of whole episodes, about ``max_rows`` rows each.

        A single episode longer than ``max_rows`` comes alone. Memory use is bounded by the
        chunk size, not the file size.
        """
        for first, stop in episode_chunks(self.episode_starts, self.num_transitions, max_rows):
            yield self.read_episodes(first, stop)

    def load(self) -> Trajectories:
        """The whole file as an in-memory record."""
        return self._read(slice(0, self.num_transitions), self.episode_starts)

    def _read(self, rows: slice, episode_starts: np.ndarray) -> Trajectories:
        f = self._file
        tasks = self.tasks
        try:
            return Trajectories(
                observations=_read_obs(f["observations"], rows),
                actions=f["actions"][rows],
                rewards=f["rewards"][rows],
                terminals=f["terminals"][rows],
                timeouts=f["timeouts"][rows],
                next_observations=_read_obs(f["next_observations"], rows),
                episode_starts=episode_starts,
                task_ids=f["task_ids"][rows] if "task_ids" in f else None,
                tasks=tasks,
                infos={k: v[rows] for k, v in f["infos"].items()} if "infos" in f else {},
                attrs={"source": str(self.path), "source_format": "gcrl", **self.attrs},
            )
        except GcrlError as err:
            raise err.with_source(self.path) from None


def _read_obs(node: h5py.Dataset | h5py.Group, rows: slice) -> Observations:
    if isinstance(node, h5py.Group):
        return {k: node[k][rows] for k in node}
    return np.asarray(node[rows])


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_native(path: str | os.PathLike[str]) -> NativeReader:
    """Open a native file lazily; see :class:`NativeReader`."""
    return NativeReader(path)


def load_native(path: str | os.PathLike[str]) -> Trajectories:
    """Read a whole native file."""
    with NativeReader(path) as reader:
        return reader.load()


FORMAT = DatasetFormat(
    name=FORMAT_NAME,
    kind="HDF5",
    signature="root attribute 'format'",
    recognises=_recognises,
    load=load_native,
)
