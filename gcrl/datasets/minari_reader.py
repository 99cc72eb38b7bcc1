"""Minari datasets, by local dataset id or by directory, read in bulk.

Each Minari episode stores T+1 observations (the reset observation first) and T actions,
rewards, ``terminations`` and ``truncations``. Row ``t`` of the result is
``(observations[t], actions[t], rewards[t], observations[t + 1])``: the last stored observation
of an episode is only ever a next observation. Infos are stored with T+1 entries (the reset
info first); row ``t`` gets ``infos[t + 1]``, the info returned by the step that took action t
(so ``infos/success[t]`` says whether s' succeeded). An episode cut with neither flag set ends
in a timeout (end of the recorded data).

The ``minari`` package supplies metadata and spaces. For its HDF5 storage the arrays are read
straight from the file into preallocated outputs, one read per array per episode, without
building per-episode objects; other storages (arrow, parquet, JPEG-encoded images) go through
``minari``'s own decoding.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gcrl.datasets.loading import DatasetFormat, SourceProbe
from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.errors import (
    DatasetNotFoundError,
    EmptyEpisodeError,
    GcrlError,
    LengthMismatchError,
    MissingKeyError,
    UnknownFormatError,
)

_STEP_KEYS = ("actions", "rewards", "terminations", "truncations")
_EPISODES_PER_OPEN = 50


def import_minari() -> Any:
    try:
        import minari
    except ImportError:
        raise UnknownFormatError(
            "reading Minari datasets needs the minari package: pip install 'gcrl[minari]'"
        ) from None
    return minari


#: Suffixes of dataset files: a missing path ending so is a missing file, not a Minari id.
FILE_SUFFIXES = (".hdf5", ".h5", ".npz")


def is_minari_dir(path: Path) -> bool:
    """True for a Minari dataset directory (the dataset root or its ``data`` folder)."""
    return (path / "metadata.json").is_file() or (path / "data" / "metadata.json").is_file()


def _recognises(probe: SourceProbe) -> bool:
    """A dataset directory, or a path that does not exist but looks like a dataset id
    (``namespace/name-v0``: resolved, or refused, by the loader)."""
    if probe.is_dir:
        return is_minari_dir(probe.path)
    if probe.is_hdf5 and any(key.startswith("episode_") for key in probe.hdf5_keys):
        raise UnknownFormatError(
            f"{probe.path}: a Minari episode file; load its dataset directory instead"
        )
    text = str(probe.source)
    if Path(text).suffix.lower() in FILE_SUFFIXES:  # a missing file, not a dataset id
        return False
    return not probe.exists and ("/" in text or "-v" in text)


def open_minari(source: str | os.PathLike[str]) -> Any:
    """The ``minari.MinariDataset`` for a dataset directory or a local dataset id."""
    minari = import_minari()
    path = Path(source)
    if path.is_dir():
        data_path = path / "data" if (path / "data" / "metadata.json").is_file() else path
        if not (data_path / "metadata.json").is_file():
            raise DatasetNotFoundError(f"{path}: not a Minari dataset (no metadata.json)")
        return minari.MinariDataset(data_path)
    try:
        return minari.load_dataset(str(source))
    except (FileNotFoundError, ValueError):
        # Minari's own message offers ``download=True``, which gcrl does not: say what to run.
        root = os.environ.get("MINARI_DATASETS_PATH") or "~/.minari/datasets"
        raise DatasetNotFoundError(
            f"{source}: no such file, directory or local Minari dataset id (looked in {root}; "
            f"fetch it first with `minari download {source}`)"
        ) from None


def _space_keys(space: Any, prefix: str) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Flat storage paths of a (possibly nested) Dict/Box/Discrete space."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        out: dict[str, tuple[tuple[int, ...], Any]] = {}
        for key, sub in space.spaces.items():
            out.update(_space_keys(sub, f"{prefix}/{key}"))
        return out
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
        return {prefix: (tuple(space.shape or ()), space.dtype)}
    raise UnknownFormatError(
        f"{prefix}: space {type(space).__name__} is not supported (Box, Discrete, Dict are)"
    )


def _flatten(value: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(sub, f"{prefix}/{key}", out)
    else:
        out[prefix] = np.asarray(value)


def _episodes_decoded(dataset: Any) -> Iterator[dict[str, np.ndarray]]:
    """Flat arrays of each episode through ``minari``'s storage decoding (any backend)."""
    for raw in dataset.storage.get_episodes(dataset.episode_indices):
        episode: dict[str, np.ndarray] = {"id": np.asarray(raw["id"])}
        for key in ("observations", "actions", "infos"):
            if raw.get(key) is not None:
                _flatten(raw[key], key, episode)
        for key in ("rewards", "terminations", "truncations"):
            episode[key] = np.asarray(raw[key])
        yield episode


