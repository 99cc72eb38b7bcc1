"""Meta-World MT10: ten Sawyer-arm manipulation tasks, one multi-task dataset.

Collection (``gcrl collect metaworld-mt10``) plays each of the ten MT10 tasks with Meta-World's
own scripted policy (``metaworld.policies``) plus Gaussian action noise (std ``--noise``, then
clipped to the action box [-1, 1]). ``--episodes`` counts episodes *per task*; the tasks take
turns (one episode of each, in the order of :data:`TASKS`, then the next round), so a partial
run stays balanced. Every episode draws a fresh task variation (object and goal positions) from
Meta-World's own variation space, seeded from ``--seed`` (one independent stream per task), and
lasts ``--max-steps`` steps (Meta-World's horizon: 500): Meta-World never terminates, so the
last row of every episode is a timeout, never a terminal, even after success.

Observations are Meta-World's flat 39-d float32 vector with the goal visible (as in the MT
benchmarks): hand position (3), gripper opening (1), first object position and quaternion
(3 + 4), second object position and quaternion (3 + 4, zeros when absent), the same 18 values
one step earlier, and the goal position (3). Actions are float32 ``[4]``: hand displacement
(x, y, z) and gripper effort. Rewards are Meta-World's dense shaped reward (its v2 reward
functions, 0 to 10 per step, scale as given); ``infos/success`` is Meta-World's
``info["success"]`` at each step, as a bool.

Evaluation (``gcrl evaluate --env metaworld-mt10``) uses the MT10 benchmark's own task list
(``metaworld.MT10(seed=BENCHMARK_SEED).train_tasks``: 50 fixed variations per task); episode
seed ``s`` picks variation ``s % 50`` of the task, and an episode lasts 500 steps (it is not
cut at success; it counts as a success when any step succeeds).

Meta-World is imported only when an environment is made, so importing this module does not
need it installed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.envs.base import CollectOptions, Step, argument, episode_to_trajectories
from gcrl.errors import ConfigError, RenderError

#: The MT10 tasks, in Meta-World's MT10 order, with one-sentence instructions.
TASKS: tuple[Task, ...] = (
    Task("reach-v3", "move the gripper to the goal position"),
    Task("push-v3", "push the puck across the table to the goal"),
    Task("pick-place-v3", "pick up the puck and place it at the goal"),
    Task("door-open-v3", "open the door by pulling its handle"),
    Task("drawer-open-v3", "pull the drawer open by its handle"),
    Task("drawer-close-v3", "push the drawer closed"),
    Task("button-press-topdown-v3", "press the button down from the top"),
    Task("peg-insert-side-v3", "pick up the peg and insert it into the side hole"),
    Task("window-open-v3", "slide the window open"),
    Task("window-close-v3", "slide the window closed"),
)
#: Meta-World's horizon (``max_path_length``), the evaluation step limit.
EVAL_STEPS = 500
#: Seed of the ``metaworld.MT10`` benchmark whose task list the evaluation uses.
BENCHMARK_SEED = 0
_POLICY_WARNING = r"Constant\(s\) may be too high"


# --------------------------------------------------------------------------- metaworld access
def metaworld_version() -> str:
    """The installed Meta-World version, e.g. ``"3.1.1"``."""
    from importlib.metadata import version

    return version("metaworld")


@cache
def _check_installed() -> None:
    """Raises :class:`ConfigError` when the installed Meta-World's MT10 differs from
    :data:`TASKS` (another version naming scheme); returns nothing otherwise."""
    from metaworld.env_dict import MT10_V3

    names = list(MT10_V3)
    if names != [t.name for t in TASKS]:
        raise ConfigError(
            f"metaworld {metaworld_version()}: MT10 tasks are {names}, this module knows "
            f"{[t.name for t in TASKS]}"
        )


def make_play_env(name: str, seed: int, max_steps: int) -> Any:
    """A goal-observable Meta-World environment for ``name`` that draws a fresh task variation
    at every ``reset()`` from its own generator seeded with ``seed``; returns the environment
    (no time limit wrapper: ``max_steps`` is its horizon)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    cls: Any = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{name}-goal-observable"]
    env = cls(seed=seed)
    env._freeze_rand_vec = False  # a new variation at every reset ...
    env.seeded_rand_vec = True  # ... drawn from env.np_random, not the global numpy state
    env.seed(seed)
    env.max_path_length = max_steps
    return env


