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

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gcrl.datasets.trajectories import Trajectories
from gcrl.errors import (
    DatasetNotFoundError,
    EmptyEpisodeError,
    GcrlError,
    LengthMismatchError,
    MissingKeyError,
    UnknownFormatError,
)

_STEP_KEYS = ("actions", "rewards", "terminations", "truncations")


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
        return {prefix: (tuple(space.shape), space.dtype)}
    raise UnknownFormatError(
        f"{prefix}: space {type(space).__name__} is not supported (Box, Discrete, Dict are)"
    )


def _episodes_hdf5(dataset: Any, paths: list[str]) -> Iterator[dict[str, np.ndarray]]:
    """Flat arrays of each episode, read straight from the storage's HDF5 file."""
    import h5py

    file_path = Path(dataset.storage.data_path) / "main_data.hdf5"
    with h5py.File(file_path, "r") as f:
        first = f[f"episode_{int(dataset.episode_indices[0])}"]
        info_paths: list[str] = []
        if "infos" in first:
            first["infos"].visititems(
                lambda name, obj: info_paths.append(f"infos/{name}")
                if isinstance(obj, h5py.Dataset)
                else None
            )
        for index in dataset.episode_indices:
            name = f"episode_{int(index)}"
            group = f[name]
            episode = {"id": np.asarray(index)}
            for path in paths:
                if path not in group:
                    raise MissingKeyError(f"{name}/{path}: missing key")
                episode[path] = group[path][()]
            for path in info_paths:
                if path in group:
                    episode[path] = group[path][()]
            yield episode


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
    layout = {**observation_layout, **action_layout}
    paths = [*observation_layout, *_STEP_KEYS]
    episodes = (
        _episodes_hdf5(dataset, paths) if _bulk_readable(dataset, layout) else _episodes_decoded(dataset)
    )
    total = int(dataset.total_steps)
    sink = _Sink(total, observation_layout)
    bar = tqdm(
        episodes,
        total=len(dataset.episode_indices),
        desc="minari episodes",
        unit="ep",
        disable=None if progress is None else not progress,
        leave=False,
    )
    for episode in bar:
        sink.add(episode)
    spec = dataset.spec
    env_id = getattr(getattr(spec, "env_spec", None), "id", None)
    attrs: dict[str, Any] = {
        "source": str(source),
        "source_format": "minari",
        "dataset_id": str(getattr(spec, "dataset_id", "")),
    }
    if env_id:
        attrs["env_id"] = env_id
    return sink.finish(attrs)


class _Sink:
    """Preallocated outputs filled episode by episode: T+1 observations to T transitions."""

    def __init__(self, total: int, observation_layout: dict[str, Any]) -> None:
        self.total = total
        self.obs_paths = list(observation_layout)
        self.columns: dict[str, np.ndarray] = {}
        self.info_paths: list[str] | None = None
        self.starts: list[int] = []
        self.row = 0

    def _allocate(self, episode: dict[str, np.ndarray]) -> None:
        def empty(array: np.ndarray) -> np.ndarray:
            return np.empty((self.total, *array.shape[1:]), dtype=array.dtype)

        for path in self.obs_paths:
            self.columns[path] = empty(episode[path])
            self.columns["next_" + path] = empty(episode[path])
        for key in _STEP_KEYS:
            self.columns[key] = empty(episode[key])
        steps = len(episode["actions"])
        self.info_paths = []
        for path in sorted(k for k in episode if k.startswith("infos/")):
            info = episode[path]
            if info.dtype.kind in "OUS" or info.ndim == 0 or len(info) not in (steps, steps + 1):
                warnings.warn(f"{path}: not a per-step numeric array, skipped", stacklevel=4)
                continue
            self.columns[path] = empty(info)
            self.info_paths.append(path)

    def add(self, episode: dict[str, np.ndarray]) -> None:
        name = f"episode_{int(episode['id'])}"
        if self.info_paths is None:
            self._allocate(episode)
        steps = len(episode["actions"])
        if steps == 0:
            raise EmptyEpisodeError(f"{name}: the episode holds no transition")
        start, stop = self.row, self.row + steps
        if stop > self.total:
            raise LengthMismatchError(
                f"{name}: episodes hold more steps than total_steps={self.total} in the metadata"
            )
        for path in self.obs_paths:
            obs = episode[path]
            if len(obs) != steps + 1:
                raise LengthMismatchError(
                    f"{name}/{path}: {len(obs)} rows, expected {steps + 1} (actions + 1)"
                )
            self.columns[path][start:stop] = obs[:-1]
            self.columns["next_" + path][start:stop] = obs[1:]
        for key in _STEP_KEYS:
            if len(episode[key]) != steps:
                raise LengthMismatchError(
                    f"{name}/{key}: {len(episode[key])} rows, expected {steps} (as actions)"
                )
            self.columns[key][start:stop] = episode[key]
        assert self.info_paths is not None
        for path in list(self.info_paths):
            info = episode.get(path)
            if info is None or len(info) not in (steps, steps + 1):
                warnings.warn(f"{name}/{path}: missing or misaligned, infos key dropped", stacklevel=3)
                self.info_paths.remove(path)
                del self.columns[path]
                continue
            self.columns[path][start:stop] = info[1:] if len(info) == steps + 1 else info
        self.starts.append(start)
        self.row = stop

    def finish(self, attrs: dict[str, Any]) -> Trajectories:
        if self.row != self.total:
            raise LengthMismatchError(
                f"episodes hold {self.row} steps but total_steps={self.total} in the metadata"
            )
        c = self.columns
        terminals = c["terminations"].astype(bool)
        timeouts = c["truncations"].astype(bool)
        last = np.append(np.asarray(self.starts[1:], dtype=np.int64), self.total) - 1
        timeouts[last] |= ~terminals[last]

        def observations(prefix: str) -> np.ndarray | dict[str, np.ndarray]:
            if self.obs_paths == ["observations"]:
                return c[prefix + "observations"]
            cut = len("observations/")
            return {p[cut:]: c[prefix + p] for p in self.obs_paths}

        return Trajectories(
            observations=observations(""),
            actions=c["actions"],
            rewards=c["rewards"],
            terminals=terminals,
            timeouts=timeouts,
            next_observations=observations("next_"),
            episode_starts=np.asarray(self.starts, dtype=np.int64),
            infos={p.removeprefix("infos/"): c[p] for p in self.info_paths or []},
            attrs=attrs,
        )
