"""Conservative task sharing's scores, from the critic being trained.

The numpy side of task sharing (the modes, :class:`gcrl.relabel.TaskSharing`, the options'
:class:`gcrl.relabel.sharing.SharingConfig`) is in :mod:`gcrl.relabel`; this module adds the
one part that needs the model: conservative data sharing (CDS) keeps a share when the
current critic scores it at least as high as the target task's own rows
(:class:`TaskScores`, with thresholds recomputed every ``refresh`` steps from a fixed sample
of each task's own rows).

Resuming is exact: Lightning draws one batch ahead of the one it trains on, so an
uninterrupted run scored the batch after a checkpoint with the critic of one step before it.
The checkpoint keeps that batch's keep decisions and the thresholds, and a resumed run gives
those decisions again for its first batch (:meth:`TaskScores.load_state_dict`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from gcrl.datasets.trajectories import (
    DESIRED_GOAL,
    Trajectories,
    take_observations,
    take_rows,
)
from gcrl.errors import ConfigError
from gcrl.relabel.tasks import task_thresholds
from gcrl.training.batch import action_tensor, float_tensor


class TrainingSide(Protocol):
    """What :class:`TaskScores` reads from the data module: its trainer and input spec."""

    @property
    def trainer(self) -> Any: ...

    @property
    def spec(self) -> Any: ...


#: Rows scored per forward pass.
SCORE_CHUNK = 65536
#: Own rows per task whose scores set conservative sharing's thresholds.
THRESHOLD_ROWS = 4096


class TaskScores:
    """Conservative sharing's rule over one dataset, from the critic being trained.

    A proposed share of row i to task m is kept when the model's ``sharing_scores`` (a
    conservative Q-value) of row i under m, computed on the batch's shared rows with the
    current weights, is at least ``thresholds[m]``: the ``percentile`` of the scores of task
    m's own rows. The thresholds are recomputed when the trainer's step reaches the next
    multiple of ``every``, from up to :data:`THRESHOLD_ROWS` own rows of each task (drawn
    once, seeded): one forward pass over a fixed sample, never over the whole data. Before the
    first refresh (at step ``every``) nothing is shared: an untrained critic is not trusted.
    """

    def __init__(
        self,
        module: TrainingSide,
        data: Trajectories,
        percentile: float,
        every: int,
        seed: int = 0,
    ) -> None:
        if data.task_ids is None:
            raise ConfigError("task_sharing conservative: needs task ids")
        self.module = module
        self.data = data
        self.percentile = percentile
        self.every = every
        self._due = every
        rng = np.random.default_rng([seed, 7])
        #: The own rows of each task the thresholds are computed over.
        self.sample_rows: list[np.ndarray] = []
        for task in range(len(data.tasks)):
            own = np.flatnonzero(data.task_ids == task)
            if len(own) > THRESHOLD_ROWS:
                own = np.sort(rng.choice(own, THRESHOLD_ROWS, replace=False))
            self.sample_rows.append(own)
        self.thresholds: np.ndarray | None = None
        self._model: Any = None
        #: The keep decisions of each call since :meth:`take_decisions` (the batch stream's
        #: record of the batch being drawn).
        self._decisions: list[np.ndarray] = []
        #: Decisions to give again instead of scoring, in order (set when resuming).
        self._replay: list[np.ndarray] = []

    def state_dict(self) -> dict[str, Any]:
        """The thresholds and the step of their next refresh."""
        thresholds = None if self.thresholds is None else self.thresholds.tolist()
        return {"thresholds": thresholds, "due": self._due}

    def load_state_dict(self, state: dict[str, Any], replay: list[np.ndarray]) -> None:
        """Continue from :meth:`state_dict`, giving the decisions ``replay`` (those an
        uninterrupted run made for the batch it had drawn ahead) before scoring again."""
        saved = state["thresholds"]
        self.thresholds = None if saved is None else np.asarray(saved, dtype=np.float32)
        self._due = int(state["due"])
        self._replay = [np.asarray(d, dtype=bool) for d in replay]

    def take_decisions(self) -> list[np.ndarray]:
        """The keep decisions made since the last call."""
        decisions, self._decisions = self._decisions, []
        return decisions

    def refresh_if_due(self) -> None:
        """Recompute the thresholds when the trainer has reached the next refresh step."""
        trainer = self.module.trainer
        if trainer is None or trainer.global_step < self._due:
            return
        self._due = (trainer.global_step // self.every + 1) * self.every
        self.refresh(trainer.lightning_module)

    def refresh(self, model: Any) -> None:
        """Thresholds from ``model``'s scores of each task's sampled own rows."""
        rows = np.concatenate(self.sample_rows)
        assert self.data.task_ids is not None
        own_tasks = self.data.task_ids[rows]
        scores = self.scores(model, rows, own_tasks)
        self.thresholds = task_thresholds(scores, own_tasks, self.percentile, len(self.data.tasks))
        self._model = model

    def __call__(self, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
        replayed = self._replay.pop(0) if self._replay else None
        if replayed is not None and len(replayed) == len(rows):
            keep = replayed
        elif self.thresholds is None:
            keep = np.zeros(len(rows), dtype=bool)
        else:
            if self._model is None:  # thresholds restored from a checkpoint
                self._model = self.module.trainer.lightning_module
            keep = self.scores(self._model, rows, targets) >= self.thresholds[targets]
        self._decisions.append(keep)
        return keep

    def scores(self, model: Any, rows: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        """``model``'s scores of ``rows`` under ``tasks`` (float32 ``[n]``), without
        gradients and in evaluation mode."""
        scorer = getattr(model, "sharing_scores", None)
        if scorer is None:
            raise ConfigError(
                f"task_sharing conservative: {type(model).__name__} has no critic to score "
                "shared transitions with"
            )
        data, spec = self.data, self.module.spec
        device = model.device
        out = np.empty(len(rows), dtype=np.float32)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(rows), SCORE_CHUNK):
                    part = rows[start : start + SCORE_CHUNK]
                    states = float_tensor(
                        spec.network_state(take_observations(data.observations, part))
                    ).to(device)
                    actions = action_tensor(take_rows(data.actions, part), spec.discrete)
                    goals = None
                    if spec.goal_dim and isinstance(data.observations, dict):
                        stored = take_rows(data.observations[DESIRED_GOAL], part)
                        goals = float_tensor(spec.network_goals(stored, len(part))).to(device)
                    ids = torch.from_numpy(
                        np.asarray(tasks[start : start + SCORE_CHUNK], dtype=np.int64)
                    ).to(device)
                    scored = scorer(states, actions.to(device), goals, ids)
                    out[start : start + len(part)] = scored.float().cpu().numpy()
        finally:
            model.train(was_training)
        return out
