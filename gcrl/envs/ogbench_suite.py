"""Every OGBench environment with OGBench's evaluation protocol: ``gcrl evaluate CKPT --env
cube-single-v0`` (or ``antmaze-large-navigate-v0``, ``visual-puzzle-3x3-play-v0``, ...).

The name is an OGBench environment id (``cube-single-v0``) or a dataset name
(``cube-single-play-v0``, whose dataset type is dropped as ``ogbench.make_env_and_datasets``
drops it). The suite's tasks are the environment's own five evaluation tasks
(``env.unwrapped.task_infos``, named as OGBench names them: ``task1_horizontal``, ...). As in
OGBench's ``impls/utils/evaluation.py``, an episode starts with ``env.reset(options=
{"task_id": i})``, the goal is the ``info["goal"]`` that reset returns (a whole observation),
actions are clipped to [-1, 1], and an episode ends at ``terminated`` (the environment
terminates at the goal) or ``truncated`` (its registered step limit). OGBench scores the last
step's ``info["success"]``; the evaluator scores any step's, the same thing for environments
that terminate at the goal, as all of OGBench's evaluation environments do.

Observations reach the policy as ``{"observation": ob, "desired_goal": goal}``: a policy
trained on OGBench's array observations takes the state from ``observation``. Each reset is
seeded by the evaluator (numpy's global generator too, which OGBench's resets draw from).
OGBench is imported only when a suite is made.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import DESIRED_GOAL, Task
from gcrl.envs.base import Step, global_numpy_random
from gcrl.envs.gymnasium_suite import OBSERVATION, is_success, render_frame
from gcrl.errors import ConfigError

#: OGBench's environment families (the first words of its ids).
FAMILIES = ("pointmaze", "antmaze", "humanoidmaze", "antsoccer", "cube", "scene", "puzzle")
_ID = re.compile(rf"^(visual-)?({'|'.join(FAMILIES)})-[\w-]*v\d+$")
#: Dataset types, the word a dataset name has and its environment id has not.
DATASET_TYPES = ("navigate", "stitch", "explore", "play", "noisy")


def is_ogbench_name(name: str) -> bool:
    """Whether ``name`` looks like an OGBench environment id or dataset name (checked
    without importing OGBench).

    >>> is_ogbench_name("cube-single-v0"), is_ogbench_name("pointmaze-medium-navigate-v0")
    (True, True)
    >>> is_ogbench_name("pointmaze-medium"), is_ogbench_name("CartPole-v1")
    (False, False)
    """
    return bool(_ID.match(name))


def environment_id(name: str) -> str:
    """OGBench's environment id of ``name``: the name itself, or a dataset name without its
    dataset type (``cube-single-play-v0`` -> ``cube-single-v0``)."""
    words = name.split("-")
    return "-".join(w for w in words[:-1] if w not in DATASET_TYPES) + "-" + words[-1]


@dataclass
class OGBenchSuite:
    """One OGBench environment's five evaluation tasks (made by :func:`ogbench_suite`)."""

    #: The name ``--env`` was given.
    name: str
    #: OGBench's environment id (``gymnasium.make`` takes it once ``ogbench`` is imported).
    env_id: str
    #: The registered step limit of an evaluation episode.
    max_steps: int = field(init=False)
    #: The environment's evaluation tasks, in task-id order (OGBench's ids start at 1).
    tasks: tuple[Task, ...] = field(init=False)

    def __post_init__(self) -> None:
        probe = _make(self.env_id, self.name, render=False)
        try:
            self.max_steps = int(probe.spec.max_episode_steps)
            self.tasks = tuple(Task(str(t["task_name"])) for t in probe.unwrapped.task_infos)
        finally:
            probe.close()

    def make_env(self, render: bool = False) -> OGBenchTaskEnv:
        """A fresh instance (``render=True``: made with ``render_mode="rgb_array"``)."""
        return OGBenchTaskEnv(self, render)


class OGBenchTaskEnv:
    """One instance of an :class:`OGBenchSuite`'s environment."""

    def __init__(self, suite: OGBenchSuite, render: bool = False) -> None:
        self.suite = suite
        self.env = _make(suite.env_id, suite.name, render=render)
        self._goal = np.zeros(0, dtype=np.float32)

    def reset(self, task: int, seed: int) -> dict[str, np.ndarray]:
        """Start an episode of task ``task`` (0-based: OGBench's ``task_id`` ``task + 1``);
        returns the observation with the task's goal as ``desired_goal``."""
        # OGBench's resets draw start and goal noise from numpy's global generator and take
        # random settling actions from the action space's: both seeded from ``seed`` here.
        self.env.action_space.seed(int(seed))
        with global_numpy_random(np.random.RandomState(int(seed))):
            ob, info = self.env.reset(seed=int(seed), options={"task_id": task + 1})
        self._goal = np.asarray(info["goal"], dtype=np.float32)
        return self._observation(ob)

    def step(self, action: np.ndarray) -> Step:
        """Apply one action, clipped to [-1, 1] as OGBench's evaluation clips it."""
        clipped = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        ob, reward, terminated, truncated, info = self.env.step(clipped)
        return Step(self._observation(ob), float(reward), terminated or truncated, is_success(info))

    def render(self) -> np.ndarray:
        """The environment's ``rgb_array`` frame, uint8 ``[H, W, 3]``."""
        return render_frame(self.env, self.suite.name)

    def close(self) -> None:
        """Close the environment."""
        self.env.close()

    def _observation(self, ob: Any) -> dict[str, np.ndarray]:
        return {OBSERVATION: np.asarray(ob), DESIRED_GOAL: self._goal.copy()}


def _make(env_id: str, name: str, *, render: bool) -> Any:
    try:
        import gymnasium
        import ogbench  # noqa: F401  (registers its environments)
    except ImportError as err:
        raise ConfigError(f"--env {name}: needs the ogbench package ({err})") from None
    kwargs: dict[str, Any] = {"render_mode": "rgb_array"} if render else {}
    with warnings.catch_warnings():  # GLFW's and gymnasium's float32 casts, at every make
        warnings.simplefilter("ignore")
        try:
            return gymnasium.make(env_id, **kwargs)
        except gymnasium.error.Error as err:
            raise ConfigError(
                f"--env {name}: OGBench has no environment {env_id!r} ({err})"
            ) from None


def ogbench_suite(name: str) -> OGBenchSuite:
    """The suite of an OGBench environment id or dataset name; returns it after making one
    instance, which checks the name."""
    return OGBenchSuite(name, environment_id(name))
