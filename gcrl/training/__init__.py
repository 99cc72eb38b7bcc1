"""The training side (torch and Lightning): the data module and the typed batch it yields.
The data module (Lightning) is imported on first use, so the agents' ``Batch`` costs torch
only.

>>> from gcrl.training import Batch, TrajectoryDataModule
>>> sorted(f for f in Batch.__dataclass_fields__)  # doctest: +NORMALIZE_WHITESPACE
['actions', 'goal_states', 'goals', 'masks', 'next_observations', 'observations',
 'rewards', 'source_task_ids', 'task_ids', 'updates']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gcrl.training.batch import Batch, DeviceData

if TYPE_CHECKING:
    from gcrl.training.datamodule import GOAL_SETS, RELABEL_MODES, TrajectoryDataModule

_DATAMODULE_NAMES = ("GOAL_SETS", "RELABEL_MODES", "TrajectoryDataModule")


def __getattr__(name: str) -> Any:
    if name in _DATAMODULE_NAMES:
        return getattr(importlib.import_module("gcrl.training.datamodule"), name)
    raise AttributeError(f"module 'gcrl.training' has no attribute {name!r}")


__all__ = ["GOAL_SETS", "RELABEL_MODES", "Batch", "DeviceData", "TrajectoryDataModule"]
