"""Any gymnasium environment as an evaluation suite: ``gcrl evaluate CKPT --env CartPole-v1``.

:func:`gymnasium_suite` turns an environment name into a :class:`GymnasiumSuite` with one
task, named after the environment id:

* a registered gymnasium id (``CartPole-v1``, ``Pendulum-v1``); gymnasium-robotics' ids
  (``PointMaze_UMaze-v3``, ``AntMaze_UMaze-v5``) are registered on demand, by importing
  ``gymnasium_robotics`` only when the id is not found otherwise;
* ``module:EnvId``, gymnasium's own form: ``module`` is imported first (it registers
  ``EnvId``), for environments of any other package;
* ``minari:DATASET_ID``: the environment a local Minari dataset recorded (its evaluation
  environment when the dataset names one); the dataset is opened locally, never downloaded.

Observations are handed to the policy as the environment returns them: a dict (its keys, e.g.
``observation``, ``achieved_goal``, ``desired_goal``) or an array. The goal is the
observation's ``desired_goal``; an environment without one can be given a fixed goal
(``goal``, ``gcrl evaluate --goal X,Y``), added to every observation as ``desired_goal`` (an
array observation becomes ``{"observation": ..., "desired_goal": ...}``). An episode ends at
``terminated`` or ``truncated`` (gymnasium's ``TimeLimit``), or after ``max_steps``; it is a
success when ``info["success"]`` or ``info["is_success"]`` is true at any step. Each episode's
reset is seeded by the evaluator (:func:`gcrl.evaluation.episode_seed`).

gymnasium (and minari, gymnasium-robotics) are imported only when a suite is made.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import io
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import DESIRED_GOAL, Task
from gcrl.envs.base import Step
from gcrl.errors import ConfigError, DatasetNotFoundError, RenderError

#: ``--env minari:DATASET_ID``: the environment a local Minari dataset recorded.
MINARI_PREFIX = "minari:"
#: Step limit of an environment without a ``TimeLimit`` (when ``max_steps`` is not given).
DEFAULT_MAX_STEPS = 1000
#: The key an array observation is given when a fixed goal is added to it.
OBSERVATION = "observation"
#: ``info`` keys that report success, in the order they are read.
SUCCESS_KEYS = ("success", "is_success")
_SUPPORTED_LEAVES = ("Box", "Discrete", "MultiBinary", "MultiDiscrete")


@dataclass
class GymnasiumSuite:
    """One gymnasium environment as a one-task :class:`~gcrl.envs.base.Suite` (made by
    :func:`gymnasium_suite`, which checks the name first)."""

    #: The name ``--env`` was given (``CartPole-v1``, ``module:EnvId``, ``minari:ID``).
    name: str
    #: What ``gymnasium.make`` takes: an id (``module:EnvId`` included) or an ``EnvSpec``.
    env_spec: Any
    #: The environment's own id (the task's name).
    env_id: str
    #: Step limit of an episode (the evaluator stops an episode there).
    max_steps: int
    #: The fixed goal added to observations as ``desired_goal`` (None: the env's own).
    goal: tuple[float, ...] | None = None
    #: Extra ``gymnasium.make`` keyword arguments (``max_episode_steps``).
    make_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: One task, named after the environment id.
    tasks: tuple[Task, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.tasks = (Task(self.env_id),)

    def make_env(self, render: bool = False) -> GymnasiumTaskEnv:
        """A fresh instance; ``render=True`` makes it with ``render_mode="rgb_array"``.
        Returns the :class:`GymnasiumTaskEnv`."""
        return GymnasiumTaskEnv(self, render=render)


class GymnasiumTaskEnv:
    """One instance of a :class:`GymnasiumSuite`'s environment (its only task)."""

    def __init__(self, suite: GymnasiumSuite, render: bool = False) -> None:
        self.suite = suite
        self.env = _make(suite, render_mode="rgb_array" if render else None)
        self._goal = None if suite.goal is None else np.asarray(suite.goal, dtype=np.float32)

    def reset(self, task: int, seed: int) -> dict[str, np.ndarray] | np.ndarray:
        """Start an episode, ``env.reset(seed=seed)``; returns the first observation."""
        observation, _ = self.env.reset(seed=int(seed))
        return self._observation(observation)

    def step(self, action: np.ndarray) -> Step:
        """Apply one action (checked against the action space; Box actions are clipped to
        its bounds); returns the :class:`~gcrl.envs.base.Step`."""
        observation, reward, terminated, truncated, info = self.env.step(self._action(action))
        return Step(
            observation=self._observation(observation),
            reward=float(reward),
            done=bool(terminated or truncated),
            success=is_success(info),
        )

    def render(self) -> np.ndarray:
        """The environment's ``rgb_array`` frame (:func:`render_frame`)."""
        return render_frame(self.env, self.suite.name)

    def close(self) -> None:
        """Close the environment."""
        self.env.close()

    def _observation(self, raw: Any) -> dict[str, np.ndarray] | np.ndarray:
        if isinstance(raw, Mapping):
            out = {str(k): _leaf(v) for k, v in raw.items()}
            if self._goal is not None:
                out[DESIRED_GOAL] = self._goal.copy()
            return out
        array = _leaf(raw)
        if self._goal is None:
            return array
        return {OBSERVATION: array, DESIRED_GOAL: self._goal.copy()}

    def _action(self, action: Any) -> Any:
        space = self.env.action_space
        kind = type(space).__name__
        value = np.asarray(action)
        if kind == "Discrete":
            if value.size != 1 or not np.issubdtype(value.dtype, np.integer):
                raise self._action_error(value, space)
            chosen = int(value.reshape(()))
            if not space.contains(np.int64(chosen)):
                raise self._action_error(value, space)
            return chosen
        if value.size != int(np.prod(space.shape)):
            raise self._action_error(value, space)
        if kind == "Box":
            value = value.astype(space.dtype).reshape(space.shape)
            return np.clip(value, space.low, space.high)
        if not np.issubdtype(value.dtype, np.integer):  # MultiDiscrete, MultiBinary
            raise self._action_error(value, space)
        value = value.astype(space.dtype).reshape(space.shape)
        if not space.contains(value):
            raise self._action_error(value, space)
        return value

    def _action_error(self, value: np.ndarray, space: Any) -> ConfigError:
        return ConfigError(
            f"--env {self.suite.name}: the policy's actions ({value.dtype} of shape "
            f"{value.shape}) do not fit its action space {space}"
        )


