"""Offline expansion: a chunk of whole episodes in, the originals plus relabeled copies out.

Each output row records where it came from in two info columns: ``source_index`` (the row of
the source file it copies, int64) and ``relabel_strategy`` (its strategy's code in the frozen
table of :mod:`gcrl.relabel.codes`, uint8; 0 is an original row).

Goal relabeling (:func:`gcrl.relabel.goals.goal_expansions`: ``final``, ``future``,
``geometric``, ``episode``, ``random``) writes ``k``
copies of every row, each with its own goal, as single-transition episodes: ``terminals``
where the goal is reached, ``timeouts`` otherwise (the episode was cut, so value learning
bootstraps from ``s'``). Task relabeling (``random-task``, ``high-reward``, ``zero-reward``)
copies whole episodes under another task, keeping their terminals and timeouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gcrl.datasets.trajectories import DESIRED_GOAL, Trajectories, replace_fields, take_rows
from gcrl.errors import ConfigError, MissingKeyError
from gcrl.relabel.codes import relabel_code
from gcrl.relabel.goals import GoalMixture, goal_expansions
from gcrl.relabel.rewards import GoalReward, goal_success
from gcrl.relabel.sampler import GoalSampler, RewardFn

#: Task sharing strategies for offline expansion.
TASK_EXPANSIONS = ("random-task", "high-reward", "zero-reward")

SOURCE_INDEX = "source_index"
RELABEL_STRATEGY = "relabel_strategy"


@dataclass
class ExpansionStats:
    """Counts accumulated over the chunks of one expansion."""

    rows_in: int = 0
    rows_out: int = 0
    relabeled: int = 0
    #: Goal strategies: rows whose goal is reached, among originals / relabeled copies.
    successes_before: int = 0
    successes_after: int = 0
    #: Hindsight instructions: episodes written under the task they accomplished.
    episodes_relabeled: int = 0
    #: Task strategies: reward sums of the originals / of the shared copies.
    reward_before: float = 0.0
    reward_after: float = 0.0
    per_task: dict[int, int] = field(default_factory=dict)

    def share(self, count: float, rows: int) -> float:
        """``count / rows`` (0 when there are no rows)."""
        return count / rows if rows else 0.0


def with_provenance(chunk: Trajectories, first_row: int) -> Trajectories:
    """``chunk`` (starting at source row ``first_row``) marked as original rows."""
    infos = dict(chunk.infos)
    infos[SOURCE_INDEX] = np.arange(first_row, first_row + len(chunk), dtype=np.int64)
    infos[RELABEL_STRATEGY] = np.zeros(len(chunk), dtype=np.uint8)
    return replace_fields(chunk, infos=infos)


def split_at_goal_changes(chunk: Trajectories) -> Trajectories:
    """``chunk`` with every episode also cut where the stored ``desired_goal`` changes: each
    *pursuit* of one goal becomes an episode (the cut rows become timeouts), so goal
    strategies draw hindsight goals within the pursuit the action was taken in. Rows are
    unchanged. Navigate-style play (a new goal whenever one is reached) needs this for BC:
    a future state after the expert switched goals is not where its action heads."""
    if not isinstance(chunk.observations, dict) or DESIRED_GOAL not in chunk.observations:
        raise MissingKeyError(
            f"observations/{DESIRED_GOAL}: splitting at goal changes needs stored goals"
        )
    goals = chunk.observations[DESIRED_GOAL].reshape(len(chunk), -1)
    starts = np.zeros(len(chunk), dtype=bool)
    starts[chunk.episode_starts] = True
    starts[1:] |= np.any(goals[1:] != goals[:-1], axis=1)
    episode_starts = np.flatnonzero(starts).astype(np.int64)
    ends = np.zeros(len(chunk), dtype=bool)
    ends[episode_starts[1:] - 1] = True
    ends[-1] = True
    cut = ends & ~chunk.terminals & ~chunk.timeouts
    return replace_fields(chunk, episode_starts=episode_starts, timeouts=chunk.timeouts | cut)


def expand_goals(
    chunk: Trajectories,
    *,
    first_row: int,
    strategy: str,
    k: int,
    rng: np.random.Generator,
    goal_key: str = "achieved_goal",
    reward: GoalReward | None = None,
    reward_fn: RewardFn | None = None,
    gamma: float = 0.99,
    truncation: str = "renormalise",
    random_goal_pool: np.ndarray | None = None,
    stats: ExpansionStats | None = None,
) -> Trajectories:
    """``k`` goal-relabeled copies of every row of ``chunk``, as single-transition episodes.

    Goals are the ``goal_key`` achieved goals of states drawn by ``strategy`` from each row's
    episode (``random``: from ``random_goal_pool`` when given, else from the chunk).
    Observations must be a dict with ``desired_goal``; it is replaced in both ``observations``
    and ``next_observations``. Rewards come from ``reward`` (or ``reward_fn``).
    """
    if strategy not in goal_expansions():
        raise ConfigError(f"strategy: {strategy!r} is not a goal strategy ({goal_expansions()})")
    if k < 1:
        raise ConfigError(f"k: must be >= 1, got {k}")
    if not isinstance(chunk.observations, dict) or DESIRED_GOAL not in chunk.observations:
        raise MissingKeyError(
            f"observations/{DESIRED_GOAL}: goal relabeling needs dict observations with a "
            "desired goal"
        )
    reward = reward or GoalReward()
    mixture = GoalMixture.only(strategy, gamma=gamma, truncation=truncation)
    sampler = GoalSampler(
        chunk,
        goal_key=goal_key,
        value_goals=mixture,
        reward=reward,
        reward_fn=reward_fn,
        random_goal_pool=random_goal_pool,
        seed=rng,
    )
    rows = np.repeat(np.arange(len(chunk), dtype=np.int64), k)
    batch = sampler.sample(len(rows), rows=rows)
    terminals = batch["terminals"]
    infos = {name: take_rows(values, rows) for name, values in chunk.infos.items()}
    infos[SOURCE_INDEX] = rows + first_row
    infos[RELABEL_STRATEGY] = np.full(len(rows), relabel_code(strategy), dtype=np.uint8)
    copies = Trajectories._trusted(
        observations=batch["observations"],
        actions=batch["actions"],
        rewards=batch["rewards"],
        terminals=terminals,
        timeouts=~terminals,
        next_observations=batch["next_observations"],
        episode_starts=np.arange(len(rows), dtype=np.int64),
        task_ids=batch.get("task_ids"),
        tasks=chunk.tasks,
        infos=infos,
        attrs=chunk.attrs,
    )
    if stats is not None:
        if reward.tolerance is None:
            before = chunk.terminals
        else:
            judged = sampler.next_achieved if reward.judged_on == "next" else sampler.achieved
            before = goal_success(judged, chunk.observations[DESIRED_GOAL], reward.tolerance)
        stats.successes_before += int(np.count_nonzero(before))
        stats.successes_after += int(np.count_nonzero(terminals))
        stats.relabeled += len(rows)
    return copies


def expand_tasks(
    chunk: Trajectories,
    *,
    first_row: int,
    strategy: str,
    targets: np.ndarray,
    task_rewards: Callable[[Trajectories], np.ndarray] | None,
    stats: ExpansionStats | None = None,
) -> Trajectories | None:
    """Copies of ``chunk``'s episodes under other tasks; None when nothing is shared.

    ``targets[e]`` lists the tasks episode ``e`` is shared with (``[E, k]``, -1 for none, as
    :func:`gcrl.relabel.tasks.draw_tasks` returns). Rewards of a copy are its target task's
    (``task_rewards(chunk)`` gives the ``[N, M]`` matrix); 0 for ``zero-reward``.
    """
    if strategy not in TASK_EXPANSIONS:
        raise ConfigError(f"strategy: {strategy!r} is not a task strategy ({TASK_EXPANSIONS})")
    if stats is not None:
        stats.reward_before += float(chunk.rewards.sum(dtype=np.float64))
    episodes, slots = np.nonzero(targets >= 0)
    if len(episodes) == 0:
        return None
    tasks_of_copy = targets[episodes, slots]
    rows, starts = chunk.episode_rows(episodes)
    copies = chunk._take_rows(rows, starts)
    task_ids = np.repeat(tasks_of_copy, chunk.episode_lengths[episodes])
    if strategy == "zero-reward":
        rewards = np.zeros(len(rows), dtype=np.float32)
    else:
        if task_rewards is None:
            raise ConfigError(f"strategy {strategy}: needs task reward functions or columns")
        rewards = task_rewards(chunk)[rows, task_ids]
    infos = dict(copies.infos)
    infos[SOURCE_INDEX] = rows + first_row
    infos[RELABEL_STRATEGY] = np.full(len(rows), relabel_code(strategy), dtype=np.uint8)
    if stats is not None:
        stats.relabeled += len(rows)
        stats.reward_after += float(rewards.sum(dtype=np.float64))
        for task, count in zip(*np.unique(tasks_of_copy, return_counts=True), strict=True):
            stats.per_task[int(task)] = stats.per_task.get(int(task), 0) + int(count)
    return replace_fields(copies, rewards=rewards, task_ids=task_ids, infos=infos)
