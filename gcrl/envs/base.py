"""What gcrl needs from a real environment: a collection recipe and an evaluation suite.

A *recipe* plays a noisy scripted expert and returns the play as :class:`Trajectories`
(``collect``), configured by a typed options record (a :class:`CollectOptions` subclass) that
Python callers build directly and ``gcrl collect`` builds from its command line. A *suite*
makes environment instances for evaluation: each instance is reset to one of the suite's tasks
and stepped until it is done; the evaluator drives several instances in lockstep so that the
policy sees one batch per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from gcrl.datasets.trajectories import (
    Task,
    Trajectories,
    stack_observations,
    take_observations,
)
from gcrl.errors import ConfigError, option


def argument(help: str, **argparse_options: Any) -> dict[str, Any]:
    """A recipe option's field metadata: its ``--help`` line and any other argparse options
    (``choices``, ``metavar``, ``action``) of the ``gcrl collect`` option made from it."""
    return {"help": help, **argparse_options}


@dataclass(frozen=True)
class CollectOptions:
    """The options every recipe takes; a recipe's own options subclass this. Field metadata
    (:func:`argument`) becomes the ``gcrl collect`` option of the same name."""

    episodes: int = field(
        default=100, metadata=argument("episodes to record (per task for multi-task recipes)")
    )
    noise: float = field(default=0.1, metadata=argument("expert noise"))
    seed: int = field(default=0, metadata=argument("seed of every random choice"))

    def __post_init__(self) -> None:
        self.require_positive("episodes")
        if self.noise < 0:
            raise ConfigError(f"{option('noise')}: must be non-negative, got {self.noise}")
        for f in fields(self):  # the same choices the command line offers, from Python too
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ConfigError(
                    f"{option(f.name)}: unknown {getattr(self, f.name)!r}; "
                    f"choose one of {', '.join(choices)}"
                )

    def require_positive(self, name: str) -> None:
        """Raise unless the option ``name`` is None or at least 1."""
        value = getattr(self, name)
        if value is not None and value < 1:
            raise ConfigError(f"{option(name)}: must be at least 1, got {value}")


@dataclass(frozen=True)
class Step:
    """What one environment step returns to the evaluator."""

    observation: dict[str, np.ndarray] | np.ndarray
    reward: float
    #: The episode is over (terminated, truncated, or at the suite's step limit).
    done: bool
    #: The task is solved at this step (the evaluator counts an episode as a success when any
    #: of its steps is).
    success: bool


class TaskEnv(Protocol):
    """One environment instance that can be reset to any task of its suite."""

    def reset(self, task: int, seed: int) -> dict[str, np.ndarray] | np.ndarray:
        """Start an episode of suite task ``task`` (an index into ``Suite.tasks``); returns
        the first observation, in the layout of the suite's datasets."""
        ...

    def step(self, action: np.ndarray) -> Step:
        """Apply one action."""
        ...

    def render(self) -> np.ndarray:
        """The current frame, RGB uint8 ``[H, W, 3]``."""
        ...

    def close(self) -> None:
        """Release the simulator."""
        ...


class Suite(Protocol):
    """A set of evaluation tasks in one real environment."""

    #: The name ``gcrl evaluate --env`` takes.
    name: str
    #: The evaluation tasks; names match the task names of the recipe's datasets, so a policy
    #: trained with task ids or texts is given the right ones.
    tasks: tuple[Task, ...]
    #: Step limit of an evaluation episode.
    max_steps: int

    def make_env(self, render: bool = False) -> TaskEnv:
        """A fresh instance (``render=True``: :meth:`TaskEnv.render` works)."""
        ...


class Recipe(Protocol):
    """A dataset recipe for ``gcrl collect``."""

    #: The name ``gcrl collect`` takes.
    name: str
    #: One line for ``gcrl collect --help``.
    summary: str
    #: Its options record (a :class:`CollectOptions` subclass).
    options: type[CollectOptions]

    def collect(self, options: Any) -> Iterator[Trajectories]:
        """Play ``options.episodes`` episodes; yields parts of whole episodes, in order, each
        with the dataset's full task table. Every random choice is drawn from
        ``options.seed``."""
        ...

    def attrs(self, options: Any) -> dict[str, Any]:
        """Provenance attributes stored in the dataset (environment id, expert, noise)."""
        ...


def episode_to_trajectories(
    observations: list[Any],
    actions: list[np.ndarray],
    rewards: list[float],
    terminated: bool,
    infos: dict[str, list[Any]] | None = None,
    task_id: int | None = None,
    tasks: tuple[Task, ...] = (),
) -> Trajectories:
    """One recorded episode as :class:`Trajectories`.

    ``observations`` holds the T+1 observations of T steps (dicts or arrays); row ``t`` pairs
    observation ``t`` with action ``t`` and observation ``t + 1``. ``terminated`` marks a true
    end (the last row's ``terminals``); otherwise the episode was cut (``timeouts``).
    ``infos`` values are per step (T each, taken after the step).
    """
    steps = len(actions)
    if len(observations) != steps + 1:
        raise ValueError(f"{len(observations)} observations for {steps} actions; need T + 1")
    stacked = stack_observations(observations)
    end = np.zeros(steps, dtype=bool)
    end[-1] = True
    extras = {k: np.asarray(v) for k, v in (infos or {}).items()}
    return Trajectories(
        observations=take_observations(stacked, slice(0, steps)),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminals=end & terminated,
        timeouts=end & (not terminated),
        next_observations=take_observations(stacked, slice(1, steps + 1)),
        episode_starts=np.zeros(1, dtype=np.int64),
        task_ids=None if task_id is None else np.full(steps, task_id, dtype=np.int64),
        tasks=tasks,
        infos=extras,
    )


@contextlib.contextmanager
def global_numpy_random(stream: np.random.RandomState) -> Iterator[None]:
    """numpy's global generator set to ``stream`` inside the block, ``stream`` advanced and the
    caller's global state restored afterwards: for simulators and scripted experts (OGBench's)
    that draw from ``np.random`` directly, so that they follow a seed without the caller's
    global state changing."""
    saved = np.random.get_state()  # noqa: NPY002  (the legacy global state is the point)
    np.random.set_state(stream.get_state())  # noqa: NPY002
    try:
        yield
    finally:
        stream.set_state(np.random.get_state())  # noqa: NPY002
        np.random.set_state(saved)  # noqa: NPY002
