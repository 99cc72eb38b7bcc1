"""Task relabeling: share trajectories of a multi-task dataset with other tasks.

Rewards under every task form a matrix ``[N, M]`` (:func:`task_reward_matrix`, from per-task
reward functions or stored columns); summed per episode it gives returns ``[E, M]``
(:func:`episode_returns`). Each selection rule turns returns into a distribution ``q [E, M]``
over the tasks to share each episode with, and :func:`draw_tasks` draws from it:

- ``random``: :func:`uniform_other_tasks`;
- ``high-reward``: :func:`top_k_tasks` (the k tasks with the highest return),
  :func:`percentile_tasks` (Generalized Hindsight's approximate inverse RL: the tasks under
  which the episode ranks high among all episodes, so that easy tasks do not take every
  episode), :func:`hipi_probabilities` (HIPI: a softmax over returns normalised per task by
  a log-partition estimate, with a temperature);
- ``zero-reward``: the random rule with every shared reward set to 0 (unlabeled data sharing).

:func:`conservative_share` filters shared transitions by a score (a conservative Q-value) as
conservative data sharing does; the training side supplies the scores.

>>> returns = np.array([[1.0, 5.0, 0.0], [2.0, 0.0, 3.0]])
>>> top_k_tasks(returns, k=1).tolist()
[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
>>> hipi_probabilities(returns, temperature=1.0).sum(axis=1).round(6).tolist()
[1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gcrl.errors import ConfigError, option
from gcrl.relabel.rewards import check_rewards

#: A per-task reward function: ``reward_fn(observations, actions, next_observations)``.
TaskRewardFn = Callable[[Any, np.ndarray, Any], np.ndarray]


def task_reward_matrix(
    observations: Any,
    actions: np.ndarray,
    next_observations: Any,
    reward_fns: Sequence[TaskRewardFn],
) -> np.ndarray:
    """Rewards of every row under every task: ``[N, M]`` float32, column m from ``reward_fns[m]``.

    Raises RewardFunctionError naming the task when a function returns the wrong shape or NaN.
    """
    n = len(actions)
    out = np.empty((n, len(reward_fns)), dtype=np.float32)
    for task, fn in enumerate(reward_fns):
        out[:, task] = check_rewards(
            fn(observations, actions, next_observations), n, f"reward function of task {task}"
        )
    return out


def episode_returns(rewards: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
    """Undiscounted return of each episode under each task: ``[E, M]`` float64.

    ``rewards`` is ``[N, M]`` (or ``[N]``, giving ``[E]``); ``episode_starts`` as in the data.
    """
    return np.add.reduceat(np.asarray(rewards, dtype=np.float64), episode_starts, axis=0)


def uniform_other_tasks(episode_tasks: np.ndarray, num_tasks: int) -> np.ndarray:
    """Uniform over every task but the episode's own: ``[E, M]``, rows summing to 1."""
    if num_tasks < 2:
        raise ConfigError(f"tasks: sharing needs at least 2 tasks, the data has {num_tasks}")
    q = np.full((len(episode_tasks), num_tasks), 1.0 / (num_tasks - 1))
    q[np.arange(len(episode_tasks)), episode_tasks] = 0.0
    return q


def top_k_tasks(returns: np.ndarray, k: int) -> np.ndarray:
    """Uniform over the ``k`` tasks with the highest return per episode: ``[E, M]``.

    Ties at the k-th place are broken by task index (lower first).
    """
    returns = np.asarray(returns, dtype=np.float64)
    k = _check_k(k, returns.shape[1])
    # A stable sort on -returns keeps lower task indices first among equal returns.
    order = np.argsort(-returns, axis=1, kind="stable")[:, :k]
    q = np.zeros_like(returns)
    np.put_along_axis(q, order, 1.0 / k, axis=1)
    return q


def percentile_ranks(returns: np.ndarray) -> np.ndarray:
    """Percentile rank of each episode's return among all episodes, per task: ``[E, M]``.

    ``100 * (below + equal / 2) / E``: 0 below every other episode, 50 at the median. A
    strictly increasing transform of one task's returns leaves its ranks unchanged.
    """
    returns = np.asarray(returns, dtype=np.float64)
    sorted_returns = np.sort(returns, axis=0)
    ranks = np.empty_like(returns)
    for task in range(returns.shape[1]):
        column = sorted_returns[:, task]
        below = np.searchsorted(column, returns[:, task], side="left")
        upto = np.searchsorted(column, returns[:, task], side="right")
        ranks[:, task] = (below + upto) / 2
    return 100.0 * ranks / len(returns)


