"""Task sharing inside training: the data module's options, its sampler, and the critic's
scores for conservative sharing.

The numpy work is :class:`gcrl.relabel.TaskSharing`'s; this module adds what needs the
training side: every row's reward under every task computed once per dataset (from the
``infos/task_rewards`` column or a ``MODULE:NAME`` function), goals put back to the stored
ones on shared rows when goals are relabeled, and conservative data sharing's scores
(:class:`TaskScores`: the shared rows of each batch scored by the current critic, against
thresholds recomputed every ``refresh`` steps from a fixed sample of each task's own rows).

Modes (``data.task_sharing``):

- ``random``: shared with a uniformly drawn other task, under its true reward;
- ``high-reward``: with a task the :class:`~gcrl.relabel.TaskSelection` rule picks from the
  episode's returns under every task (top-k, Generalized Hindsight's percentile, HIPI);
- ``zero-reward``: as ``random``, with the shared reward set to 0 (unlabeled data sharing);
- ``conservative``: as ``random``, keeping only shares whose score under the target task is at
  least the ``conservative_percentile`` of that task's own rows' scores (CDS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from gcrl.datasets.trajectories import (
    DESIRED_GOAL,
    Trajectories,
    replace_fields,
    take_observations,
    take_rows,
)
from gcrl.errors import ConfigError
from gcrl.relabel import SHARING_MODES, TaskSelection, TaskSharing
from gcrl.relabel.instructions import HindsightTasks, InstructionRelabel
from gcrl.relabel.reward_fns import (
    TASK_REWARDS_KEY,
    import_object,
    stored_task_rewards,
    task_rewards_from,
)
from gcrl.relabel.sharing import KeepRule, sharing_selection
from gcrl.relabel.tasks import task_thresholds
from gcrl.training.batch import action_tensor, float_tensor


class NumpySampler(Protocol):
    """What the data module draws batches with (:mod:`gcrl.relabel`'s samplers)."""

    def sample(
        self, batch_size: int, rows: np.ndarray | None = None, *, gather: bool = True
    ) -> dict[str, Any]: ...


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


@dataclass(frozen=True)
class SharingConfig:
    """The data module's task-sharing options, checked."""

    mode: str
    ratio: float
    reward_fn: str | None
    selection: TaskSelection | None
    conservative_percentile: float
    refresh: int

    @classmethod
    def build(
        cls,
        mode: str,
        *,
        ratio: float | None,
        reward_fn: str | None,
        top_k: int | None,
        percentile: float | None,
        temperature: float | None,
        conservative_percentile: float,
        conservative_refresh: int,
    ) -> SharingConfig | None:
        """The checked options; None when nothing is shared. A ``ratio`` without a mode
        means ``random`` (the meaning ``task_relabel_ratio`` had on its own)."""
        if mode not in SHARING_MODES:
            raise ConfigError(f"task_sharing: unknown {mode!r}; choose one of {SHARING_MODES}")
        if mode == "none":
            if not ratio:
                return None
            mode = "random"
        ratio = 0.5 if ratio is None else ratio
        if not 0.0 < ratio <= 1.0:
            raise ConfigError(f"task_relabel_ratio: must lie in (0, 1], got {ratio}")
        rules = {
            "sharing_top_k": top_k,
            "sharing_percentile": percentile,
            "sharing_temperature": temperature,
        }
        selection = None
        if mode == "high-reward":
            selection = TaskSelection(top_k, percentile, temperature)
        else:
            given = [name for name, value in rules.items() if value is not None]
            if given:
                raise ConfigError(f"{given[0]}: only task_sharing high-reward takes a rule")
        if not 0.0 <= conservative_percentile <= 100.0:
            raise ConfigError(
                f"conservative_percentile: must lie in [0, 100], got {conservative_percentile}"
            )
        if conservative_refresh < 1:
            raise ConfigError(f"conservative_refresh: must be >= 1, got {conservative_refresh}")
        return cls(mode, ratio, reward_fn, selection, conservative_percentile, conservative_refresh)

    def check(self, data: Trajectories, path: str) -> None:
        """Raise unless ``data`` has tasks to share between."""
        if data.task_ids is None or len(data.tasks) < 2:
            raise ConfigError(
                f"task_sharing {self.mode}: {path} holds {len(data.tasks)} task(s); "
                "sharing needs a multi-task dataset"
            )

    def describe(self) -> str:
        """One line for the start of a run."""
        if self.mode == "zero-reward":
            rewards = "reward 0"
        else:
            rewards = f"rewards from {self.reward_fn or 'infos/' + TASK_REWARDS_KEY}"
        extra = ""
        if self.selection is not None:
            rule = {k: v for k, v in vars(self.selection).items() if v is not None}
            extra = f", rule {rule}"
        if self.mode == "conservative":
            extra = (
                f", kept at >= the {self.conservative_percentile:g}th percentile of the target "
                f"task's own scores, refreshed every {self.refresh} steps"
            )
        return f"{self.mode}: {self.ratio:.0%} of each batch tried, {rewards}{extra}"

    def rewards(self, data: Trajectories, path: str) -> np.ndarray:
        """Every row's reward under every task, ``[N, M]`` float32."""
        zeros = self.mode == "zero-reward"
        stored = stored_task_rewards(path, len(data.tasks), zeros, option_name="task_reward_fn")
        return task_rewards_from(self.reward_fn, data.tasks, stored)(data)

    def sharing(self, data: Trajectories, path: str, scores: KeepRule | None = None) -> TaskSharing:
        """The numpy sharing step for ``data`` (``scores``: conservative mode's filter)."""
        rewards = self.rewards(data, path)
        return TaskSharing(
            data,
            task_rewards=rewards,
            selection=sharing_selection(self.mode, data, rewards, self.selection),
            ratio=self.ratio,
            zero_reward=self.mode == "zero-reward",
            keep=scores,
        )


class SharingSampler:
    """A goal or row sampler followed by task sharing. Under goal relabeling, shared rows
    keep their stored goal (``stored_goals``, when the data has one): the target task's
    reward belongs to the data's goals, not to a relabeled one."""

    def __init__(
        self,
        base: NumpySampler,
        sharing: TaskSharing,
        rng: np.random.Generator,
        stored_goals: np.ndarray | None = None,
    ) -> None:
        self.base = base
        self.task_sharing = sharing
        self.rng = rng
        self.stored_goals = stored_goals

    def sample(
        self, batch_size: int, rows: np.ndarray | None = None, *, gather: bool = True
    ) -> dict[str, Any]:
        """The base sampler's batch with shares applied (see :meth:`TaskSharing.apply`)."""
        batch = self.task_sharing.apply(self.base.sample(batch_size, rows, gather=gather), self.rng)
        positions = np.flatnonzero(batch["shared"])
        if self.stored_goals is not None and len(positions):
            stored = take_rows(self.stored_goals, batch["rows"][positions])
            for key in [k for k in batch if k.endswith("_goals")]:
                goals = np.array(batch[key], copy=True)
                goals[positions] = stored
                batch[key] = goals
        return batch


#: Info columns holding the hindsight tasks of each row (see :func:`with_hindsight_tasks`).
HINDSIGHT_COLUMNS = ("hindsight_task_id", "hindsight_reward", "hindsight_terminal")


def with_hindsight_tasks(data: Trajectories, hindsight_fn: str) -> Trajectories:
    """``data`` with its hindsight tasks (from the ``MODULE:NAME`` function) as info columns
    (so a split into training and validation episodes keeps them) and its task table extended
    by them."""
    table: HindsightTasks = import_object(hindsight_fn, "hindsight_fn")(data)
    infos = dict(data.infos)
    columns = (table.task_ids, table.rewards, table.terminals)
    infos.update(zip(HINDSIGHT_COLUMNS, columns, strict=True))
    return replace_fields(data, infos=infos, tasks=tuple(table.tasks))


def hindsight_table(data: Trajectories) -> HindsightTasks:
    """The hindsight tasks :func:`with_hindsight_tasks` stored in ``data``."""
    task_ids, rewards, terminals = (data.infos[k] for k in HINDSIGHT_COLUMNS)
    return HindsightTasks(task_ids, rewards, terminals, data.tasks)


class InstructionSampler:
    """A goal or row sampler followed by hindsight-instruction relabeling."""

    def __init__(
        self, base: NumpySampler, relabel: InstructionRelabel, rng: np.random.Generator
    ) -> None:
        self.base = base
        self.relabel = relabel
        self.rng = rng

    def sample(
        self, batch_size: int, rows: np.ndarray | None = None, *, gather: bool = True
    ) -> dict[str, Any]:
        """The base sampler's batch with hindsight tasks applied to a share of it."""
        return self.relabel.apply(self.base.sample(batch_size, rows, gather=gather), self.rng)


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
        if self.thresholds is None:
            return np.zeros(len(rows), dtype=bool)
        return self.scores(self._model, rows, targets) >= self.thresholds[targets]

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
