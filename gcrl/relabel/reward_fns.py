"""Reward functions named by ``MODULE:NAME`` (or given as objects) for offline relabeling.

A goal strategy takes one function ``fn(observations, actions, next_observations) -> [n]``; a
task strategy takes one returning ``[n, tasks]``, or a list (or dict by task name) of per-task
functions. Every exception a function raises becomes a one-line
:class:`~gcrl.errors.RewardFunctionError` naming the function.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.errors import DataError, GcrlError, MissingKeyError, RewardFunctionError, option
from gcrl.io import Interrupted
from gcrl.relabel.rewards import check_rewards
from gcrl.relabel.sampler import RewardFn
from gcrl.relabel.tasks import task_reward_matrix

#: ``rewards(chunk) -> [n, tasks]`` float32: every row's reward under every task.
TaskRewards = Callable[[Trajectories], np.ndarray]
#: Info column holding per-task rewards ``[N, M]`` when no reward function is given.
TASK_REWARDS_KEY = "task_rewards"


def stored_task_rewards(
    path: Any, num_tasks: int, zeros: bool, option_name: str = "reward_fn"
) -> TaskRewards:
    """The ``[n, M]`` rewards of a chunk from its ``infos/task_rewards`` column; zeros where
    the column is absent and ``zeros`` is set (zero-reward sharing needs none), else a
    one-line error naming ``path`` and the option that supplies them (``option_name``)."""

    def stored(chunk: Trajectories) -> np.ndarray:
        if TASK_REWARDS_KEY not in chunk.infos:
            if zeros:
                return np.zeros((len(chunk), num_tasks), dtype=np.float32)
            raise MissingKeyError(
                f"{path}: infos/{TASK_REWARDS_KEY}: no such key; give {option(option_name)}"
            )
        matrix = chunk.infos[TASK_REWARDS_KEY]
        if matrix.shape != (len(chunk), num_tasks):
            raise DataError(
                f"{path}: infos/{TASK_REWARDS_KEY}: shape {matrix.shape}, "
                f"expected ({len(chunk)}, {num_tasks}) (rows x tasks)"
            )
        return np.asarray(matrix, dtype=np.float32)

    return stored


def import_object(spec: str, option_name: str = "reward_fn") -> Any:
    """The object named by ``module:name``: ``module`` is an importable dotted name (found on
    ``sys.path`` as it is; the working directory is not added) or a path to a ``.py`` file
    (``rewards.py:fn``, ``path/to/rewards.py:fn``). Importing runs the module's code. Errors
    name the option ``option_name``."""
    label = f"{option(option_name)} {spec}"
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise RewardFunctionError(f"{label}: expected MODULE:NAME")
    try:
        if module_name.endswith(".py") or "/" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise RewardFunctionError(f"{label}: no such file {path}")
            loaded = importlib.util.spec_from_file_location(path.stem, path)
            assert loaded is not None and loaded.loader is not None
            module = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except GcrlError:
        raise
    except (Exception, SystemExit) as err:
        hint = ""
        if Path(f"{module_name}.py").is_file():
            hint = f" (for the file in this directory, write {module_name}.py:{name})"
        raise RewardFunctionError(
            f"{label}: cannot import {module_name!r}: {type(err).__name__}: {err}{hint}"
        ) from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise RewardFunctionError(
            f"{label}: module {module_name!r} has no attribute {name!r}"
        ) from None


def _label(spec: Any, option_name: str = "reward_fn") -> str:
    name = spec if isinstance(spec, str) else getattr(spec, "__name__", type(spec).__name__)
    return f"{option(option_name)} {name}"


def _callable(label: str, obj: Any) -> Callable[..., Any]:
    if not callable(obj):
        raise RewardFunctionError(f"{label}: {obj!r} is not callable")
    return obj


def guarded(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` called on read-only views of its array arguments (so it cannot change the data),
    its exceptions, ``SystemExit`` and a ``KeyboardInterrupt`` it raises itself included, made
    one-line RewardFunctionErrors naming ``label``. A real interrupt (SIGINT, SIGTERM) passes."""

    def call(*args: Any) -> Any:
        try:
            return fn(*(read_only(a) for a in args))
        except GcrlError as err:
            raise RewardFunctionError(f"{label}: {err}") from None
        except Interrupted:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as err:
            raise RewardFunctionError(f"{label}: raised {type(err).__name__}: {err}") from None

    return call


def read_only(value: Any) -> Any:
    """``value`` with every array (also inside a dict) as a read-only view."""
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    if isinstance(value, dict):
        return {k: read_only(v) for k, v in value.items()}
    return value


def resolve(spec: Any, option_name: str = "reward_fn") -> tuple[str, Any]:
    """``(label for errors, object)``: a ``MODULE:NAME`` string is imported."""
    obj = import_object(spec, option_name) if isinstance(spec, str) else spec
    return _label(spec, option_name), obj


def goal_reward_fn(spec: Any) -> RewardFn:
    """The reward function of a goal strategy, guarded."""
    label, obj = resolve(spec)
    return guarded(label, _callable(label, obj))


def task_rewards_from(spec: Any, tasks: Sequence[Task], stored: TaskRewards) -> TaskRewards:
    """Every row's reward under every task, from the function(s) ``spec`` names or is; the
    ``stored`` rewards (a data column) when ``spec`` is None."""
    if spec is None:
        return stored
    label, obj = resolve(spec)
    num_tasks = len(tasks)
    if isinstance(obj, Mapping):
        missing = [t.name for t in tasks if t.name not in obj]
        if missing:
            raise RewardFunctionError(f"{label}: no function for tasks {missing}")
        obj = [obj[t.name] for t in tasks]
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        if len(obj) != num_tasks:
            raise RewardFunctionError(f"{label}: {len(obj)} functions for {num_tasks} tasks")
        fns = [_callable(label, fn) for fn in obj]
        return lambda chunk: guarded(label, task_reward_matrix)(
            chunk.observations, chunk.actions, chunk.next_observations, fns
        )
    fn = guarded(label, _callable(label, obj))

    def matrix(chunk: Trajectories) -> np.ndarray:
        out = np.asarray(
            fn(chunk.observations, chunk.actions, chunk.next_observations), dtype=np.float32
        )
        if out.shape != (len(chunk), num_tasks):
            raise RewardFunctionError(
                f"{label}: returned shape {out.shape}, expected "
                f"({len(chunk)}, {num_tasks}) (rows x tasks)"
            )
        return check_rewards(out.reshape(-1), out.size, label).reshape(out.shape)

    return matrix
