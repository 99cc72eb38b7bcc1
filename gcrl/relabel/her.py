"""HER-style relabeling of a sampled batch with a fixed relabel ratio.

>>> import numpy as np
>>> index = EpisodeIndex.from_starts([0], num_rows=4)
>>> achieved = np.arange(5.0)[:, None]          # achieved goal of s_0..s_4
>>> out = her_relabel(np.arange(4), index, achieved[:4], achieved[1:],
...                   goals=np.full((4, 1), 9.0), rewards=np.zeros(4), terminals=np.zeros(4, bool),
...                   ratio=0.5, rng=np.random.default_rng(0))
>>> int(out["relabeled"].sum())                 # exactly round(0.5 * 4)
2
>>> bool((out["goals"][~out["relabeled"]] == 9.0).all())
True
"""

from __future__ import annotations

import numpy as np

from gcrl.datasets.trajectories import take_rows
from gcrl.errors import ConfigError
from gcrl.relabel.episodes import EpisodeIndex
from gcrl.relabel.goals import GoalMixture, goal_strategy
from gcrl.relabel.rewards import GoalReward


def her_relabel(
    rows: np.ndarray,
    index: EpisodeIndex,
    achieved: np.ndarray,
    next_achieved: np.ndarray,
    *,
    goals: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    rng: np.random.Generator,
    ratio: float = 0.8,
    strategy: str = "future",
    reward: GoalReward | None = None,
) -> dict[str, np.ndarray]:
    """Relabel exactly ``round(ratio * B)`` rows of a batch, chosen uniformly at random.

    ``rows`` are the batch's source rows, ``achieved``/``next_achieved`` the dataset's
    achieved-goal columns of ``s`` and ``s'`` (``[N, G]``), ``goals``/``rewards``/
    ``terminals`` the batch's current values. Relabeled rows take the achieved goal of a state
    drawn by ``strategy`` from their own episode (``future``: of a next observation of step
    ``t .. T-1``, as HER); their rewards and terminals are recomputed with ``reward``. HER's
    ``k`` relabeled goals per real one is ``ratio = k / (k + 1)`` (k = 4: 0.8).

    Returns new arrays ``goals``, ``rewards`` (float32), ``terminals`` (bool), ``relabeled``
    (bool mask) and ``goal_states`` (state positions, -1 where not relabeled); the inputs are
    not modified.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"ratio: must lie in [0, 1], got {ratio}")
    drawn_by = goal_strategy(strategy)
    if drawn_by.keeps_stored:
        raise ConfigError(f"strategy: {strategy!r} relabels nothing; choose a goal strategy")
    any_episode = drawn_by.any_episode
    reward = reward or GoalReward()
    rows = np.asarray(rows, dtype=np.int64)
    size = len(rows)
    chosen = rng.choice(size, size=round(ratio * size), replace=False)
    chosen.sort()
    episodes = index.episode_of_row[rows[chosen]]
    states = rows[chosen] + episodes
    targets = GoalMixture.only(strategy).sample(
        states,
        index.first_state[episodes],
        index.last_state[episodes],
        index.num_states,
        rng,
    )
    # Goals of a strategy that may leave the episode find their own episode.
    new_goals = index.gather_states(
        achieved, next_achieved, targets, None if any_episode else episodes
    )
    judged = next_achieved if reward.judged_on == "next" else achieved
    success = reward.success(new_goals, targets, states, lambda: take_rows(judged, rows[chosen]))

    out_goals = np.array(goals, copy=True)
    out_goals[chosen] = new_goals
    out_rewards = np.array(rewards, dtype=np.float32, copy=True)
    out_rewards[chosen] = reward.rewards(success)
    out_terminals = np.array(terminals, dtype=bool, copy=True)
    out_terminals[chosen] = success
    relabeled = np.zeros(size, dtype=bool)
    relabeled[chosen] = True
    goal_states = np.full(size, -1, dtype=np.int64)
    goal_states[chosen] = targets
    return {
        "goals": out_goals,
        "rewards": out_rewards,
        "terminals": out_terminals,
        "relabeled": relabeled,
        "goal_states": goal_states,
    }
