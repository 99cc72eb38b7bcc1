"""Trajectories for Lightning: whole relabeled batches drawn by :mod:`gcrl.relabel`.

No per-item ``__getitem__`` plus collate: each step draws a batch of indices at once,
relabels it with the numpy samplers and turns it into tensors (``torch.from_numpy``, no copy).
Lightning moves the batch to the training device.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch

from gcrl.datasets.loading import load
from gcrl.datasets.trajectories import Observations, Trajectories, take_observations
from gcrl.errors import ConfigError, MissingKeyError
from gcrl.relabel import GoalMixture, GoalReward, GoalSampler, TaskSampler
from gcrl.relabel.sampler import goal_columns

#: ``ogbench``: OGBench's value/actor goal mixtures and reward (index equality on s, -1/0).
#: ``her``: HER future goals (``her_k`` per kept one), success within ``tolerance`` on s'.
#: ``none``: stored goals and rewards. ``auto``: ``ogbench`` for goal-conditioned data (dict
#: observations holding ``goal_key``, or array observations with ``goal_dims``), else ``none``.
RELABEL_MODES = ("auto", "ogbench", "her", "none")

Batch = dict[str, torch.Tensor]


class TrajectoryDataModule(L.LightningDataModule):
    """Batches of ``batch_size`` transitions from ``path`` (any supported format).

    Args:
        path: the dataset.
        batch_size: transitions per batch.
        relabel: goal relabeling, one of :data:`RELABEL_MODES`.
        observation_keys: dict observations: the keys concatenated into the state input
            (default ``["observation"]``).
        goal_key: dict observations: the achieved-goal key goals are drawn from.
        goal_dims: array observations: the dimensions forming the goal (default: all, as
            OGBench does); a goal-free dataset needs neither.
        her_k, tolerance: ``her`` mode.
        task_relabel_ratio: share of each batch relabeled to another task (multi-task data,
            rewards from the ``infos/task_rewards`` column; 0 disables).
        normalize: standardise observations and goals by the dataset's per-dimension mean
            and standard deviation (stored in the spec, so checkpoints and
            :func:`gcrl.load_policy` apply the same); rewards and relabeling see raw values.
        val_fraction: share of episodes held out for validation (by episodes, seeded).
        steps_per_epoch, val_batches: batches per training epoch / per validation run.
        seed: all sampling is drawn from generators seeded by it (and the rank).
    """

    def __init__(
        self,
        path: str,
        batch_size: int = 1024,
        relabel: str = "auto",
        observation_keys: list[str] | None = None,
        goal_key: str = "achieved_goal",
        goal_dims: list[int] | None = None,
        her_k: int = 4,
        tolerance: float = 0.5,
        task_relabel_ratio: float = 0.0,
        normalize: bool = False,
        val_fraction: float = 0.0,
        steps_per_epoch: int = 1000,
        val_batches: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if relabel not in RELABEL_MODES:
            raise ConfigError(f"relabel: unknown {relabel!r}; choose one of {RELABEL_MODES}")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction: must lie in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.path = path
        self.batch_size = batch_size
        self.observation_keys = observation_keys or ["observation"]
        self.goal_key = goal_key
        self.goal_dims = goal_dims
        self.her_k = her_k
        self.tolerance = tolerance
        self.task_relabel_ratio = task_relabel_ratio
        self.val_fraction = val_fraction
        self.steps_per_epoch = steps_per_epoch
        self.val_batches = val_batches
        self.seed = seed
        self.data = load(path)
        self._check_keys(self.data)
        if relabel == "auto":
            # Dict observations with an achieved goal, or array observations with goal_dims.
            goal_conditioned = (
                self.goal_key in self.data.observations
                if isinstance(self.data.observations, dict)
                else goal_dims is not None
            )
            relabel = "ogbench" if goal_conditioned else "none"
        self.relabel = relabel
        if self.relabel != "none" and not self._has_goals(self.data):
            raise ConfigError(f"relabel {self.relabel}: {path} holds no goals (goal_key/dims)")
        self.spec = self._spec(self.data)
        if normalize:
            self.spec["normalization"] = self._statistics(self.data)
        self.normalizer = Normalizer.from_spec(self.spec)
        self.train_data: Trajectories = self.data
        self.val_data: Trajectories | None = None

    # ----------------------------------------------------------------- layout
    def _check_keys(self, data: Trajectories) -> None:
        if isinstance(data.observations, dict):
            for key in self.observation_keys:
                if key not in data.observations:
                    raise MissingKeyError(
                        f"{self.path}: observations/{key}: no such key (observation_keys); "
                        f"the observations hold {', '.join(sorted(data.observations))}"
                    )

    def _has_goals(self, data: Trajectories) -> bool:
        if isinstance(data.observations, dict):
            return self.goal_key in data.observations
        return True  # array observations: the goal is (part of) the observation

    def _spec(self, data: Trajectories) -> dict[str, Any]:
        """Shapes and tasks the networks are built for (stored in checkpoints)."""
        discrete = np.issubdtype(data.actions.dtype, np.integer)
        if discrete:
            # The environment's action count when the recipe recorded it: the data may
            # never use the last actions, the policy must still output them.
            action_dim = max(int(data.actions.max()) + 1, int(data.attrs.get("num_actions", 0)))
        else:
            action_dim = int(np.prod(data.actions.shape[1:]))
        goal_dim = 0
        if self.relabel != "none" or self._stored_goals(data) is not None:
            goal_dim = self._goal_columns_width(data)
        return {
            "observation_dim": int(
                self.flat(take_observations(data.observations, np.arange(1))).shape[1]
            ),
            "action_dim": action_dim,
            "discrete": bool(discrete),
            "goal_dim": goal_dim,
            "tasks": [{"name": t.name, "text": t.text} for t in data.tasks]
            or [{"name": "task", "text": ""}],
            # How raw observations become network inputs (used by gcrl.load_policy).
            "observation_keys": self.observation_keys
            if isinstance(data.observations, dict)
            else None,
            "goal_key": self.goal_key if isinstance(data.observations, dict) else None,
            "goal_dims": self.goal_dims,
        }

    def _statistics(self, data: Trajectories) -> dict[str, list[list[float]]]:
        """Per-dimension ``[mean, std]`` of the flat observations and of the goals."""
        stats = {"observation": _mean_std(self.flat(data.observations))}
        if self.spec["goal_dim"]:
            goal_dims = None if isinstance(data.observations, dict) else self.goal_dims
            goals, _ = goal_columns(data, self.goal_key, goal_dims)
            stats["goal"] = _mean_std(goals.reshape(len(goals), -1))
        return stats

    def _goal_columns_width(self, data: Trajectories) -> int:
        if isinstance(data.observations, dict):
            return int(np.prod(data.observations[self.goal_key].shape[1:]))
        return len(self.goal_dims) if self.goal_dims else int(data.observations.shape[1])

    def _stored_goals(self, data: Trajectories) -> np.ndarray | None:
        if isinstance(data.observations, dict):
            return data.observations.get("desired_goal")
        return None

    def flat(self, observations: Observations) -> np.ndarray:
        """The state input: the ``observation_keys`` of dict observations, concatenated."""
        if isinstance(observations, dict):
            parts = [observations[k] for k in self.observation_keys]
            parts = [p.reshape(len(p), -1) for p in parts]
            return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        return observations.reshape(len(observations), -1)

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        """Split episodes into training and validation data (seeded, by episodes)."""
        if self.val_fraction > 0 and self.val_data is None and self.data.num_episodes > 1:
            rng = np.random.default_rng(self.seed)
            order = rng.permutation(self.data.num_episodes)
            held_out = max(1, round(self.val_fraction * self.data.num_episodes))
            self.val_data = self.data.select_episodes(np.sort(order[:held_out]))
            self.train_data = self.data.select_episodes(np.sort(order[held_out:]))

    def train_dataloader(self) -> BatchStream:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        # Each rank draws its own indices; epochs continue the same stream.
        rng = np.random.default_rng([self.seed, rank])
        return BatchStream(self, self.train_data, self.steps_per_epoch, rng)

    def val_dataloader(self) -> FixedBatches:
        if self.val_data is None:
            return FixedBatches([])
        rng = np.random.default_rng([self.seed, 1 << 20])  # the same batches every time
        return FixedBatches(list(BatchStream(self, self.val_data, self.val_batches, rng)))

    def test_dataloader(self) -> FixedBatches:
        return self.val_dataloader()

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # Batches are flat dicts of tensors: skip Lightning's generic (slower) tree walk.
        if all(v.device == device for v in batch.values()):
            return batch
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    # ----------------------------------------------------------------- batches
    def sampler(self, data: Trajectories, rng: np.random.Generator) -> Any:
        """The numpy sampler for ``data`` (a :class:`GoalSampler`, :class:`TaskSampler` or
        the plain row sampler)."""
        goal_dims = None if isinstance(data.observations, dict) else self.goal_dims
        if self.relabel == "ogbench":
            return GoalSampler(
                data,
                goal_key=self.goal_key,
                goal_dims=goal_dims,
                value_goals=GoalMixture.ogbench_value(),
                actor_goals=GoalMixture.ogbench_actor(),
                reward=GoalReward.ogbench(),
                seed=rng,
            )
        if self.relabel == "her":
            return GoalSampler(
                data,
                goal_key=self.goal_key,
                goal_dims=goal_dims,
                value_goals=GoalMixture.her(self.her_k),
                reward=GoalReward(self.tolerance),
                seed=rng,
            )
        if self.task_relabel_ratio > 0:
            if "task_rewards" not in data.infos:
                raise MissingKeyError(
                    f"{self.path}: infos/task_rewards: task_relabel_ratio needs per-task rewards"
                )
            return TaskSampler(
                data,
                task_rewards=data.infos["task_rewards"],
                ratio=self.task_relabel_ratio,
                seed=rng,
            )
        return _RowSampler(data, rng)

    def to_tensors(self, data: Trajectories, batch: dict[str, Any]) -> Batch:
        """The numpy batch as float32/int64 tensors with flat observations."""
        rows = batch["rows"]
        scale = self.normalizer
        out: Batch = {
            "observations": _tensor(scale.observations(self.flat(batch["observations"]))),
            "next_observations": _tensor(scale.observations(self.flat(batch["next_observations"]))),
            "rewards": _tensor(batch["rewards"]),
            "masks": _tensor(batch["masks"]),
            "task_ids": torch.from_numpy(np.asarray(batch["task_ids"], dtype=np.int64))
            if "task_ids" in batch
            else torch.zeros(len(rows), dtype=torch.int64),
        }
        actions = batch["actions"]
        if self.spec["discrete"]:
            out["actions"] = torch.from_numpy(np.asarray(actions, dtype=np.int64).reshape(-1))
        else:
            out["actions"] = _tensor(actions.reshape(len(rows), -1))
        if "value_goals" in batch:
            out["value_goals"] = _tensor(scale.goals(batch["value_goals"].reshape(len(rows), -1)))
            out["actor_goals"] = _tensor(scale.goals(batch["actor_goals"].reshape(len(rows), -1)))
        elif self.spec["goal_dim"]:
            stored = self._stored_goals(data)
            assert stored is not None
            goals = _tensor(scale.goals(stored.take(rows, axis=0).reshape(len(rows), -1)))
            out["value_goals"] = out["actor_goals"] = goals
        return out


class BatchStream:
    """``steps`` batches from ``data``, drawn and relabeled a whole batch at a time."""

    def __init__(
        self,
        module: TrajectoryDataModule,
        data: Trajectories,
        steps: int,
        rng: np.random.Generator,
    ) -> None:
        self.module = module
        self.data = data
        self.steps = steps
        self.numpy_sampler = module.sampler(data, rng)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Batch]:
        for _ in range(self.steps):
            batch = self.numpy_sampler.sample(self.module.batch_size)
            yield self.module.to_tensors(self.data, batch)


class FixedBatches:
    """Batches drawn once (validation: the same held-out batches every time)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)


