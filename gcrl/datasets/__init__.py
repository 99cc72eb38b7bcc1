"""Loading, saving and combining trajectory datasets (numpy and h5py; no torch).

>>> import numpy as np
>>> from gcrl.datasets import Trajectories
>>> obs = np.arange(4, dtype=np.float32)[:, None]
>>> t = Trajectories(observations=obs[:3], actions=np.zeros((3, 1)), rewards=np.zeros(3),
...                  terminals=[False, False, True], timeouts=[False, False, False],
...                  next_observations=obs[1:], episode_starts=[0])
>>> t.num_transitions, t.num_episodes
(3, 1)

Names are imported on first use, so that ``gcrl.datasets.trajectories`` (numpy only) can be
used without loading h5py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gcrl.datasets.conversion import ConvertSummary, convert
    from gcrl.datasets.d4rl_format import load_d4rl, qlearning_dataset
    from gcrl.datasets.loading import (
        DatasetFormat,
        detect_format,
        format_names,
        formats,
        load,
        register_format,
    )
    from gcrl.datasets.mapped import memory_mapped
    from gcrl.datasets.minari_reader import load_minari
    from gcrl.datasets.native_format import (
        NativeReader,
        NativeWriter,
        load_native,
        open_native,
        save,
    )
    from gcrl.datasets.ogbench_format import load_ogbench, write_ogbench
    from gcrl.datasets.trajectories import Observations, Task, Trajectories, concatenate

_HOMES = {
    "ConvertSummary": "conversion",
    "convert": "conversion",
    "load_d4rl": "d4rl_format",
    "qlearning_dataset": "d4rl_format",
    "DatasetFormat": "loading",
    "detect_format": "loading",
    "format_names": "loading",
    "formats": "loading",
    "load": "loading",
    "register_format": "loading",
    "memory_mapped": "mapped",
    "load_minari": "minari_reader",
    "NativeReader": "native_format",
    "NativeWriter": "native_format",
    "load_native": "native_format",
    "open_native": "native_format",
    "save": "native_format",
    "load_ogbench": "ogbench_format",
    "write_ogbench": "ogbench_format",
    "Observations": "trajectories",
    "Task": "trajectories",
    "Trajectories": "trajectories",
    "concatenate": "trajectories",
}

__all__ = [
    "ConvertSummary",
    "DatasetFormat",
    "NativeReader",
    "NativeWriter",
    "Observations",
    "Task",
    "Trajectories",
    "concatenate",
    "convert",
    "detect_format",
    "format_names",
    "formats",
    "load",
    "load_d4rl",
    "load_minari",
    "load_native",
    "load_ogbench",
    "memory_mapped",
    "open_native",
    "qlearning_dataset",
    "register_format",
    "save",
    "write_ogbench",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gcrl.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gcrl.datasets.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
