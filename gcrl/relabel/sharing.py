"""Task sharing inside training batches: a share of each batch's rows relabeled to other tasks.

:class:`TaskSharing` works on any batch that carries ``rows``, ``task_ids``, ``rewards`` and
``masks`` (what :class:`~gcrl.relabel.sampler.RowSampler` and
:class:`~gcrl.relabel.sampler.GoalSampler` return): it picks ``round(ratio * B)`` rows, draws
a target task for each from its episode's row of ``selection`` (the episode's own task never),
lets an optional ``keep`` rule veto shares (conservative data sharing), and gives each shared
row its target task's reward (or 0 with ``zero_reward``). :class:`TaskSampler` is the
:class:`~gcrl.relabel.pipeline.Pipeline` of a row sampler followed by it.

The modes of the training data module map onto it as follows (:func:`sharing_selection`):
``random``: uniform over the other tasks, true rewards; ``high-reward``: a
:class:`~gcrl.relabel.tasks.TaskSelection` rule on episode returns; ``zero-reward``: uniform,
reward 0 (UDS); ``conservative``: uniform, true rewards, with a :class:`ScoreFilter` (CDS).

>>> import numpy as np
>>> from gcrl.datasets.trajectories import Task, Trajectories
>>> data = Trajectories(observations=np.zeros((4, 1)), actions=np.zeros((4, 1)),
...     rewards=np.zeros(4), terminals=np.zeros(4), timeouts=[0, 1, 0, 1],
...     next_observations=np.zeros((4, 1)), episode_starts=[0, 2], task_ids=[0, 0, 1, 1],
...     tasks=(Task("a"), Task("b")))
>>> sharing = TaskSharing(data, task_rewards=np.array([[0, 7]] * 4, np.float32), ratio=1.0)
>>> batch = sharing.apply({"rows": np.array([0, 3]), "task_ids": np.array([0, 1]),
...                        "rewards": np.zeros(2, np.float32), "masks": np.ones(2, np.float32)},
...                       np.random.default_rng(0))
>>> batch["task_ids"].tolist(), batch["rewards"].tolist(), batch["source_task_ids"].tolist()
([1, 0], [7.0, 0.0], [0, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gcrl.datasets.trajectories import take_observations, take_rows
from gcrl.errors import ConfigError, MissingKeyError
from gcrl.relabel.episodes import EpisodeIndex
from gcrl.relabel.pipeline import Pipeline
from gcrl.relabel.reward_fns import TASK_REWARDS_KEY, stored_task_rewards, task_rewards_from
from gcrl.relabel.rewards import check_rewards
from gcrl.relabel.sampler import RewardFn, RowSampler, as_generator, gather_transitions
from gcrl.relabel.tasks import TaskSelection, episode_returns, task_thresholds, with_task_labels

if TYPE_CHECKING:
    from gcrl.datasets.trajectories import Observations, Trajectories

#: Task sharing modes of training (``data.task_sharing``).
SHARING_MODES = ("none", "random", "high-reward", "zero-reward", "conservative")
#: ``keep(rows, target_tasks) -> bool [n]``: which proposed shares to keep.
KeepRule = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ScoreFilter:
    """Conservative data sharing's rule: a share of row i to task m is kept when
    ``scores[i, m]`` is at least ``thresholds[m]``.

    The training side fills both (:meth:`update`), for example with a critic's Q-values of
    every row under every task and each task's percentile over its own rows; until the first
    update nothing is kept.
    """

    def __init__(self) -> None:
        self.scores: np.ndarray | None = None
        self.thresholds: np.ndarray | None = None

    def update(self, scores: np.ndarray, own_tasks: np.ndarray, percentile: float) -> None:
        """New ``scores [N, M]``; ``thresholds[m]`` is the ``percentile`` of task m's scores
        over its own rows (``own_tasks [N]``; +inf for a task without rows)."""
        scores = np.asarray(scores, dtype=np.float32)
        own_tasks = np.asarray(own_tasks, dtype=np.int64)
        own = scores[np.arange(len(scores)), own_tasks]
        thresholds = task_thresholds(own, own_tasks, percentile, scores.shape[1])
        self.scores, self.thresholds = scores, thresholds

    def __call__(self, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
        if self.scores is None or self.thresholds is None:
            return np.zeros(len(rows), dtype=bool)
        return self.scores[rows, targets] >= self.thresholds[targets]


def sharing_selection(
    mode: str,
    data: Trajectories,
    task_rewards: np.ndarray | None,
    selection: TaskSelection | None = None,
) -> np.ndarray | None:
    """The ``[E, M]`` target distribution of a sharing ``mode``: None (uniform over the other
    tasks) except for ``high-reward``, whose ``selection`` rule scores episode returns under
    ``task_rewards [N, M]``."""
    if mode not in SHARING_MODES:
        raise ConfigError(f"task_sharing: unknown {mode!r}; choose one of {SHARING_MODES}")
    if mode != "high-reward":
        return None
    if task_rewards is None:
        raise ConfigError("task_sharing high-reward: needs per-task rewards")
    returns = episode_returns(task_rewards, data.episode_starts)
    return (selection or TaskSelection()).probabilities(returns)


class TaskSharing:
    """Relabels a share of a batch's rows to other tasks of a multi-task dataset.

    Args:
        data: trajectories with ``task_ids``.
        task_rewards: rewards of every row under every task, ``[N, M]``, or M per-task reward
            functions (evaluated on the shared rows, grouped by task); may be None with
            ``zero_reward``.
        selection: ``[E, M]`` weights of the tasks each episode may be shared with (any rule
            of :mod:`gcrl.relabel.tasks`; the episode's own task is ignored). Default:
            uniform over the other tasks.
        ratio: share of each batch relabeled (exactly ``round(ratio * B)`` rows are tried;
            rows whose episode has no task to go to keep their own).
        zero_reward: shared rows get reward 0 (unlabeled data sharing).
        keep: vetoes proposed shares (``keep(rows, target_tasks) -> bool``, a
            :class:`ScoreFilter` for conservative sharing); vetoed rows keep their own task.
    """

    def __init__(
        self,
        data: Trajectories,
        *,
        task_rewards: np.ndarray | Sequence[RewardFn] | None,
        selection: np.ndarray | None = None,
        ratio: float = 0.5,
        zero_reward: bool = False,
        keep: KeepRule | None = None,
    ) -> None:
        if data.task_ids is None:
            raise MissingKeyError("task_ids: task relabeling needs a multi-task dataset")
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"ratio: must lie in [0, 1], got {ratio}")
        num_tasks = len(data.tasks)
        if num_tasks < 2:
            raise ConfigError(f"tasks: sharing needs at least 2 tasks, the data has {num_tasks}")
        self.data = data
        self.index = EpisodeIndex.from_starts(data.episode_starts, data.num_transitions)
        episode_tasks = data.task_ids[data.episode_starts]
        if selection is None:
            selection = np.ones((data.num_episodes, num_tasks))
        selection = np.array(selection, dtype=np.float64, copy=True)
        if selection.shape != (data.num_episodes, num_tasks):
            raise ConfigError(
                f"selection: shape {selection.shape}, expected "
                f"({data.num_episodes}, {num_tasks}) (episodes x tasks)"
            )
        selection[np.arange(data.num_episodes), episode_tasks] = 0.0
        self._cdf = np.cumsum(selection, axis=1)
        if isinstance(task_rewards, np.ndarray):
            if task_rewards.shape != (data.num_transitions, num_tasks):
                raise ConfigError(
                    f"task_rewards: shape {task_rewards.shape}, expected "
                    f"({data.num_transitions}, {num_tasks}) (rows x tasks)"
                )
        elif task_rewards is None:
            if not zero_reward:
                raise ConfigError("task_rewards: needed unless shared rewards are zero")
        elif len(task_rewards) != num_tasks:
            raise ConfigError(f"task_rewards: {len(task_rewards)} functions for {num_tasks} tasks")
        self.task_rewards = task_rewards
        self.ratio = ratio
        self.zero_reward = zero_reward
        self.keep = keep
        self.num_tasks = num_tasks

    def propose(self, rows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, target tasks)`` of the shares drawn for a batch of ``rows``, before
        any veto: ``round(ratio * B)`` positions tried, those whose episode can go nowhere
        dropped."""
        tried = rng.choice(len(rows), size=round(self.ratio * len(rows)), replace=False)
        cdf = self._cdf[self.index.episode_of_row[rows[tried]]]
        total = cdf[:, -1]
        # Task j is drawn when cdf[j-1] <= u < cdf[j]: never one of probability 0.
        draw = (cdf <= (rng.random(len(tried)) * total)[:, None]).sum(axis=1)
        return tried[total > 0], draw[total > 0]

    def apply(self, batch: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """``batch`` with shared rows' ``task_ids``, ``rewards`` and ``masks`` replaced (new
        arrays; the batch's own are not modified), plus ``source_task_ids`` (the rows' own
        tasks) and ``shared`` (bool). Shared rows' masks are their stored ``1 - terminals``.
        """
        rows = np.asarray(batch["rows"], dtype=np.int64)
        positions, targets = self.propose(rows, rng)
        if self.keep is not None and len(positions):
            kept = np.asarray(self.keep(rows[positions], targets), dtype=bool)
            positions, targets = positions[kept], targets[kept]
        rewards = 0.0 if self.zero_reward else self._rewards(batch, rows, positions, targets)
        masks = ~take_rows(self.data.terminals, rows[positions])
        return with_task_labels(batch, positions, targets, rewards, masks, "shared")

    def _rewards(
        self,
        batch: dict[str, Any],
        rows: np.ndarray,
        positions: np.ndarray,
        targets: np.ndarray,
    ) -> np.ndarray:
        if isinstance(self.task_rewards, np.ndarray):
            return self.task_rewards[rows[positions], targets]
        assert self.task_rewards is not None
        observations, next_observations, actions = gather_transitions(self.data, rows[positions])
        out = np.empty(len(targets), dtype=np.float32)
        for task in np.unique(targets):
            sel = np.flatnonzero(targets == task)
            out[sel] = check_rewards(
                self.task_rewards[int(task)](
                    take_observations(observations, sel),
                    actions[sel],
                    take_observations(next_observations, sel),
                ),
                len(sel),
                f"reward function of task {int(task)}",
            )
        return out


class TaskSampler(Pipeline):
    """Uniform rows of a multi-task dataset with a share relabeled to other tasks: the
    :class:`~gcrl.relabel.pipeline.Pipeline` of a :class:`~gcrl.relabel.sampler.RowSampler`
    and :class:`TaskSharing` (the training data module builds the same one).

    Args:
        data, task_rewards, selection, ratio, zero_reward: as :class:`TaskSharing`.
        keep_fn: the conservative-data-sharing hook: called with the proposed shares' batch
            (``rows``, ``task_ids`` of the target tasks, ``observations``,
            ``next_observations``, ``actions``), returns a bool mask of the shares to keep
            (for example :func:`gcrl.relabel.tasks.conservative_share` on a critic's values).
        seed: an int or a ``numpy.random.Generator``.

    :meth:`sample` returns the row sampler's batch with the shared rows' ``task_ids`` and
    ``rewards``, plus ``source_task_ids`` and ``shared`` (bool).
    """

    def __init__(
        self,
        data: Trajectories,
        *,
        task_rewards: np.ndarray | Sequence[RewardFn],
        selection: np.ndarray | None = None,
        ratio: float = 0.5,
        zero_reward: bool = False,
        keep_fn: Callable[[dict[str, Any]], np.ndarray] | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        rng = as_generator(seed)
        keep = None if keep_fn is None else self._proposal_rule(data, keep_fn)
        self.sharing = TaskSharing(
            data,
            task_rewards=task_rewards,
            selection=selection,
            ratio=ratio,
            zero_reward=zero_reward,
            keep=keep,
        )
        super().__init__(RowSampler(data, rng), [self.sharing], rng)

    @staticmethod
    def _proposal_rule(
        data: Trajectories, keep_fn: Callable[[dict[str, Any]], np.ndarray]
    ) -> KeepRule:
        def keep(rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
            observations: Observations
            next_observations: Observations
            observations, next_observations, actions = gather_transitions(data, rows)
            return keep_fn(
                {
                    "observations": observations,
                    "next_observations": next_observations,
                    "actions": actions,
                    "rows": rows,
                    "task_ids": targets,
                }
            )

        return keep


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
