"""The typed training batch the algorithms take, and the device-held columns it is gathered from.

:class:`Batch` is what every loss function reads (d3rlpy's typed mini-batch idea): flat,
standardised float32 states, actions as the networks take them, rewards and masks, task ids,
and the **goal sets** by name (``value``, ``actor``...), each ``[B, goal dim]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from gcrl.errors import ConfigError
from gcrl.spec import InputSpec


@dataclass(frozen=True, slots=True)
class Batch:
    """One training batch of ``B`` transitions, every tensor on one device.

    Rewards and masks belong to the goal set the sampler computed them for (``value``).
    ``task_ids`` are zeros for single-task data. ``goals`` is empty without goals.
    """

    observations: torch.Tensor  # [B, observation dim] float32 (uint8 image bytes: spec.images)
    actions: torch.Tensor  # [B, action dim] float32, or [B] int64 indices
    rewards: torch.Tensor  # [B] float32
    masks: torch.Tensor  # [B] float32: 0 where the transition ends its episode
    next_observations: torch.Tensor  # [B, observation dim], as observations
    task_ids: torch.Tensor  # [B] int64
    goals: Mapping[str, torch.Tensor] = field(default_factory=dict)  # name -> [B, goal dim]
    #: Subgoal sets' states, as network inputs: name -> [B, observation dim] float32.
    goal_states: Mapping[str, torch.Tensor] = field(default_factory=dict)
    #: Task sharing: each row's own task ([B] int64; ``task_ids`` holds the target task).
    source_task_ids: torch.Tensor | None = None
    #: Optimiser steps this batch is for: its rows are that many equal consecutive parts
    #: (``TrajectoryDataModule(updates_per_batch=...)``), one per step.
    updates: int = 1

    def __len__(self) -> int:
        return len(self.observations)

    def parts(self) -> list[Batch]:
        """The batch's :attr:`updates` parts, each a batch of its own (views, no copies)."""
        if self.updates == 1:
            return [self]
        size = len(self) // self.updates

        def part(t: torch.Tensor, i: int) -> torch.Tensor:
            return t[i * size : (i + 1) * size]

        return [
            Batch(
                observations=part(self.observations, i),
                actions=part(self.actions, i),
                rewards=part(self.rewards, i),
                masks=part(self.masks, i),
                next_observations=part(self.next_observations, i),
                task_ids=part(self.task_ids, i),
                goals={k: part(v, i) for k, v in self.goals.items()},
                goal_states={k: part(v, i) for k, v in self.goal_states.items()},
                source_task_ids=None
                if self.source_task_ids is None
                else part(self.source_task_ids, i),
            )
            for i in range(self.updates)
        ]

    @property
    def device(self) -> torch.device:
        """Where the tensors are."""
        return self.observations.device

    def goal(self, name: str) -> torch.Tensor | None:
        """The goal set ``name``, or None when the batch has no goals."""
        if not self.goals:
            return None
        try:
            return self.goals[name]
        except KeyError:
            raise ConfigError(
                f"goal set {name!r}: the data module draws only {', '.join(self.goals)}"
            ) from None

    def goal_state(self, name: str) -> torch.Tensor:
        """The states of the subgoal set ``name`` (``data.subgoal_steps``), ``[B, observation
        dim]``."""
        try:
            return self.goal_states[name]
        except KeyError:
            raise ConfigError(
                f"goal set {name!r}: the batch holds no subgoal states; set data.subgoal_steps"
            ) from None

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device`` (itself when it is there already)."""
        if self.device == device:
            return self

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return Batch(
            observations=move(self.observations),
            actions=move(self.actions),
            rewards=move(self.rewards),
            masks=move(self.masks),
            next_observations=move(self.next_observations),
            task_ids=move(self.task_ids),
            goals={k: move(v) for k, v in self.goals.items()},
            goal_states={k: move(v) for k, v in self.goal_states.items()},
            source_task_ids=None if self.source_task_ids is None else move(self.source_task_ids),
            updates=self.updates,
        )


def float_tensor(array: np.ndarray) -> torch.Tensor:
    """``array`` as a contiguous float32 tensor (no copy when it is one already)."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def input_tensor(array: np.ndarray) -> torch.Tensor:
    """A network input as a tensor: uint8 image bytes stay uint8 (a quarter of the bytes to
    move; the image encoder scales them on the device), anything else is float32."""
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    return float_tensor(array)


def action_tensor(actions: np.ndarray, discrete: bool) -> torch.Tensor:
    """Actions as the networks take them: int64 ``[N]`` indices, or float32 ``[N, dim]``."""
    if discrete:
        return torch.from_numpy(np.asarray(actions, dtype=np.int64).reshape(-1))
    return float_tensor(actions.reshape(len(actions), -1))


class DeviceData:
    """Flat observations, next observations and actions as tensors on ``device`` (zero-copy
    views of the arrays on CPU when their layout allows; image bytes as uint8), with the
    spec's standardisation;
    :meth:`gather` builds a batch's bulky part there."""

    def __init__(
        self,
        observations: np.ndarray,
        next_observations: np.ndarray,
        actions: np.ndarray,
        spec: InputSpec,
        device: torch.device,
    ) -> None:
        self.device = device
        self.observations = input_tensor(observations).to(device)
        self.next_observations = input_tensor(next_observations).to(device)
        self.actions = action_tensor(actions, spec.discrete).to(device)
        scale = spec.observation_scale
        self.scale = (
            None
            if scale is None
            else (float_tensor(scale.mean).to(device), float_tensor(scale.std).to(device))
        )

    def gather(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(observations, next_observations, actions)`` of ``rows`` on the device, the
        states standardised as the spec says."""
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        observations = self.observations.index_select(0, index)
        next_observations = self.next_observations.index_select(0, index)
        if self.scale is not None:
            mean, std = self.scale
            observations = (observations - mean) / std
            next_observations = (next_observations - mean) / std
        return observations, next_observations, self.actions.index_select(0, index)
