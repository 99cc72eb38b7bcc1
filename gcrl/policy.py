"""Trained policies as plain callables on numpy observations.

>>> import gcrl
>>> policy = gcrl.load_policy("runs/csv/version_0/checkpoints/last.ckpt")  # doctest: +SKIP
>>> actions = policy(observations, goals=goals)                           # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gcrl.algorithms import ALGORITHMS
from gcrl.algorithms.base import CHECKPOINT_KEY, GCRLModule
from gcrl.datasets.datamodule import Normalizer
from gcrl.datasets.trajectories import Task
from gcrl.errors import ConfigError, DataError, DatasetNotFoundError
from gcrl.tasks.signals import EmbeddingSignal, NoSignal, OneHotSignal, TextSignal


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """gcrl's metadata of a checkpoint (``algorithm``, ``spec``), read with ``weights_only``.

    Raises a one-line error for a missing file, a file that is not a checkpoint, or a
    checkpoint gcrl did not write.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such checkpoint")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(raw, Mapping) or CHECKPOINT_KEY not in raw:
        raise DataError(f"{path}: not a gcrl checkpoint (no {CHECKPOINT_KEY!r} metadata)")
    return dict(raw[CHECKPOINT_KEY])


def load_module(
    path: str | os.PathLike[str],
    expected: type[GCRLModule] | None = None,
    map_location: str | torch.device = "cpu",
) -> GCRLModule:
    """The trained module of a checkpoint, of the class it was trained as.

    ``expected`` (for example :class:`gcrl.algorithms.BC`) makes a checkpoint of another
    algorithm an error instead of a surprise.
    """
    meta = read_checkpoint_metadata(path)
    name = str(meta.get("algorithm", "")).rsplit(".", 1)[-1]
    cls = ALGORITHMS.get(name)
    if cls is None:
        raise DataError(f"{path}: unknown algorithm {meta.get('algorithm')!r}")
    if expected is not None and not issubclass(cls, expected):
        raise ConfigError(f"{path}: a {name} checkpoint, not {expected.__name__}")
    module = cls.load_from_checkpoint(Path(path), map_location=map_location, weights_only=True)
    module.eval()
    return module


class LoadedPolicy:
    """A trained policy: ``policy(observations, goals=..., task_ids=..., texts=...)``.

    ``observations`` are raw: a dict (the keys the model was trained on are used, and
    ``desired_goal`` serves as the goal when ``goals`` is not given) or an array; one
    observation or a batch. The task comes from ``goals``, ``task_ids`` or ``texts`` (any
    instruction, embedded with the model's text encoder), as the model's task signal needs.
    Returns numpy actions (int indices for discrete actions), batched like the input.
    """

    def __init__(self, module: GCRLModule) -> None:
        self.module = module
        self.spec = module.spec
        self._embedder: Any = None
        self.normalizer = Normalizer.from_spec(self.spec)

    @property
    def task_names(self) -> list[str]:
        """The names of the tasks the policy was trained on, in task-id order."""
        return [str(t["name"]) for t in self.spec.get("tasks", [])]

    def on_tasks(
        self, observations: np.ndarray | Mapping[str, np.ndarray], tasks: Sequence[Task]
    ) -> np.ndarray:
        """Actions for a batch whose row ``i`` pursues ``tasks[i]`` (the evaluation protocol
        of :func:`gcrl.evaluation.evaluate`).

        Training tasks are found by name and given their task ids; a text-conditioned policy
        gets each task's instruction, so it can also run tasks it was not trained on; a
        goal-conditioned one takes its goals from the observations' ``desired_goal``.
        """
        index = {name: i for i, name in enumerate(self.task_names)}
        known = all(t.name in index for t in tasks)
        ids = np.array([index[t.name] for t in tasks]) if known else None
        if isinstance(self.module.signal, TextSignal):
            texts = None if known else [t.text for t in tasks]
            return self(observations, task_ids=ids, texts=texts)
        if ids is None and self._needs_task_ids():
            unknown = next(t.name for t in tasks if t.name not in index)
            raise ConfigError(
                f"--tasks: {unknown!r} is not among the policy's training tasks "
                f"({', '.join(index)}); a task-id policy cannot run it"
            )
        return self(observations, task_ids=ids)

    def _needs_task_ids(self) -> bool:
        signal = self.module.signal
        return isinstance(signal, OneHotSignal | EmbeddingSignal) or self.module.num_heads > 1

    def __call__(
        self,
        observations: np.ndarray | Mapping[str, np.ndarray],
        goals: np.ndarray | None = None,
        task_ids: np.ndarray | Sequence[int] | int | None = None,
        texts: Sequence[str] | str | None = None,
    ) -> np.ndarray:
        obs, single = self._state(observations)
        batch = len(obs)
        device = self.module.device
        if goals is None and isinstance(observations, Mapping) and "desired_goal" in observations:
            goals = np.asarray(observations["desired_goal"])
        goal_tensor = None
        if goals is not None:
            flat_goals = np.asarray(goals, dtype=np.float32).reshape(batch, -1)
            goal_tensor = torch.as_tensor(self.normalizer.goals(flat_goals), device=device)
        id_tensor = None
        if task_ids is not None:
            ids = np.broadcast_to(np.asarray(task_ids), (batch,)).copy()
            id_tensor = torch.as_tensor(ids, device=device).long()
        with torch.no_grad():
            if texts is not None:
                condition = self._text_condition(texts, batch).to(device)
            elif isinstance(self.module.signal, NoSignal):  # nothing to size the batch by
                condition = torch.zeros(batch, 0, device=device)
            else:
                condition = self.module.signal(goal_tensor, id_tensor)
            state = torch.as_tensor(obs, device=device)
            actions = self.module.act(state, condition, id_tensor).cpu().numpy()
        return actions[0] if single else actions

    def _state(
        self, observations: np.ndarray | Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, bool]:
        keys = self.spec.get("observation_keys")
        if isinstance(observations, Mapping):
            if not keys:
                raise ConfigError("observations: the model was trained on array observations")
            parts = [np.asarray(observations[k], dtype=np.float32) for k in keys]
        else:
            parts = [np.asarray(observations, dtype=np.float32)]
        single = parts[0].ndim == 1
        parts = [p.reshape(1, -1) if single else p.reshape(len(p), -1) for p in parts]
        obs = np.concatenate(parts, axis=1)
        if obs.shape[1] != self.spec["observation_dim"]:
            raise ConfigError(
                f"observations: {obs.shape[1]} values per observation, the model takes "
                f"{self.spec['observation_dim']}"
            )
        return self.normalizer.observations(obs), single

    def _text_condition(self, texts: Sequence[str] | str, batch: int) -> torch.Tensor:
        from gcrl.tasks.text import TextEmbedder

        signal = self.module.signal
        if not isinstance(signal, TextSignal):
            raise ConfigError("texts: the model is not text-conditioned")
        texts = [texts] * batch if isinstance(texts, str) else list(texts)
        if self._embedder is None:  # kept: it caches each text's vector in memory
            self._embedder = TextEmbedder(signal.model)
        return torch.from_numpy(self._embedder.embed(texts))


def load_policy(checkpoint: str | os.PathLike[str]) -> LoadedPolicy:
    """A callable policy from a ``gcrl fit`` checkpoint (loaded with ``weights_only``)."""
    return LoadedPolicy(load_module(checkpoint))