def render_frame(env: Any, name: str) -> np.ndarray:
    """``env.render()`` (made with ``render_mode="rgb_array"``) as uint8 ``[H, W, 3]``;
    raises :class:`~gcrl.errors.RenderError`, naming the suite ``name``, when it cannot draw
    one."""
    try:
        with warnings.catch_warnings():  # GLFW's, while MuJoCo looks for a display
            warnings.simplefilter("ignore")
            frame = env.render()
    except Exception as err:  # MuJoCo without an OpenGL platform, a missing pygame, ...
        raise RenderError(
            f"--video: {name} cannot render ({type(err).__name__}: {_first_line(err)}); "
            "MuJoCo environments need an offscreen OpenGL, e.g. MUJOCO_GL=egl"
        ) from None
    if frame is None:
        raise RenderError(f"--video: {name} returned no rgb_array frame")
    return np.asarray(frame, dtype=np.uint8)[..., :3]


def is_success(info: Mapping[str, Any]) -> bool:
    """Whether a step's ``info`` reports success (``success`` or ``is_success`` truthy).

    >>> is_success({"is_success": 1.0}), is_success({"success": False}), is_success({})
    (True, False, False)
    """
    return any(bool(np.any(info[key])) for key in SUCCESS_KEYS if key in info)


def gymnasium_suite(
    name: str,
    *,
    goal: Sequence[float] | None = None,
    max_steps: int | None = None,
    suites: Sequence[str] = (),
) -> GymnasiumSuite:
    """The suite of a gymnasium id, ``module:EnvId`` or ``minari:DATASET_ID``; returns it
    after making one instance, which checks the id, the spaces and ``goal``.

    ``goal`` is a fixed goal for environments whose observations hold no ``desired_goal``;
    ``max_steps`` caps every episode (gymnasium's ``max_episode_steps``; default: the
    environment's ``TimeLimit``, else :data:`DEFAULT_MAX_STEPS`). ``suites`` (gcrl's own suite
    names) are listed by the error for an unknown name.
    """
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"--max-steps: must be at least 1, got {max_steps}")
    if goal is not None:
        goal = tuple(float(v) for v in goal)
        if not goal or not all(np.isfinite(goal)):
            raise ConfigError(f"--goal: needs finite numbers, got {goal}")
    if name.startswith(MINARI_PREFIX):
        env_spec, env_id = _minari_env_spec(name)
    else:
        env_spec = env_id = _registered_id(name, suites)
    kwargs = {} if max_steps is None else {"max_episode_steps": max_steps}
    probe = GymnasiumSuite(name, env_spec, env_id, max_steps or DEFAULT_MAX_STEPS, None, kwargs)
    env = _make(probe, render_mode=None, quiet=True)
    try:
        _check_space(name, "observation", env.observation_space)
        _check_space(name, "action", env.action_space)
        if goal is not None and _has_goal(env.observation_space):
            raise ConfigError(
                f"--goal: {name} gives its own goal (desired_goal in its observations); drop --goal"
            )
        if max_steps is None:
            max_steps = getattr(env.spec, "max_episode_steps", None) or DEFAULT_MAX_STEPS
        env_id = str(getattr(env.spec, "id", None) or env_id)
    finally:
        env.close()
    return GymnasiumSuite(name, env_spec, env_id, int(max_steps), goal, kwargs)


