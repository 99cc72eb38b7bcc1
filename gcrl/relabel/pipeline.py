"""One numpy batch pipeline: a base sampler followed by batch steps.

Training (:class:`gcrl.training.TrajectoryDataModule`), :class:`~gcrl.relabel.TaskSampler`
and other code bases (JAX) draw batches the same way. The base sampler draws rows:
:class:`~gcrl.relabel.sampler.GoalSampler` with relabeled goal sets, rewards and masks, or
:class:`~gcrl.relabel.sampler.RowSampler` with the rows as stored. Each step then rewrites a
share of the batch, ``step.apply(batch, rng) -> batch`` (new arrays, the input untouched):
:class:`~gcrl.relabel.instructions.InstructionRelabel` (hindsight instructions),
:class:`~gcrl.relabel.sharing.TaskSharing` (rows shared with other tasks) and
:class:`KeepStoredGoals` (shared rows keep the goal their target task's reward belongs to).

>>> import numpy as np
>>> from gcrl.datasets.trajectories import Task, Trajectories
>>> from gcrl.relabel import RowSampler, TaskSharing
>>> data = Trajectories(observations=np.zeros((4, 1)), actions=np.zeros((4, 1)),
...     rewards=np.zeros(4), terminals=np.zeros(4), timeouts=[0, 1, 0, 1],
...     next_observations=np.zeros((4, 1)), episode_starts=[0, 2], task_ids=[0, 0, 1, 1],
...     tasks=(Task("a"), Task("b")))
>>> rng = np.random.default_rng(0)
>>> share = TaskSharing(data, task_rewards=np.full((4, 2), 7, np.float32), ratio=1.0)
>>> batch = Pipeline(RowSampler(data, rng), [share], rng).sample(3)
>>> batch["shared"].tolist(), (batch["task_ids"] != batch["source_task_ids"]).tolist()
([True, True, True], [True, True, True])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from gcrl.datasets.trajectories import take_rows


class BatchSampler(Protocol):
    """Draws a numpy batch: ``batch_size`` rows (or the given ``rows``); ``gather=False``
    leaves out observations and actions (the training device gathers them by row)."""

    def sample(
        self, batch_size: int, rows: np.ndarray | None = None, *, gather: bool = True
    ) -> dict[str, Any]: ...


class BatchStep(Protocol):
    """Rewrites a share of a batch; returns new arrays, never modifies ``batch``'s own."""

    def apply(self, batch: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]: ...


class KeepStoredGoals:
    """After :class:`~gcrl.relabel.sharing.TaskSharing` under goal relabeling: shared rows
    (``batch["shared"]``) take back their stored goal in every goal set (``*_goals``), since
    the target task's reward belongs to the data's goals, not to a relabeled one."""

    def __init__(self, stored_goals: np.ndarray) -> None:
        self.stored_goals = stored_goals

    def apply(self, batch: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        positions = np.flatnonzero(batch["shared"])
        if not len(positions):
            return batch
        stored = take_rows(self.stored_goals, np.asarray(batch["rows"])[positions])
        out = dict(batch)
        for key in [k for k in batch if k.endswith("_goals")]:
            goals = np.array(batch[key], copy=True)
            goals[positions] = stored
            out[key] = goals
        return out


class Pipeline:
    """``base``'s batches passed through ``steps`` in order, every draw from ``rng``."""

    def __init__(
        self, base: BatchSampler, steps: Sequence[BatchStep], rng: np.random.Generator
    ) -> None:
        self.base = base
        self.steps = list(steps)
        self.rng = rng

    def sample(
        self, batch_size: int, rows: np.ndarray | None = None, *, gather: bool = True
    ) -> dict[str, Any]:
        """The base sampler's batch (see :class:`BatchSampler`) after every step."""
        batch = self.base.sample(batch_size, rows, gather=gather)
        for step in self.steps:
            batch = step.apply(batch, self.rng)
        return batch
