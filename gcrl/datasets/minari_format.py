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
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.errors import (
    DatasetNotFoundError,
    EmptyDatasetError,
    EmptyEpisodeError,
    GcrlError,
    LengthMismatchError,
    MissingKeyError,
    OutputExistsError,
    UnknownFormatError,
)

_STEP_KEYS = ("actions", "rewards", "terminations", "truncations")
_EPISODES_PER_OPEN = 50


def _import_minari() -> Any:
    try:
        import minari
    except ImportError:
        raise UnknownFormatError(
            "reading Minari datasets needs the minari package: pip install 'gcrl[minari]'"
        ) from None
    return minari


def is_minari_dir(path: Path) -> bool:
    """True for a Minari dataset directory (the dataset root or its ``data`` folder)."""
    return (path / "metadata.json").is_file() or (path / "data" / "metadata.json").is_file()


def open_minari(source: str | os.PathLike[str]) -> Any:
    """The ``minari.MinariDataset`` for a dataset directory or a local dataset id."""
    minari = _import_minari()
    path = Path(source)
    if path.is_dir():
        data_path = path / "data" if (path / "data" / "metadata.json").is_file() else path
        if not (data_path / "metadata.json").is_file():
            raise DatasetNotFoundError(f"{path}: not a Minari dataset (no metadata.json)")
        return minari.MinariDataset(data_path)
    try:
        return minari.load_dataset(str(source))
    except (FileNotFoundError, ValueError) as err:
        raise DatasetNotFoundError(
            f"{source}: no such file, directory or local Minari dataset id ({err})"
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


def save_minari(
    parts: Iterable[Trajectories],
    root: str | os.PathLike[str],
    dataset_id: str,
    attrs: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``parts`` as the Minari dataset ``dataset_id`` under the directory ``root`` (used
    as ``MINARI_DATASETS_PATH``); returns the dataset's directory.

    Each episode stores T+1 observations, and infos with T+1 entries (the first repeats the
    first step's, as Minari has no reset info here); task ids go to ``infos/task_id`` and the
    task table into the description, so :func:`load_minari` restores both. The dataset is
    built in a temporary directory beside ``root`` and renamed into place.
    """
    minari = _import_minari()
    from gymnasium import spaces
    from minari.data_collector.episode_buffer import EpisodeBuffer

    target = Path(root) / dataset_id
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: exists; pass --force to replace it")
    Path(root).mkdir(parents=True, exist_ok=True)
    buffers: list[Any] = []
    tasks: tuple[Task, ...] = ()
    first: Trajectories | None = None
    for part in parts:
        first = first or part
        tasks = part.tasks if len(part.tasks) > len(tasks) else tasks
        for episode in part.episodes():
            buffers.append(_episode_buffer(EpisodeBuffer, episode, len(buffers)))
    if first is None:
        raise EmptyDatasetError(f"{dataset_id}: nothing to write, no episode recorded")
    description = "\n".join(
        [f"{k}: {v}" for k, v in attrs.items()]
        + [TASKS_MARKER + json.dumps([[t.name, t.text] for t in tasks])]
    )
    with tempfile.TemporaryDirectory(dir=Path(root), prefix=".tmp-minari-") as tmp:
        previous = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = tmp
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                minari.create_dataset_from_buffers(
                    dataset_id,
                    buffers,
                    observation_space=_space_of(spaces, first.observations),
                    action_space=_action_space(spaces, first.actions),
                    algorithm_name=str(attrs.get("expert", "gcrl collect")),
                    author="gcrl",
                    author_email="gcrl@example.invalid",
                    code_permalink="https://example.invalid/gcrl",
                    description=description,
                )
        finally:
            if previous is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = previous
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(tmp) / dataset_id, target)
    return target


def _episode_buffer(cls: Any, episode: Trajectories, index: int) -> Any:
    def states(obs: Any, nxt: Any) -> Any:
        if isinstance(obs, dict):
            return {k: np.concatenate([obs[k], nxt[k][-1:]]) for k in obs}
        return np.concatenate([obs, nxt[-1:]])

    infos = dict(episode.infos)
    if episode.task_ids is not None:
        infos["task_id"] = episode.task_ids
    return cls(
        id=index,
        observations=states(episode.observations, episode.next_observations),
        actions=episode.actions,
        rewards=list(episode.rewards),
        terminations=list(episode.terminals),
        truncations=list(episode.timeouts),
        infos={k: np.concatenate([v[:1], v]) for k, v in infos.items()},
    )


def _space_of(spaces: Any, observations: Any) -> Any:
    if isinstance(observations, dict):
        return spaces.Dict({k: _space_of(spaces, v) for k, v in observations.items()})
    return spaces.Box(-np.inf, np.inf, shape=observations.shape[1:], dtype=observations.dtype)


def _action_space(spaces: Any, actions: np.ndarray) -> Any:
    if np.issubdtype(actions.dtype, np.integer) and actions.ndim == 1:
        return spaces.Discrete(int(actions.max()) + 1)
    return spaces.Box(-1.0, 1.0, shape=actions.shape[1:], dtype=actions.dtype)


def _per_step_info(path: str, shape: tuple[int, ...], dtype: Any, steps: int) -> bool:
    """True for an info array with T or T+1 numeric entries; warns and returns False otherwise."""
    if np.dtype(dtype).kind in "OUSV" or len(shape) == 0 or shape[0] not in (steps, steps + 1):
        warnings.warn(f"{path}: not a per-step numeric array, skipped", stacklevel=5)
        return False
    return True


class _Columns:
    """Preallocated output columns and the running row count, shared by both readers."""

    def __init__(self, total: int, layout: dict[str, tuple[tuple[int, ...], Any]]) -> None:
        self.total = total
        self.arrays = {k: np.empty((total, *shape), dtype) for k, (shape, dtype) in layout.items()}
        self.starts: list[int] = []
        self.row = 0

    def claim(self, name: str, steps: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` for the next episode of ``steps`` transitions."""
        if steps == 0:
            raise EmptyEpisodeError(f"{name}: the episode holds no transition")
        start, stop = self.row, self.row + steps
        if stop > self.total:
            raise LengthMismatchError(
                f"{name}: episodes hold more steps than total_steps={self.total} in the metadata"
            )
        self.starts.append(start)
        self.row = stop
        return start, stop

    def drop(self, path: str, name: str) -> None:
        warnings.warn(f"{name}/{path}: missing or misaligned, infos key dropped", stacklevel=4)
        del self.arrays[path]

    def done(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if self.row != self.total:
            raise LengthMismatchError(
                f"episodes hold {self.row} steps but total_steps={self.total} in the metadata"
            )
        return self.arrays, np.asarray(self.starts, dtype=np.int64)


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
            int(dataset.total_steps), _layout(first, obs_paths, first["actions"][0][0])
        )
        info_paths = [p for p in columns.arrays if p.startswith("infos/")]

    def read(group: Any, path: str, out: np.ndarray, rows: tuple[int, int] | None) -> int:
        """Read ``path`` (all rows, or file rows ``rows``) into ``out``; returns its length."""
        node = group
        *parents, leaf = path.split("/")
        for parent in parents:
            node = h5g.open(node, parent.encode())
        data = h5d.open(node, leaf.encode())
        length = int(data.shape[0])
        file_space = data.get_space()
        if rows is not None:
            if rows[1] > length:
                return length
            file_space.select_hyperslab(
                (rows[0],) + (0,) * (out.ndim - 1), (rows[1] - rows[0], *out.shape[1:])
            )
        elif length != len(out):
            return length
        data.read(h5s.create_simple(out.shape), file_space, out)
        return length

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
                    steps = int(h5d.open(group, b"actions").shape[0])
                except KeyError:
                    raise MissingKeyError(f"{name}/actions: missing key") from None
                start, stop = columns.claim(name, steps)
                for key in _STEP_KEYS:
                    if read(group, key, arrays[key][start:stop], None) != steps:
                        raise LengthMismatchError(f"{name}/{key}: length differs from actions")
                for path in obs_paths:
                    length = read(group, path, arrays[path][start:stop], (0, steps))
                    if length != steps + 1:
                        raise LengthMismatchError(
                            f"{name}/{path}: {length} rows, expected {steps + 1} (actions + 1)"
                        )
                    read(group, path, arrays["next_" + path][start:stop], (1, steps + 1))
                for path in list(info_paths):
                    out = arrays[path][start:stop]
                    try:
                        length = read(group, path, out, (1, steps + 1))  # skip the reset info
                        if length == steps:  # stored without the reset info
                            read(group, path, out, None)
                    except KeyError:
                        length = -1
                    if length not in (steps, steps + 1):
                        columns.drop(path, name)
                        info_paths.remove(path)
                advance(1)
    return columns.done()


def _read_decoded(
    dataset: Any, obs_paths: list[str], advance: Any
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read every episode through ``minari``'s decoding (any storage backend)."""
    columns: _Columns | None = None
    info_paths: list[str] = []
    for episode in _episodes_decoded(dataset):
        name = f"episode_{int(episode['id'])}"
        steps = len(episode["actions"])
        if columns is None:
            first = {k: (v.shape, v.dtype) for k, v in episode.items() if k != "id"}
            columns = _Columns(int(dataset.total_steps), _layout(first, obs_paths, steps))
            info_paths = [p for p in columns.arrays if p.startswith("infos/")]
        start, stop = columns.claim(name, steps)
        arrays = columns.arrays
        for key in _STEP_KEYS:
            if len(episode[key]) != steps:
                raise LengthMismatchError(f"{name}/{key}: length differs from actions")
            arrays[key][start:stop] = episode[key]
        for path in obs_paths:
            obs = episode[path]
            if len(obs) != steps + 1:
                raise LengthMismatchError(
                    f"{name}/{path}: {len(obs)} rows, expected {steps + 1} (actions + 1)"
                )
            arrays[path][start:stop] = obs[:-1]
            arrays["next_" + path][start:stop] = obs[1:]
        for path in list(info_paths):
            info = episode.get(path)
            if info is None or len(info) not in (steps, steps + 1):
                columns.drop(path, name)
                info_paths.remove(path)
                continue
            arrays[path][start:stop] = info[1:] if len(info) == steps + 1 else info
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
