"""The training side (torch and Lightning): the data module and the typed batch it yields.

>>> from gcrl.training import Batch, TrajectoryDataModule
>>> sorted(f for f in Batch.__dataclass_fields__)  # doctest: +NORMALIZE_WHITESPACE
['actions', 'goal_states', 'goals', 'masks', 'next_observations', 'observations',
 'rewards', 'source_task_ids', 'task_ids', 'updates']
"""

from gcrl.training.batch import Batch, DeviceData
from gcrl.training.datamodule import GOAL_SETS, RELABEL_MODES, TrajectoryDataModule

__all__ = ["GOAL_SETS", "RELABEL_MODES", "Batch", "DeviceData", "TrajectoryDataModule"]