def _registered_id(name: str, suites: Sequence[str]) -> str:
    """``name`` when gymnasium knows it (after importing ``module`` of ``module:EnvId``, or
    gymnasium-robotics for an id not registered otherwise); raises the unknown-name error."""
    import gymnasium as gym

    module, _, env_id = name.rpartition(":")
    reason = ""
    if module:
        try:
            with _quiet():
                importlib.import_module(module)
        except ImportError as err:
            reason = f"; module {module!r} does not import ({_first_line(err)})"
    elif env_id not in gym.registry:
        _register_robotics()  # gymnasium-robotics' ids, when it is installed
    if env_id in gym.registry:
        return name
    close = difflib.get_close_matches(env_id, list(gym.registry), n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]!r}?" if close and not reason else ""
    raise ConfigError(
        f"--env: unknown {name!r}; not a gcrl suite (choose one of {', '.join(suites)}) "
        f"nor a registered gymnasium id{reason}{hint}"
    )


def _register_robotics() -> bool:
    """Register gymnasium-robotics' environments; returns whether it is installed."""
    import gymnasium as gym

    try:
        with _quiet():
            import gymnasium_robotics

            gym.register_envs(gymnasium_robotics)
    except ImportError:
        return False
    return True


def _minari_env_spec(name: str) -> tuple[Any, str]:
    """The ``EnvSpec`` a local Minari dataset recorded (its evaluation one when it has one)
    and that environment's id."""
    from gcrl.datasets.minari_reader import open_minari

    dataset_id = name[len(MINARI_PREFIX) :]
    if not dataset_id:
        raise ConfigError(f"--env {name}: name a dataset, minari:DATASET_ID")
    try:
        with _quiet():
            dataset = open_minari(dataset_id)
    except DatasetNotFoundError:
        raise DatasetNotFoundError(
            f"--env {name}: no local Minari dataset {dataset_id!r} (nothing is downloaded; "
            "check MINARI_DATASETS_PATH)"
        ) from None
    env_spec = getattr(dataset, "_eval_env_spec", None) or dataset.env_spec
    if env_spec is None:
        raise ConfigError(f"--env {name}: the dataset records no environment (env_spec)")
    return env_spec, str(env_spec.id)


def _make(suite: GymnasiumSuite, render_mode: str | None, quiet: bool = False) -> Any:
    """``gymnasium.make`` of the suite's environment; returns the environment. A failure
    (a missing simulator, bad arguments) is one :class:`ConfigError` line."""
    import gymnasium as gym

    try:
        with _quiet() if quiet else contextlib.nullcontext():
            return gym.make(suite.env_spec, render_mode=render_mode, **suite.make_kwargs)
    except Exception as err:
        raise ConfigError(
            f"--env {suite.name}: cannot make the environment ({type(err).__name__}: "
            f"{_first_line(err)})"
        ) from None


def _check_space(name: str, what: str, space: Any) -> None:
    """Raise unless ``space`` is one gcrl can hand over: Box, Discrete, MultiBinary,
    MultiDiscrete, or (observations only) a Dict of those."""
    kind = type(space).__name__
    if kind in _SUPPORTED_LEAVES:
        return
    if what == "observation" and kind == "Dict":
        for key, sub in space.spaces.items():
            if type(sub).__name__ not in _SUPPORTED_LEAVES:
                raise ConfigError(
                    f"--env {name}: observation {key!r} is a {type(sub).__name__} space; "
                    f"gcrl evaluates {', '.join(_SUPPORTED_LEAVES)} (or a Dict of them)"
                )
        return
    raise ConfigError(
        f"--env {name}: its {what} space {kind} is not supported; gcrl evaluates "
        f"{', '.join(_SUPPORTED_LEAVES)}"
        + (" (or a Dict of them)" if what == "observation" else "")
    )


def _has_goal(space: Any) -> bool:
    return type(space).__name__ == "Dict" and DESIRED_GOAL in space.spaces


def _leaf(value: Any) -> np.ndarray:
    """An observation part as an array; a scalar (a Discrete observation) as shape ``(1,)``
    so that a batch of them stacks to ``[B, 1]``."""
    array = np.asarray(value)
    return array.reshape(1) if array.ndim == 0 else array


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow what imports print (gymnasium-robotics prints a notice about its Adroit
    environments on stderr), so that a command's output and its one-line errors stay its
    own."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