class _RowSampler:
    """Uniform rows with their stored rewards; ``masks`` are ``1 - terminals``."""

    def __init__(self, data: Trajectories, rng: np.random.Generator) -> None:
        self.data = data
        self.rng = rng

    def sample(self, batch_size: int) -> dict[str, Any]:
        rows = self.rng.integers(0, self.data.num_transitions, size=batch_size)
        terminals = self.data.terminals.take(rows)
        batch = {
            "rows": rows,
            "observations": take_observations(self.data.observations, rows),
            "next_observations": take_observations(self.data.next_observations, rows),
            "actions": self.data.actions.take(rows, axis=0),
            "rewards": self.data.rewards.take(rows),
            "masks": (~terminals).astype(np.float32),
        }
        if self.data.task_ids is not None:
            batch["task_ids"] = self.data.task_ids.take(rows)
        return batch


class Normalizer:
    """Standardises flat observations and goals by stored ``[mean, std]`` (identity when the
    spec holds no ``normalization``)."""

    def __init__(self, stats: Mapping[str, Sequence[Sequence[float]]] | None) -> None:
        def pair(key: str) -> tuple[np.ndarray, np.ndarray] | None:
            if not stats or key not in stats:
                return None
            mean, std = (np.asarray(v, dtype=np.float32) for v in stats[key])
            return mean, std

        self._observation = pair("observation")
        self._goal = pair("goal")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Normalizer:
        """The normalizer a model spec describes."""
        return cls(spec.get("normalization"))

    def observations(self, flat: np.ndarray) -> np.ndarray:
        """``[B, observation dim]`` standardised (float32), or unchanged."""
        return _standardise(flat, self._observation)

    def goals(self, flat: np.ndarray) -> np.ndarray:
        """``[B, goal dim]`` standardised (float32), or unchanged."""
        return _standardise(flat, self._goal)


def _standardise(flat: np.ndarray, pair: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    if pair is None:
        return flat
    mean, std = pair
    return (np.asarray(flat, dtype=np.float32) - mean) / std


def _mean_std(flat: np.ndarray) -> list[list[float]]:
    """``[mean, std]`` per column; a constant column gets std 1 (left unscaled)."""
    values = np.asarray(flat, dtype=np.float64)
    std = values.std(axis=0)
    return [values.mean(axis=0).tolist(), np.where(std > 1e-6, std, 1.0).tolist()]


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
