"""Hindsight-goal and task relabeling, numpy only (importable from JAX or any code base).

Goal strategies (:mod:`gcrl.relabel.goals`) draw, for each sampled state, a goal state of
the same episode; :class:`GoalSampler` turns them into relabeled training batches; task
strategies (:mod:`gcrl.relabel.tasks`) share trajectories between the tasks of a multi-task
dataset. Every random choice takes a ``numpy.random.Generator`` (or a seed) and no input array
is modified.

:func:`relabel_file` (offline relabeling of a whole file, :mod:`gcrl.relabel.offline`) also
needs h5py; it is imported on first use, so ``import gcrl.relabel`` loads numpy only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gcrl.relabel.codes import RELABEL_CODES
from gcrl.relabel.episodes import EpisodeIndex
from gcrl.relabel.goals import (
    GOAL_STRATEGIES,
    KEEP,
    GoalMixture,
    GoalOptions,
    GoalQuery,
    GoalStrategy,
    Subgoal,
    current_goals,
    episode_goals,
    final_goals,
    future_goals,
    geometric_goals,
    random_goals,
    register_goal_strategy,
)
from gcrl.relabel.her import her_relabel
from gcrl.relabel.pipeline import KeepStoredGoals, Pipeline
from gcrl.relabel.rewards import GoalReward, goal_distance, goal_success
from gcrl.relabel.sampler import GoalSampler, RowSampler
from gcrl.relabel.sharing import SHARING_MODES, ScoreFilter, TaskSampler, TaskSharing
from gcrl.relabel.tasks import (
    TaskSelection,
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

if TYPE_CHECKING:
    from gcrl.relabel.offline import RelabelSummary as RelabelSummary
    from gcrl.relabel.offline import relabel_file as relabel_file

#: Names of :mod:`gcrl.relabel.offline` (h5py), imported on first use (and left out of
#: ``__all__``, so that ``from gcrl.relabel import *`` stays numpy only).
_OFFLINE = ("RelabelSummary", "relabel_file")

__all__ = [
    "GOAL_STRATEGIES",
    "KEEP",
    "RELABEL_CODES",
    "SHARING_MODES",
    "EpisodeIndex",
    "GoalMixture",
    "GoalOptions",
    "GoalQuery",
    "GoalReward",
    "GoalSampler",
    "GoalStrategy",
    "KeepStoredGoals",
    "Pipeline",
    "RowSampler",
    "ScoreFilter",
    "Subgoal",
    "TaskSampler",
    "TaskSelection",
    "TaskSharing",
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
    "register_goal_strategy",
    "task_reward_matrix",
    "top_k_tasks",
    "uniform_other_tasks",
]


def __getattr__(name: str) -> Any:
    if name in _OFFLINE:
        return getattr(importlib.import_module("gcrl.relabel.offline"), name)
    raise AttributeError(f"module 'gcrl.relabel' has no attribute {name!r}")