def _bulk_readable(dataset: Any, layout: dict[str, tuple[tuple[int, ...], Any]]) -> bool:
    """True when the HDF5 file holds the spaces' arrays as they are (no encoding)."""
    if type(dataset.storage).__name__ != "HDF5Storage":
        return False
    import h5py

    file_path = Path(dataset.storage.data_path) / "main_data.hdf5"
    with h5py.File(file_path, "r") as f:
        group = f[f"episode_{int(dataset.episode_indices[0])}"]
        for path, (shape, dtype) in layout.items():
            if path not in group:
                return False
            stored = group[path]
            if tuple(stored.shape[1:]) != shape or stored.dtype != np.dtype(dtype):
                return False
    return True


def load_minari(source: str | os.PathLike[str], *, progress: bool | None = None) -> Trajectories:
    """Load a Minari dataset (directory or local id) as :class:`Trajectories`.

    ``progress`` shows a bar over episodes (default: only on a terminal).
    """
    try:
        return _load(source, progress)
    except GcrlError as err:
        raise err.with_source(source) from None


def _load(source: str | os.PathLike[str], progress: bool | None) -> Trajectories:
    dataset = open_minari(source)
    if len(dataset.episode_indices) == 0:
        raise EmptyEpisodeError("the dataset holds no episode")
    observation_layout = _space_keys(dataset.observation_space, "observations")
    action_layout = _space_keys(dataset.action_space, "actions")
    if len(action_layout) != 1:
        raise UnknownFormatError("actions: Dict action spaces are not supported")
    bar = tqdm(
        total=len(dataset.episode_indices),
        desc="minari episodes",
        unit="ep",
        disable=None if progress is None else not progress,
        leave=False,
    )
    with bar:
        if _bulk_readable(dataset, {**observation_layout, **action_layout}):
            columns, starts = _read_hdf5(dataset, list(observation_layout), bar.update)
        else:
            columns, starts = _read_decoded(dataset, list(observation_layout), bar.update)
    spec = dataset.spec
    env_id = getattr(getattr(spec, "env_spec", None), "id", None)
    attrs: dict[str, Any] = {
        "source": str(source),
        "source_format": "minari",
        "dataset_id": str(getattr(spec, "dataset_id", "")),
    }
    if env_id:
        attrs["env_id"] = env_id
    tasks = _task_table(str(dataset.storage.metadata.get("description") or ""))
    return _trajectories(columns, starts, list(observation_layout), attrs, tasks)


#: Marks the task table gcrl writes into a Minari dataset's description (Minari has no
#: field for it); the per-step task ids are ``infos/task_id``.
TASKS_MARKER = "gcrl tasks: "


def _task_table(description: str) -> tuple[Task, ...]:
    for line in description.splitlines():
        if line.startswith(TASKS_MARKER):
            return tuple(Task(str(n), str(t)) for n, t in json.loads(line[len(TASKS_MARKER) :]))
    return ()


def _per_step_info(path: str, shape: tuple[int, ...], dtype: Any, steps: int) -> bool:
    """True for an info array with T or T+1 numeric entries; warns and returns False otherwise."""
    if np.dtype(dtype).kind in "OUSV" or len(shape) == 0 or shape[0] not in (steps, steps + 1):
        warnings.warn(f"{path}: not a per-step numeric array, skipped", stacklevel=5)
        return False
    return True


