"""Trajectories for Lightning: whole relabeled batches drawn by :mod:`gcrl.relabel`.

No per-item ``__getitem__`` plus collate: each step draws a batch of indices at once and
relabels it with the numpy samplers. The bulky columns (flat observations, next observations,
actions) are held as tensors on the training device when they fit (:class:`DeviceData`) and
gathered there by row; only the row numbers and the small relabeled columns (goals, rewards,
masks, task ids) cross to the device each step. Otherwise the numpy batch becomes tensors
(``torch.from_numpy``, no copy) that Lightning moves to the device.
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
from gcrl.relabel.sampler import DESIRED_GOAL, goal_columns

#: ``ogbench``: OGBench's value/actor goal mixtures and reward (index equality on s, -1/0).
#: ``her``: HER future goals (``her_k`` per kept one), success within ``tolerance`` on s'.
#: ``none``: stored goals and rewards. ``auto``: ``ogbench`` for goal-conditioned data (dict
#: observations holding ``goal_key``, or array observations with ``goal_dims``), else ``none``.
RELABEL_MODES = ("auto", "ogbench", "her", "none")
#: ``auto``: keep the data on the device when it takes at most :data:`DEVICE_SHARE` of the
#: device's free memory (always on CPU); ``always`` / ``never``.
DEVICE_DATA_MODES = ("auto", "always", "never")
DEVICE_SHARE = 0.5

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
        device_data: hold observations and actions on the training device and gather
            batches there, one of :data:`DEVICE_DATA_MODES`.
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
        device_data: str = "auto",
        val_fraction: float = 0.0,
        steps_per_epoch: int = 1000,
        val_batches: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if relabel not in RELABEL_MODES:
            raise ConfigError(f"relabel: unknown {relabel!r}; choose one of {RELABEL_MODES}")
        if device_data not in DEVICE_DATA_MODES:
            raise ConfigError(
                f"device_data: unknown {device_data!r}; choose one of {DEVICE_DATA_MODES}"
            )
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
        self.device_data = device_data
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
        self._device_data: dict[tuple[int, torch.device], DeviceData] = {}

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
        data = self.train_data
        return BatchStream(self, data, self.steps_per_epoch, rng, self.on_device(data))

    def val_dataloader(self) -> FixedBatches:
        if self.val_data is None:
            return FixedBatches([])
        rng = np.random.default_rng([self.seed, 1 << 20])  # the same batches every time
        stream = BatchStream(
            self, self.val_data, self.val_batches, rng, self.on_device(self.val_data)
        )
        return FixedBatches(list(stream))

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
    @property
    def device(self) -> torch.device:
        """The training device: the trainer's, else CPU."""
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def on_device(self, data: Trajectories) -> DeviceData | None:
        """``data``'s observations and actions on :attr:`device` (built once), or None when
        ``device_data`` or the memory rule says to gather batches in numpy."""
        device = self.device
        key = (id(data), device)
        if key in self._device_data:
            return self._device_data[key]
        if self.device_data == "never" or (
            # The flat state then holds relabeled goals, which only the numpy batch has.
            self.relabel != "none" and DESIRED_GOAL in self.observation_keys
        ):
            return None
        if self.device_data == "auto" and device.type == "cuda":
            # Two float32 state columns of the spec's width, and the actions.
            size = 8 * data.num_transitions * self.spec["observation_dim"] + data.actions.nbytes
            free, _ = torch.cuda.mem_get_info(device)
            if size > DEVICE_SHARE * free:
                return None
        flat = (self.flat(data.observations), self.flat(data.next_observations))
        store = DeviceData(*flat, data.actions, self.normalizer, device, self.spec["discrete"])
        self._device_data[key] = store
        return store

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

    def to_tensors(
        self, data: Trajectories, batch: dict[str, Any], store: DeviceData | None = None
    ) -> Batch:
        """The numpy batch as float32/int64 tensors with flat observations; with a ``store``,
        observations and actions are gathered from it by ``rows`` (the batch may lack them)
        and every tensor is on its device."""
        rows = batch["rows"]
        scale = self.normalizer
        columns: dict[str, np.ndarray] = {
            "rewards": _float32(batch["rewards"]),
            "masks": _float32(batch["masks"]),
            "task_ids": np.asarray(batch["task_ids"], dtype=np.int64)
            if "task_ids" in batch
            else np.zeros(len(rows), dtype=np.int64),
        }
        if "value_goals" in batch:
            for key in ("value_goals", "actor_goals"):
                columns[key] = _float32(scale.goals(batch[key].reshape(len(rows), -1)))
        elif self.spec["goal_dim"]:
            stored = self._stored_goals(data)
            assert stored is not None
            goals = _float32(scale.goals(stored.take(rows, axis=0).reshape(len(rows), -1)))
            columns["value_goals"] = columns["actor_goals"] = goals
        if store is not None:
            out = store.gather(rows)
            for key, column in columns.items():
                out[key] = torch.from_numpy(column).to(store.device, non_blocking=True)
            return out
        out = {key: torch.from_numpy(column) for key, column in columns.items()}
        out["observations"] = _tensor(scale.observations(self.flat(batch["observations"])))
        out["next_observations"] = _tensor(
            scale.observations(self.flat(batch["next_observations"]))
        )
        out["actions"] = _action_tensor(batch["actions"], self.spec["discrete"])
        return out


