"""Loading, saving and combining trajectory datasets.

>>> import numpy as np
>>> from gcrl.datasets import Trajectories
>>> obs = np.arange(4, dtype=np.float32)[:, None]
>>> t = Trajectories(observations=obs[:3], actions=np.zeros((3, 1)), rewards=np.zeros(3),
...                  terminals=[False, False, True], timeouts=[False, False, False],
...                  next_observations=obs[1:], episode_starts=[0])
>>> t.num_transitions, t.num_episodes
(3, 1)
"""

from gcrl.datasets.d4rl_format import load_d4rl, qlearning_dataset
from gcrl.datasets.loading import FORMATS, detect_format, load
from gcrl.datasets.minari_format import load_minari
from gcrl.datasets.native_format import (
    NativeReader,
    NativeWriter,
    load_native,
    open_native,
    save,
)
from gcrl.datasets.ogbench_format import load_ogbench
from gcrl.datasets.trajectories import Observations, Task, Trajectories, concatenate

__all__ = [
    "FORMATS",
    "NativeReader",
    "NativeWriter",
    "Observations",
    "Task",
    "Trajectories",
    "concatenate",
    "detect_format",
    "load",
    "load_d4rl",
    "load_minari",
    "load_native",
    "load_ogbench",
    "open_native",
    "qlearning_dataset",
    "save",
]
