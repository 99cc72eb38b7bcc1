"""gcrl: goal-conditioned imitation and offline RL on multi-task trajectory datasets.

Importing :mod:`gcrl` is cheap: it loads no submodule. ``gcrl.datasets``,
``gcrl.relabel`` and the rest are imported on first attribute access, so that
``import gcrl.relabel`` from a JAX code base pulls in numpy and nothing heavier.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_SUBMODULES = ("algorithms", "cli", "datasets", "errors", "models", "relabel", "tasks")

__all__ = ["__version__", "load_policy", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"gcrl.{name}")
    if name == "load_policy":  # torch is imported only when a policy is loaded
        return importlib.import_module("gcrl.policy").load_policy
    raise AttributeError(f"module 'gcrl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