class BatchStream:
    """``steps`` batches from ``data``, drawn and relabeled a whole batch at a time."""

    def __init__(
        self,
        module: TrajectoryDataModule,
        data: Trajectories,
        steps: int,
        rng: np.random.Generator,
        store: DeviceData | None = None,
    ) -> None:
        self.module = module
        self.data = data
        self.steps = steps
        self.numpy_sampler = module.sampler(data, rng)
        self.store = store

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Batch]:
        gather = self.store is None
        for _ in range(self.steps):
            batch = self.numpy_sampler.sample(self.module.batch_size, gather=gather)
            yield self.module.to_tensors(self.data, batch, self.store)


class DeviceData:
    """Flat observations, next observations and actions as tensors on ``device`` (zero-copy
    views of the arrays on CPU when their layout allows), with the normalizer's statistics;
    :meth:`gather` builds a batch's bulky part there."""

    def __init__(
        self,
        observations: np.ndarray,
        next_observations: np.ndarray,
        actions: np.ndarray,
        normalizer: Normalizer,
        device: torch.device,
        discrete: bool,
    ) -> None:
        self.device = device
        self.observations = _tensor(observations).to(device)
        self.next_observations = _tensor(next_observations).to(device)
        self.actions = _action_tensor(actions, discrete).to(device)
        stats = normalizer.statistics("observation")
        self.scale = None if stats is None else tuple(_tensor(v).to(device) for v in stats)

    def gather(self, rows: np.ndarray) -> Batch:
        """``observations``, ``next_observations`` (standardised as the normalizer does) and
        ``actions`` of ``rows``, on the device."""
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        out = {
            "observations": self.observations.index_select(0, index),
            "next_observations": self.next_observations.index_select(0, index),
            "actions": self.actions.index_select(0, index),
        }
        if self.scale is not None:
            mean, std = self.scale
            for key in ("observations", "next_observations"):
                out[key] = (out[key] - mean) / std
        return out


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

    def sample(self, batch_size: int, *, gather: bool = True) -> dict[str, Any]:
        rows = self.rng.integers(0, self.data.num_transitions, size=batch_size)
        terminals = self.data.terminals.take(rows)
        batch: dict[str, Any] = {
            "rows": rows,
            "rewards": self.data.rewards.take(rows),
            "masks": (~terminals).astype(np.float32),
        }
        if gather:
            batch["observations"] = take_observations(self.data.observations, rows)
            batch["next_observations"] = take_observations(self.data.next_observations, rows)
            batch["actions"] = self.data.actions.take(rows, axis=0)
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

    def statistics(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(mean, std)`` float32 of ``observation`` or ``goal``, or None when unscaled."""
        return self._observation if key == "observation" else self._goal

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


def _float32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(_float32(array))


def _action_tensor(actions: np.ndarray, discrete: bool) -> torch.Tensor:
    """Actions as the networks take them: int64 ``[N]`` indices, or float32 ``[N, dim]``."""
    if discrete:
        return torch.from_numpy(np.asarray(actions, dtype=np.int64).reshape(-1))
    return _tensor(actions.reshape(len(actions), -1))