def make_expert(name: str) -> Any:
    """Meta-World's scripted policy for task ``name`` (``get_action(obs) -> [4]``)."""
    from metaworld.policies import ENV_POLICY_MAP

    cls: Any = ENV_POLICY_MAP[name]
    return cls()


@cache
def benchmark_variations(seed: int = BENCHMARK_SEED) -> tuple[tuple[Any, ...], ...]:
    """The ``metaworld.MT10(seed=seed)`` train tasks grouped by :data:`TASKS` (50
    ``metaworld.Task`` variations each); returns one tuple per task. Built once per process
    (about 10 s)."""
    import metaworld

    _check_installed()
    benchmark = metaworld.MT10(seed=seed)
    return tuple(
        tuple(v for v in benchmark.train_tasks if v.env_name == task.name) for task in TASKS
    )


def _observation(obs: np.ndarray) -> np.ndarray:
    return np.asarray(obs, dtype=np.float32)


# --------------------------------------------------------------------------- collection
class _Player:
    """Plays one task: its environment, expert and random stream."""

    def __init__(
        self, task_id: int, noise: float, max_steps: int, stream: np.random.SeedSequence
    ) -> None:
        self.task_id = task_id
        self.noise = noise
        self.max_steps = max_steps
        self.rng = np.random.default_rng(stream)
        name = TASKS[task_id].name
        self.env = make_play_env(name, int(self.rng.integers(2**31)), max_steps)
        self.expert = make_expert(name)
        self.low = np.asarray(self.env.action_space.low, dtype=np.float32)
        self.high = np.asarray(self.env.action_space.high, dtype=np.float32)

    def episode(self) -> Trajectories:
        """One episode in a new task variation; returns it as :class:`Trajectories`."""
        obs, _ = self.env.reset()
        observations = [_observation(obs)]
        actions: list[np.ndarray] = []
        rewards: list[float] = []
        successes: list[bool] = []
        terminated = False
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_POLICY_WARNING, category=UserWarning)
            for _ in range(self.max_steps):
                action = np.asarray(self.expert.get_action(obs), dtype=np.float64)
                if self.noise > 0:
                    action = action + self.rng.normal(0.0, self.noise, size=action.shape)
                action = np.clip(action, self.low, self.high).astype(np.float32)
                obs, reward, terminated, truncated, info = self.env.step(action)
                observations.append(_observation(obs))
                actions.append(action)
                rewards.append(float(reward))
                successes.append(bool(info["success"]))
                if terminated or truncated:
                    break
        return episode_to_trajectories(
            observations,
            actions,
            rewards,
            terminated=bool(terminated),
            infos={"success": successes},
            task_id=self.task_id,
            tasks=TASKS,
        )

    def close(self) -> None:
        self.env.close()


