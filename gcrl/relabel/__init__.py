"""Hindsight-goal and task relabeling, numpy only (importable from JAX or any code base).

Goal strategies (:mod:`gcrl.relabel.goals`) draw, for each sampled state, a goal state of
the same episode; :class:`GoalSampler` turns them into relabeled training batches; task
strategies (:mod:`gcrl.relabel.tasks`) share trajectories between the tasks of a multi-task
dataset. Every random choice takes a ``numpy.random.Generator`` (or a seed) and no input array
is modified.
"""

from gcrl.relabel.episodes import EpisodeIndex
from gcrl.relabel.goals import (
    GOAL_STRATEGIES,
    KEEP,
    GoalMixture,
    current_goals,
    episode_goals,
    final_goals,
    future_goals,
    geometric_goals,
    random_goals,
)
from gcrl.relabel.her import her_relabel
from gcrl.relabel.rewards import GoalReward, goal_distance, goal_success
from gcrl.relabel.sampler import GoalSampler, TaskSampler
from gcrl.relabel.tasks import (
    conservative_share,
    draw_tasks,
    episode_returns,
    hipi_probabilities,
    percentile_ranks,
    percentile_tasks,
    task_reward_matrix,
    top_k_tasks,
    uniform_other_tasks,
)

__all__ = [
    "GOAL_STRATEGIES",
    "KEEP",
    "EpisodeIndex",
    "GoalMixture",
    "GoalReward",
    "GoalSampler",
    "TaskSampler",
    "conservative_share",
    "current_goals",
    "draw_tasks",
    "episode_goals",
    "episode_returns",
    "final_goals",
    "future_goals",
    "geometric_goals",
    "goal_distance",
    "goal_success",
    "her_relabel",
    "hipi_probabilities",
    "percentile_ranks",
    "percentile_tasks",
    "random_goals",
    "task_reward_matrix",
    "top_k_tasks",
    "uniform_other_tasks",
]
