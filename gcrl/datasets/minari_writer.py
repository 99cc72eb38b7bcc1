"""Writing Minari datasets (``gcrl collect --minari-id``), readable by :mod:`minari` and by
:func:`gcrl.datasets.minari_reader.load_minari`.

Each episode stores T+1 observations (the last row's ``next_observations`` appended) and its
infos with T+1 entries (the first repeats the first step's, as there is no reset info); task
ids go to ``infos/task_id`` and the task table into the dataset's description.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gcrl.datasets.minari_reader import TASKS_MARKER, import_minari
from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.errors import EmptyDatasetError, OutputExistsError


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
    minari = import_minari()
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
                    jpeg_encoding=False,  # Minari's default JPEG is lossy: images kept exact
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
    if np.issubdtype(observations.dtype, np.integer):  # camera images: uint8 in [0, 255]
        info = np.iinfo(observations.dtype)
        return spaces.Box(
            info.min, info.max, shape=observations.shape[1:], dtype=observations.dtype
        )
    return spaces.Box(-np.inf, np.inf, shape=observations.shape[1:], dtype=observations.dtype)


def _action_space(spaces: Any, actions: np.ndarray) -> Any:
    if np.issubdtype(actions.dtype, np.integer) and actions.ndim == 1:
        return spaces.Discrete(int(actions.max()) + 1)
    return spaces.Box(-1.0, 1.0, shape=actions.shape[1:], dtype=actions.dtype)