def percentile_tasks(
    returns: np.ndarray, *, k: int | None = 1, min_percentile: float | None = None
) -> np.ndarray:
    """Generalized Hindsight's AIR: the tasks under which the episode ranks highest: ``[E, M]``.

    Ranks are :func:`percentile_ranks`. ``k`` keeps the k best-ranked tasks per episode
    (None: no limit); ``min_percentile`` keeps only tasks where the rank is at least that.
    Uniform over what is kept; all-zero rows where nothing is.
    """
    ranks = percentile_ranks(returns)
    keep = np.ones(ranks.shape, dtype=bool)
    if k is not None:
        keep = top_k_tasks(ranks, k) > 0
    if min_percentile is not None:
        keep &= ranks >= min_percentile
    counts = keep.sum(axis=1, keepdims=True)
    return np.divide(keep, counts, out=np.zeros(ranks.shape), where=counts > 0)


def hipi_probabilities(returns: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """HIPI's relabeling distribution: ``q(m | e) ∝ exp((R[e, m] - log Z_m) / T)``, ``[E, M]``.

    ``log Z_m = T · logsumexp_e(R[e, m] / T)`` is the Monte-Carlo log-partition of task m over
    the episodes given, which keeps a task with large returns everywhere from taking every
    episode; adding a constant to one task's returns leaves ``q`` unchanged. As ``T -> 0``,
    ``q`` becomes the arg-max of ``R[e, m] - max_e' R[e', m]``. Rows sum to 1.
    """
    if not temperature > 0:
        raise ConfigError(f"temperature: must be > 0, got {temperature}")
    scaled = np.asarray(returns, dtype=np.float64) / temperature
    top = scaled.max(axis=0, keepdims=True)
    log_z = top + np.log(np.exp(scaled - top).sum(axis=0, keepdims=True))
    logits = scaled - log_z
    logits -= logits.max(axis=1, keepdims=True)
    q = np.exp(logits)
    return q / q.sum(axis=1, keepdims=True)


def draw_tasks(
    q: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Draw up to ``k`` distinct tasks per row of ``q`` without replacement: ``[E, k]`` int64.

    Gumbel-top-k over ``log q``, vectorised. Tasks with probability 0 (and each row's
    ``exclude`` task, when given) are never drawn; where fewer than ``k`` remain the row is
    padded with -1.
    """
    q = np.array(q, dtype=np.float64, copy=True)
    k = _check_k(k, q.shape[1])
    if exclude is not None:
        q[np.arange(len(q)), exclude] = 0.0
    with np.errstate(divide="ignore"):
        keys = np.log(q) + rng.gumbel(size=q.shape)
    order = np.argsort(-keys, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(q, order, axis=1) > 0
    return np.where(chosen, order, -1)


def with_task_labels(
    batch: dict[str, Any],
    positions: np.ndarray,
    task_ids: np.ndarray,
    rewards: np.ndarray | float,
    masks: np.ndarray,
    flag: str,
) -> dict[str, Any]:
    """``batch`` with its rows at ``positions`` given new ``task_ids``, ``rewards`` and
    ``masks`` (new arrays; the batch's own are not modified), plus ``source_task_ids`` (each
    row's task before any relabeling) and the bool column ``flag`` marking those rows."""
    source = np.asarray(batch.get("source_task_ids", batch["task_ids"]), dtype=np.int64)
    out_ids = np.array(batch["task_ids"], dtype=np.int64, copy=True)
    out_rewards = np.array(batch["rewards"], dtype=np.float32, copy=True)
    out_masks = np.array(batch["masks"], dtype=np.float32, copy=True)
    out_ids[positions] = task_ids
    out_rewards[positions] = rewards
    out_masks[positions] = masks
    marked = np.zeros(len(out_ids), dtype=bool)
    marked[positions] = True
    return batch | {
        "task_ids": out_ids,
        "rewards": out_rewards,
        "masks": out_masks,
        "source_task_ids": source,
        flag: marked,
    }


def task_thresholds(
    own_scores: np.ndarray, own_tasks: np.ndarray, percentile: float, num_tasks: int
) -> np.ndarray:
    """Conservative sharing's threshold of each task: the ``percentile``-th percentile of the
    scores of its own transitions (``own_scores[i]`` of a transition of task
    ``own_tasks[i]``); +inf for a task without any. ``[num_tasks]`` float64."""
    if not 0.0 <= percentile <= 100.0:
        raise ConfigError(f"percentile: must lie in [0, 100], got {percentile}")
    own_scores = np.asarray(own_scores, dtype=np.float64)
    own_tasks = np.asarray(own_tasks, dtype=np.int64)
    thresholds = np.full(num_tasks, np.inf)
    for task in np.unique(own_tasks):
        thresholds[task] = np.percentile(own_scores[own_tasks == task], percentile)
    return thresholds


def conservative_share(
    scores: np.ndarray,
    target_tasks: np.ndarray,
    own_scores: np.ndarray,
    own_tasks: np.ndarray,
    percentile: float,
) -> np.ndarray:
    """Conservative data sharing: which shared transitions to keep; bool ``[B]``.

    ``scores[i]`` is the score (for example a conservative Q-value) of shared transition i
    under its ``target_tasks[i]``; ``own_scores``/``own_tasks`` are the scores of each task's
    own transitions. A shared transition is kept when its score is at least the
    ``percentile``-th percentile of its target task's own scores; a task with no own data
    keeps nothing.
    """
    scores = np.asarray(scores, dtype=np.float64)
    target_tasks = np.asarray(target_tasks, dtype=np.int64)
    own_tasks = np.asarray(own_tasks, dtype=np.int64)
    num_tasks = int(max(target_tasks.max(initial=-1), own_tasks.max(initial=-1))) + 1
    thresholds = task_thresholds(own_scores, own_tasks, percentile, num_tasks)
    return scores >= thresholds[target_tasks]


@dataclass(frozen=True)
class TaskSelection:
    """The ``high-reward`` rule, exactly one of: ``top_k`` (the K highest-return tasks),
    ``percentile`` (Generalized Hindsight's AIR: tasks under which the episode ranks at or
    above P among all episodes; with ``top_k``, the K best ranked) or ``temperature`` (HIPI's
    softmax)."""

    top_k: int | None = None
    percentile: float | None = None
    temperature: float | None = None

    def __post_init__(self) -> None:
        rules = [r for r in ("top_k", "percentile", "temperature") if getattr(self, r) is not None]
        if not rules or (self.temperature is not None and len(rules) > 1):
            raise ConfigError(
                f"{option('strategy')} high-reward: choose the selection rule with "
                f"{option('top_k')} K, {option('percentile')} P or {option('temperature')} T "
                f"(one of them; {option('top_k')} may go with {option('percentile')})"
            )
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"{option('top_k')}: must be >= 1, got {self.top_k}")
        if self.percentile is not None and not 0 <= self.percentile <= 100:
            raise ConfigError(
                f"{option('percentile')}: must lie in [0, 100], got {self.percentile}"
            )
        if self.temperature is not None and not self.temperature > 0:
            raise ConfigError(f"{option('temperature')}: must be > 0, got {self.temperature}")

    @property
    def draws_every_kept_task(self) -> bool:
        """True for the rules that keep a set of tasks (top-k, percentile), False for HIPI's
        softmax, from which a number of tasks is drawn."""
        return self.temperature is None

    def probabilities(self, returns: np.ndarray) -> np.ndarray:
        """The rule's ``[E, M]`` distribution over the tasks to share each episode with,
        from the episodes' returns under every task ``[E, M]``."""
        if self.temperature is not None:
            return hipi_probabilities(returns, self.temperature)
        if self.percentile is not None:
            return percentile_tasks(returns, k=self.top_k, min_percentile=self.percentile)
        assert self.top_k is not None
        return top_k_tasks(returns, self.top_k)


def _check_k(k: int, num_tasks: int) -> int:
    if k < 1:
        raise ConfigError(f"k: must be >= 1, got {k}")
    return min(int(k), num_tasks)
