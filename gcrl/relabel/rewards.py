"""Goal rewards: was the goal reached, and what reward does that give.

Success is judged on ``s'`` by default (the achieved goal after the action, as HER and
gymnasium-robotics do) or on ``s`` (as OGBench does), and decided by a distance tolerance
(default) or by index equality (the goal is that very state, OGBench's convention).

>>> achieved = np.array([[0.0, 0.0], [3.0, 4.0]])
>>> goals = np.zeros((2, 2))
>>> goal_distance(achieved, goals).tolist()
[0.0, 5.0]
>>> GoalReward(tolerance=0.5).rewards(goal_success(achieved, goals, 0.5)).tolist()
[1.0, 0.0]
>>> GoalReward(negative=True).rewards(np.array([True, False])).tolist()
[0.0, -1.0]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gcrl.errors import ConfigError, RewardFunctionError

JudgedOn = Literal["next", "current"]


def goal_distance(achieved: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Euclidean distance over the last axis, in the goal space's units; float array ``[B]``."""
    diff = np.asarray(achieved, dtype=np.float64) - np.asarray(goals, dtype=np.float64)
    return np.sqrt(np.einsum("...i,...i->...", diff, diff))


def goal_success(achieved: np.ndarray, goals: np.ndarray, tolerance: float) -> np.ndarray:
    """True where ``goal_distance(achieved, goals) <= tolerance``; bool ``[B]``."""
    return goal_distance(achieved, goals) <= tolerance


#: The goal tolerance when neither the user nor the dataset gives one.
DEFAULT_TOLERANCE = 0.5
#: Dataset attributes that record the success radius its own rewards used, in order of
#: preference: ``gcrl collect`` writes ``success_radius``, ``gcrl relabel`` ``tolerance``.
TOLERANCE_ATTRS = ("success_radius", "tolerance")


def recorded_tolerance(attrs: Mapping[str, Any]) -> tuple[float, str]:
    """The default goal tolerance for a dataset with root attributes ``attrs`` and where it
    comes from: the radius the dataset's own rewards used when it records one (so relabeled
    rewards agree with the stored ones: 1.0 for gcrl's OGBench-style mazes, 0.45 for the
    gymnasium-robotics ones), else :data:`DEFAULT_TOLERANCE`.

    >>> recorded_tolerance({"success_radius": 1.0})
    (1.0, "the dataset's success_radius")
    >>> recorded_tolerance({})
    (0.5, "gcrl's default")
    """
    for key in TOLERANCE_ATTRS:
        value = attrs.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value), f"the dataset's {key}"
    return DEFAULT_TOLERANCE, "gcrl's default"


@dataclass(frozen=True)
class GoalReward:
    """How relabeled transitions are rewarded.

    ``tolerance``: success when the achieved goal is within this distance of the goal; None
    means index equality (the goal position is the judged state's position). ``judged_on``:
    ``"next"`` (``s'``, default) or ``"current"`` (``s``). ``negative``: rewards -1/0 instead
    of 0/1. A success also ends the goal's episode: its ``terminals`` is set and ``masks``
    (``1 - terminals``) is 0.
    """

    tolerance: float | None = DEFAULT_TOLERANCE
    judged_on: JudgedOn = "next"
    negative: bool = False

    def __post_init__(self) -> None:
        if self.tolerance is not None and not self.tolerance >= 0:
            raise ConfigError(f"tolerance: must be >= 0, got {self.tolerance}")
        if self.judged_on not in ("next", "current"):
            raise ConfigError(f"judged_on: expected 'next' or 'current', got {self.judged_on!r}")

    @classmethod
    def ogbench(cls) -> GoalReward:
        """OGBench's convention: index equality judged on ``s``, rewards -1/0."""
        return cls(tolerance=None, judged_on="current", negative=True)

    def success(
        self,
        goals: np.ndarray,
        goal_states: np.ndarray,
        row_states: np.ndarray,
        achieved: Callable[[], np.ndarray],
    ) -> np.ndarray:
        """Whether each sample reached its goal; bool ``[B]``.

        ``goal_states`` and ``row_states`` are the state positions of the goals and of ``s``
        (index equality compares the former with ``s`` or ``s' = s + 1``); ``achieved``
        returns the achieved goals of the judged state (only called with a tolerance).
        """
        if self.tolerance is None:
            return np.asarray(goal_states == row_states + int(self.judged_on == "next"))
        return goal_success(achieved(), goals, self.tolerance)

    def rewards(self, success: np.ndarray) -> np.ndarray:
        """0/1 (or -1/0 when ``negative``) rewards for ``success``; float32."""
        rewards = np.asarray(success, dtype=np.float32)
        return rewards - 1.0 if self.negative else rewards


def check_rewards(rewards: Any, size: int, name: str) -> np.ndarray:
    """``rewards`` as a float32 ``[size]`` array, or a RewardFunctionError naming ``name``."""
    array = np.asarray(rewards, dtype=np.float32)
    if array.shape != (size,):
        raise RewardFunctionError(f"{name}: returned shape {array.shape}, expected ({size},)")
    if not np.isfinite(array).all():
        raise RewardFunctionError(f"{name}: returned NaN or infinite rewards")
    return array
