"""gcrl: goal-conditioned imitation and offline RL on multi-task trajectory datasets.

Importing :mod:`gcrl` is cheap: it loads no submodule. ``gcrl.datasets``,
``gcrl.relabel`` and the rest are imported on first attribute access, so that
``import gcrl.relabel`` from a JAX code base pulls in numpy and nothing heavier.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = ("cli", "datasets", "errors", "relabel")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"gcrl.{name}")
    raise AttributeError(f"module 'gcrl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