class _Columns:
    """Preallocated output columns and the running row count, shared by both readers; each
    episode's array lengths pass :meth:`accept`, the one per-episode check."""

    def __init__(
        self, total: int, layout: dict[str, tuple[tuple[int, ...], Any]], obs_paths: list[str]
    ) -> None:
        self.total = total
        self.arrays = {k: np.empty((total, *shape), dtype) for k, (shape, dtype) in layout.items()}
        self.obs_paths = obs_paths
        self.info_paths = [p for p in self.arrays if p.startswith("infos/")]
        self.starts: list[int] = []
        self.row = 0

    def accept(self, name: str, lengths: Mapping[str, int | None]) -> Episode:
        """Check the stored lengths (None: absent) of episode ``name`` and claim its rows.

        Raises for missing or misaligned actions, rewards, flags and observations (T + 1
        observations for T actions); drops, with a warning, an info key that is missing or has
        neither T nor T + 1 entries.
        """
        steps = lengths.get("actions")
        if steps is None:
            raise MissingKeyError(f"{name}/actions: missing key")
        if steps == 0:
            raise EmptyEpisodeError(f"{name}: the episode holds no transition")
        for key in _STEP_KEYS:
            if lengths.get(key) != steps:
                raise LengthMismatchError(f"{name}/{key}: length differs from actions")
        for path in self.obs_paths:
            if lengths.get(path) != steps + 1:
                raise LengthMismatchError(
                    f"{name}/{path}: {lengths.get(path)} rows, expected {steps + 1} (actions + 1)"
                )
        infos: dict[str, int] = {}
        for path in list(self.info_paths):
            length = lengths.get(path)
            if length in (steps, steps + 1):
                infos[path] = int(length == steps + 1)  # skip the reset info when stored
            else:
                warnings.warn(
                    f"{name}/{path}: missing or misaligned, infos key dropped", stacklevel=4
                )
                del self.arrays[path]
                self.info_paths.remove(path)
        start, stop = self.row, self.row + steps
        if stop > self.total:
            raise LengthMismatchError(
                f"{name}: episodes hold more steps than total_steps={self.total} in the metadata"
            )
        self.starts.append(start)
        self.row = stop
        return Episode(start, stop, infos)

    def done(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if self.row != self.total:
            raise LengthMismatchError(
                f"episodes hold {self.row} steps but total_steps={self.total} in the metadata"
            )
        return self.arrays, np.asarray(self.starts, dtype=np.int64)


@dataclass(frozen=True)
class Episode:
    """Where an accepted episode goes: output rows ``[start, stop)``, and for each info key
    kept the first stored entry to copy (1 when the reset info is stored first)."""

    start: int
    stop: int
    infos: dict[str, int]

    @property
    def steps(self) -> int:
        """T."""
        return self.stop - self.start


def _layout(
    first: dict[str, tuple[tuple[int, ...], Any]], obs_paths: list[str], steps: int
) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Output columns from the first episode's (path -> (shape, dtype)), rewards as float32."""
    layout: dict[str, tuple[tuple[int, ...], Any]] = {}
    for path in obs_paths:
        layout[path] = layout["next_" + path] = (first[path][0][1:], first[path][1])
    for key in _STEP_KEYS:
        layout[key] = (first[key][0][1:], np.float32 if key == "rewards" else first[key][1])
    for path, (shape, dtype) in sorted(first.items()):
        if path.startswith("infos/") and _per_step_info(path, shape, dtype, steps):
            layout[path] = (shape[1:], dtype)
    return layout


def _read_hdf5(
    dataset: Any, obs_paths: list[str], advance: Any
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read every episode straight from the HDF5 file into the output columns.

    Uses h5py's low-level API: each array is read by HDF5 directly into its rows of the output
    (converting dtypes on the way), the observations twice with shifted selections (rows
    ``0..T-1`` and ``1..T``), so no per-episode array or Python object is built.
    """
    import h5py
    from h5py import h5d, h5g, h5s

    file_path = Path(dataset.storage.data_path) / "main_data.hdf5"
    with h5py.File(file_path, "r") as f:
        first_group = f[f"episode_{int(dataset.episode_indices[0])}"]
        first: dict[str, tuple[tuple[int, ...], Any]] = {}
        first_group.visititems(
            lambda p, o: (
                first.__setitem__(p, (o.shape, o.dtype)) if isinstance(o, h5py.Dataset) else None
            )
        )
        columns = _Columns(
            int(dataset.total_steps), _layout(first, obs_paths, first["actions"][0][0]), obs_paths
        )

    def open_array(group: Any, path: str) -> Any:
        """The low-level dataset at ``path`` under ``group``, or None when absent."""
        node = group
        *parents, leaf = path.split("/")
        try:
            for parent in parents:
                node = h5g.open(node, parent.encode())
            return h5d.open(node, leaf.encode())
        except KeyError:
            return None

    def read(data: Any, out: np.ndarray, first_row: int) -> None:
        """Read ``len(out)`` rows of ``data`` from ``first_row`` into ``out``."""
        file_space = data.get_space()
        file_space.select_hyperslab((first_row,) + (0,) * (out.ndim - 1), out.shape)
        data.read(h5s.create_simple(out.shape), file_space, out)

    arrays = columns.arrays
    indices = [int(i) for i in dataset.episode_indices]
    for batch in range(0, len(indices), _EPISODES_PER_OPEN):
        # HDF5's metadata cache grows with every object opened through one file handle (about
        # 50 kB per episode); reopening the file every few episodes keeps memory bounded.
        with h5py.File(file_path, "r") as f:
            for index in indices[batch : batch + _EPISODES_PER_OPEN]:
                name = f"episode_{index}"
                try:
                    group = h5g.open(f.id, name.encode())
                except KeyError:
                    raise MissingKeyError(f"{name}/actions: missing key") from None
                paths = [*_STEP_KEYS, *obs_paths, *columns.info_paths]
                stored = {path: open_array(group, path) for path in paths}
                episode = columns.accept(
                    name, {p: None if d is None else int(d.shape[0]) for p, d in stored.items()}
                )
                rows = slice(episode.start, episode.stop)
                for key in _STEP_KEYS:
                    read(stored[key], arrays[key][rows], 0)
                for path in obs_paths:
                    read(stored[path], arrays[path][rows], 0)
                    read(stored[path], arrays["next_" + path][rows], 1)
                for path, offset in episode.infos.items():
                    read(stored[path], arrays[path][rows], offset)
                advance(1)
    return columns.done()


def _read_decoded(
    dataset: Any, obs_paths: list[str], advance: Any
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read every episode through ``minari``'s decoding (any storage backend)."""
    columns: _Columns | None = None
    for raw in _episodes_decoded(dataset):
        name = f"episode_{int(raw['id'])}"
        if columns is None:
            first = {k: (v.shape, v.dtype) for k, v in raw.items() if k != "id"}
            layout = _layout(first, obs_paths, len(raw["actions"]))
            columns = _Columns(int(dataset.total_steps), layout, obs_paths)
        paths = [*_STEP_KEYS, *obs_paths, *columns.info_paths]
        episode = columns.accept(name, {p: len(raw[p]) if p in raw else None for p in paths})
        rows, arrays = slice(episode.start, episode.stop), columns.arrays
        for key in _STEP_KEYS:
            arrays[key][rows] = raw[key]
        for path in obs_paths:
            arrays[path][rows] = raw[path][:-1]
            arrays["next_" + path][rows] = raw[path][1:]
        for path, offset in episode.infos.items():
            arrays[path][rows] = raw[path][offset : offset + episode.steps]
        advance(1)
    assert columns is not None
    return columns.done()


def _trajectories(
    c: dict[str, np.ndarray],
    starts: np.ndarray,
    obs_paths: list[str],
    attrs: dict[str, Any],
    tasks: tuple[Task, ...] = (),
) -> Trajectories:
    terminals = c["terminations"].astype(bool, copy=False)
    timeouts = c["truncations"].astype(bool, copy=False)
    last = np.append(starts[1:], len(terminals)) - 1
    timeouts[last] |= ~terminals[last]

    def observations(prefix: str) -> np.ndarray | dict[str, np.ndarray]:
        if obs_paths == ["observations"]:
            return c[prefix + "observations"]
        cut = len("observations/")
        return {p[cut:]: c[prefix + p] for p in obs_paths}

    return Trajectories(
        observations=observations(""),
        actions=c["actions"],
        rewards=c["rewards"],
        terminals=terminals,
        timeouts=timeouts,
        next_observations=observations("next_"),
        episode_starts=starts,
        task_ids=c["infos/task_id"] if tasks and "infos/task_id" in c else None,
        tasks=tasks if "infos/task_id" in c else (),
        infos={
            p.removeprefix("infos/"): c[p]
            for p in c
            if p.startswith("infos/") and not (tasks and p == "infos/task_id")
        },
        attrs=attrs,
    )


FORMAT = DatasetFormat(
    name="minari",
    kind="Minari dataset",
    signature="a directory with metadata.json, or a local dataset id",
    recognises=_recognises,
    load=load_minari,
    takes_directories=True,
)