@dataclass(frozen=True)
class MetaWorldOptions(CollectOptions):
    """Options of ``gcrl collect metaworld-mt10`` (``episodes`` counts per task)."""

    noise: float = field(default=0.1, metadata=argument("std of the Gaussian action noise"))
    max_steps: int = field(
        default=EVAL_STEPS,
        metadata=argument(f"steps per episode (Meta-World's horizon: {EVAL_STEPS})"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("max_steps")


class MetaWorldRecipe:
    """``gcrl collect metaworld-mt10``: Meta-World's scripted experts on the ten MT10 tasks."""

    name = "metaworld-mt10"
    summary = "Meta-World MT10, the ten tasks played by Meta-World's noisy scripted policies"
    options = MetaWorldOptions

    def attrs(self, options: MetaWorldOptions) -> dict[str, Any]:
        """Provenance: benchmark, Meta-World version, expert, noise, seed and step limit."""
        return {
            "env": "metaworld MT10",
            "benchmark": "MT10",
            "metaworld_version": metaworld_version(),
            "expert": "metaworld.policies scripted policy + Gaussian action noise, clipped to "
            "[-1, 1]",
            "noise": float(options.noise),
            "seed": int(options.seed),
            "max_steps": int(options.max_steps),
            "episodes_per_task": int(options.episodes),
            "observation": "39-d Meta-World state, goal observable",
            "reward": "Meta-World's dense reward (v2 reward functions, 0..10 per step, as given)",
        }

    def collect(self, options: MetaWorldOptions) -> Iterator[Trajectories]:
        """Plays ``options.episodes`` episodes of every task, tasks taking turns; yields one
        part per episode, each with the full task table."""
        _check_installed()
        streams = np.random.SeedSequence(options.seed).spawn(len(TASKS))
        players: list[_Player] = []
        try:
            for task_id, stream in enumerate(streams):
                players.append(_Player(task_id, options.noise, options.max_steps, stream))
            for _ in range(options.episodes):
                for player in players:
                    yield player.episode()
        finally:
            for player in players:
                player.close()


RECIPE = MetaWorldRecipe()
RECIPES = {RECIPE.name: RECIPE}


# --------------------------------------------------------------------------- evaluation
class MetaWorldEnv:
    """Meta-World's MT10 environments behind one :class:`gcrl.envs.base.TaskEnv`: ``reset``
    switches to the task's environment (made on first use) and one of its benchmark
    variations."""

    def __init__(self, variations: Sequence[Sequence[Any]], render: bool = False) -> None:
        if render and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
            os.environ["MUJOCO_GL"] = "egl"  # headless: offscreen EGL rendering
        self.variations = variations
        self.render_enabled = render
        self._envs: dict[int, Any] = {}
        self._env: Any = None
        self._steps = 0

    def _task_env(self, task: int) -> Any:
        env = self._envs.get(task)
        if env is None:
            from metaworld.env_dict import MT10_V3

            kwargs: dict[str, Any] = {"render_mode": "rgb_array"} if self.render_enabled else {}
            env = self._envs[task] = MT10_V3[TASKS[task].name](**kwargs)
        return env

    def reset(self, task: int, seed: int) -> np.ndarray:
        """Starts task ``task`` in benchmark variation ``seed % 50``; returns the first
        observation, float32 ``[39]``."""
        if not 0 <= task < len(TASKS):
            raise ConfigError(f"task: index {task} out of [0, {len(TASKS)})")
        env = self._task_env(task)
        variations = self.variations[task]
        env.set_task(variations[seed % len(variations)])
        obs, _ = env.reset()
        self._env, self._steps = env, 0
        return _observation(obs)

    def step(self, action: np.ndarray) -> Step:
        """Applies ``action`` (clipped to [-1, 1]); returns the :class:`Step`, ``done`` at
        the 500-step limit (Meta-World never terminates)."""
        if self._env is None:
            raise ConfigError("step: call reset(task, seed) first")
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self._env.step(action)
        self._steps += 1
        done = bool(terminated or truncated) or self._steps >= EVAL_STEPS
        return Step(_observation(obs), float(reward), done, bool(info["success"]))

    def render(self) -> np.ndarray:
        """The current frame, RGB uint8 ``[480, 480, 3]``; raises :class:`RenderError` when
        the environment was made without ``render=True`` or offscreen OpenGL fails."""
        if not self.render_enabled:
            raise RenderError("render: this environment was made with render=False")
        if self._env is None:
            raise RenderError("render: call reset(task, seed) first")
        try:
            frame = self._env.render()
        except Exception as error:
            backend = os.environ.get("MUJOCO_GL", "glfw")
            raise RenderError(
                f"render: MuJoCo offscreen rendering failed with MUJOCO_GL={backend} ({error}); "
                "set MUJOCO_GL to egl or osmesa"
            ) from error
        return np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        """Closes every environment made so far."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self._env = None


@dataclass(frozen=True)
class MetaWorldSuite:
    """The ten MT10 tasks, each in the MT10 benchmark's 50 variations, 500 steps."""

    name: str = "metaworld-mt10"
    tasks: tuple[Task, ...] = TASKS
    max_steps: int = EVAL_STEPS
    #: Seed of the ``metaworld.MT10`` benchmark that fixes the variations.
    benchmark_seed: int = BENCHMARK_SEED

    def make_env(self, render: bool = False) -> MetaWorldEnv:
        """A fresh instance; returns a :class:`MetaWorldEnv` (the benchmark's variations are
        built once per process, about 10 s)."""
        return MetaWorldEnv(benchmark_variations(self.benchmark_seed), render=render)


SUITES = {"metaworld-mt10": MetaWorldSuite}
