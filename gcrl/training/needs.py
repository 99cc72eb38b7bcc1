"""What an algorithm needs its batches to hold, declared by the algorithm.

An algorithm's ``data_needs`` (a :class:`DataNeeds`) names the value goals its losses expect
and the extra goal sets they read (HIQL's subgoals), so that a config names only the
algorithm: the data module draws what the algorithm it trains declares. ``data.value_goals``
overrides the value mixture, and the start-up lines say which applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gcrl.relabel import Subgoal


@dataclass(frozen=True)
class DataNeeds:
    """An algorithm's batch requirements.

    Attributes:
        value_goals: weights by strategy of the ``value`` goal mixture under ``relabel:
            ogbench`` (CRL: ``{geometric: 1.0}``; None: OGBench's current 0.2, geometric 0.5,
            random 0.3).
        goal_sets: extra goal sets by name, each a :class:`gcrl.relabel.Subgoal` (HIQL's
            ``subgoal`` and ``high_target``, 25 steps ahead).
    """

    value_goals: Mapping[str, float] | None = None
    goal_sets: Mapping[str, Subgoal] = field(default_factory=dict)
