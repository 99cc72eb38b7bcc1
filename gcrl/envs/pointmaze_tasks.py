"""PointMaze tasks: M fixed-goal tasks in one OGBench point maze, with computable rewards.

``gcrl collect pointmaze-tasks`` records, for each of a maze's OGBench evaluation tasks, episodes
of the noisy waypoint expert of :mod:`gcrl.envs.pointmaze` heading for that task's goal cell:
each episode starts in a random free cell (jittered as OGBench does) and runs ``--max-steps``
steps; after the goal is reached the expert hovers there. No episode ends in a terminal: every
one is cut by the step limit (a timeout), so any task's reward can be put on any episode.

The data can be made uneven the way the multi-task papers study it:
``--episodes-per-task 200,200,20,20,5`` gives some tasks little data, ``--noise-per-task``
makes some tasks' behaviour noisier, and ``--off-task 0,0,0.5,0,0`` makes that share of a
task's episodes chase another task's goal (chosen uniformly) while still labelled as the task.
``--detour 0.5,0.5,0,0,0`` instead routes that share of a task's episodes through another
task's goal (chosen uniformly) on the way to their own: the episode still solves its task, and
the other task's goal lies on its route, so a scarce task can borrow the route's transitions
from a rich task's data through task sharing.

Rewards are computed on ``s'``: the reward of row t under task m is 1 when the ball's position
in ``next_observations`` lies within :data:`~gcrl.envs.pointmaze.SUCCESS_RADIUS` (1.0) of task
m's goal, else 0. ``rewards`` holds the labelled task's, ``infos/task_rewards`` every task's
(``[N, M]``), and :func:`task_rewards` computes the same from observations, so it can be named
as ``--reward-fn gcrl.envs.pointmaze_tasks:task_rewards`` (medium maze; :func:`task_reward_fn`
makes one for any maze). ``infos/pursued_task`` is, per row, the task whose goal the expert was
heading for (on a detour: the other task's until the ball is within the success radius of its
goal, then the episode's own).

Evaluation (``gcrl evaluate --env pointmaze-medium-tasks``) starts each task from OGBench's
start cell (with its position noise) and puts the goal exactly at the task's goal cell centre,
the point the rewards use; success within 1.0 at any step, 1000 steps.

>>> task_rewards(None, None, {"achieved_goal": np.array([[20.0, 20.5], [9.0, 9.0]])}).tolist()
[[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.envs.base import CollectOptions, argument, episode_to_trajectories
from gcrl.envs.pointmaze import (
    SUCCESS_RADIUS,
    PointMazeEnv,
    PointMazeSuite,
    WaypointExpert,
    _jitter,
    _observation,
    _place,
    free_cells,
    make_ogbench_env,
)
from gcrl.errors import ConfigError, option

#: The mazes with OGBench's five evaluation tasks.
TASK_MAZES = ("medium", "large", "giant")
#: OGBench's task goals in the medium maze (maze units), task1 ... task5.
MEDIUM_GOALS = ((20.0, 20.0), (20.0, 0.0), (4.0, 12.0), (0.0, 20.0), (0.0, 0.0))
MEDIUM_TEXTS = (
    "go to the bottom-right corner",
    "go to the top-right corner",
    "go to the middle of the left side",
    "go to the bottom-left corner",
    "go to the top-left corner",
)


def maze_tasks(maze: str) -> tuple[tuple[Task, ...], np.ndarray]:
    """The maze's tasks (``task1`` ..., with a short text) and their goals ``[M, 2]``.

    The medium maze's are constants (no simulator needed); the other mazes' come from OGBench.
    """
    if maze == "medium":
        tasks = tuple(Task(f"task{i + 1}", text) for i, text in enumerate(MEDIUM_TEXTS))
        return tasks, np.array(MEDIUM_GOALS)
    if maze not in TASK_MAZES:
        raise ConfigError(f"{option('maze')}: unknown {maze!r}; choose one of {TASK_MAZES}")
    env = make_ogbench_env(maze)
    infos = env.task_infos
    env.close()
    tasks = tuple(
        Task(info["task_name"], f"go to row {info['goal_ij'][0]}, column {info['goal_ij'][1]}")
        for info in infos
    )
    return tasks, np.array([info["goal_xy"] for info in infos], dtype=np.float64)


def positions(observations: Any) -> np.ndarray:
    """The ball's x-y position of each row: ``achieved_goal`` of dict observations, the first
    two values of array ones."""
    if isinstance(observations, dict):
        return np.asarray(observations["achieved_goal"])[:, :2]
    return np.asarray(observations)[:, :2]


def task_reward_fn(goals: np.ndarray) -> Callable[[Any, Any, Any], np.ndarray]:
    """``fn(observations, actions, next_observations) -> [n, M]`` float32: 1 where ``s'`` is
    within the success radius of task m's goal (``goals[m]``), else 0."""
    goals = np.asarray(goals, dtype=np.float64)

    def rewards(observations: Any, actions: Any, next_observations: Any) -> np.ndarray:
        xy = positions(next_observations).astype(np.float64)
        distance = np.linalg.norm(xy[:, None, :] - goals[None, :, :], axis=-1)
        return (distance <= SUCCESS_RADIUS).astype(np.float32)

    return rewards


#: The medium maze's five task rewards, computed on s' (``--reward-fn
#: gcrl.envs.pointmaze_tasks:task_rewards``).
task_rewards = task_reward_fn(np.array(MEDIUM_GOALS))


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _float_list(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


@dataclass(frozen=True)
class PointMazeTasksOptions(CollectOptions):
    """Options of ``gcrl collect pointmaze-tasks``; the per-task lists have one value per
    task, in task order."""

    noise: float = field(default=0.2, metadata=argument("expert noise (std of the actions)"))
    maze: str = field(default="medium", metadata=argument("maze layout", choices=TASK_MAZES))
    max_steps: int = field(default=300, metadata=argument("steps per episode"))
    episodes_per_task: tuple[int, ...] | None = field(
        default=None,
        metadata=argument(
            "episodes of each task, e.g. 200,200,20,20,5 (default: --episodes each)",
            type=_int_list,
            metavar="N,N,...",
        ),
    )
    noise_per_task: tuple[float, ...] | None = field(
        default=None,
        metadata=argument(
            "expert noise of each task (default: --noise each)", type=_float_list, metavar="X,..."
        ),
    )
    off_task: tuple[float, ...] | None = field(
        default=None,
        metadata=argument(
            "share of each task's episodes that chase another task's goal (default: 0)",
            type=_float_list,
            metavar="P,...",
        ),
    )
    detour: tuple[float, ...] | None = field(
        default=None,
        metadata=argument(
            "share of each task's episodes that pass through another task's goal before "
            "their own (default: 0)",
            type=_float_list,
            metavar="P,...",
        ),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("max_steps")
        for name in ("episodes_per_task", "noise_per_task", "off_task", "detour"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.episodes_per_task is not None and min(self.episodes_per_task) < 0:
            raise ConfigError(f"{option('episodes_per_task')}: counts must be >= 0")
        if self.noise_per_task is not None and min(self.noise_per_task) < 0:
            raise ConfigError(f"{option('noise_per_task')}: noise must be >= 0")
        for name in ("off_task", "detour"):
            value = getattr(self, name)
            if value is not None and not all(0.0 <= p <= 1.0 for p in value):
                raise ConfigError(f"{option(name)}: shares must lie in [0, 1]")
        if self.off_task is not None and self.detour is not None:
            # Unequal lengths are per_task's error, which knows the task count.
            pairs = zip(self.off_task, self.detour, strict=False)
            both = [m for m, (a, b) in enumerate(pairs) if a + b > 1]
            if both:
                raise ConfigError(
                    f"{option('off_task')} + {option('detour')}: the shares of task "
                    f"{both[0] + 1} add up to more than 1"
                )

    def per_task(self, num_tasks: int) -> list[tuple[int, float, float, float]]:
        """``(episodes, noise, off-task share, detour share)`` of each task."""

        def column(name: str, default: float) -> tuple[float, ...]:
            value = getattr(self, name)
            if value is None:
                return (default,) * num_tasks
            if len(value) != num_tasks:
                raise ConfigError(
                    f"{option(name)}: {len(value)} values for the maze's {num_tasks} tasks"
                )
            return tuple(value)

        counts = column("episodes_per_task", self.episodes)
        noises = column("noise_per_task", self.noise)
        shares = column("off_task", 0.0)
        detours = column("detour", 0.0)
        return [
            (int(n), float(x), float(p), float(d))
            for n, x, p, d in zip(counts, noises, shares, detours, strict=True)
        ]


class PointMazeTasksRecipe:
    """``gcrl collect pointmaze-tasks``: M fixed-goal tasks in one maze, by the noisy expert."""

    name = "pointmaze-tasks"
    summary = "OGBench point maze, one fixed-goal task per evaluation task, per-task rewards"
    options = PointMazeTasksOptions

    def attrs(self, options: PointMazeTasksOptions) -> dict[str, Any]:
        tasks, goals = maze_tasks(options.maze)
        plan = options.per_task(len(tasks))
        return {
            "env": f"ogbench pointmaze-{options.maze}-tasks",
            "expert": "waypoint (BFS over cells) + Gaussian action noise, towards the task's "
            "goal cell centre from a random start cell; hovers at the goal once there",
            "seed": int(options.seed),
            "max_steps": int(options.max_steps),
            "episodes_per_task": [p[0] for p in plan],
            "noise_per_task": [p[1] for p in plan],
            "off_task": [p[2] for p in plan],
            "detour": [p[3] for p in plan],
            "task_goals": goals.tolist(),
            "success_radius": SUCCESS_RADIUS,
            "reward": "computed on s': 1 when s' is within success_radius of the task's goal; "
            "infos/task_rewards holds every task's",
            "reward_fn": "gcrl.envs.pointmaze_tasks:task_rewards"
            if options.maze == "medium"
            else "gcrl.envs.pointmaze_tasks:task_reward_fn(goals)",
        }

    def collect(self, options: PointMazeTasksOptions) -> Iterator[Trajectories]:
        tasks, goals = maze_tasks(options.maze)
        plan = options.per_task(len(tasks))
        rewards_of = task_reward_fn(goals)
        env = make_ogbench_env(options.maze)
        try:
            rng = np.random.default_rng(options.seed)
            cells = free_cells(env.maze_map)
            for task, (count, noise, off_share, detour_share) in enumerate(plan):
                expert = WaypointExpert(env, noise, rng)
                others = [m for m in range(len(tasks)) if m != task]
                for _ in range(count):
                    # One draw decides: off task (below off_share), a detour (the next
                    # detour_share), or straight to the task's own goal.
                    u = rng.random() if others else 1.0
                    route = [task]
                    if u < off_share + detour_share:
                        other = others[int(rng.integers(len(others)))]
                        route = [other] if u < off_share else [other, task]
                    yield self._episode(
                        env, expert, cells, goals, task, route, tasks, rewards_of, options, rng
                    )
        finally:
            env.close()

    def _episode(
        self,
        env: Any,
        expert: WaypointExpert,
        cells: list[tuple[int, int]],
        goals: np.ndarray,
        task: int,
        route: list[int],
        tasks: tuple[Task, ...],
        rewards_of: Callable[[Any, Any, Any], np.ndarray],
        options: PointMazeTasksOptions,
        rng: np.random.Generator,
    ) -> Trajectories:
        # The expert heads for each goal of ``route`` in turn, the next once within the
        # success radius of the current one; it hovers at the last.
        leg = 0
        start = cells[rng.integers(len(cells))]
        xy = _place(env, _jitter(env, start, rng), goals[route[-1]], int(rng.integers(2**31)))
        observations = [_observation(xy, goals[task])]
        actions, pursued = [], []
        for _ in range(options.max_steps):
            pursued.append(route[leg])
            action = expert(xy, goals[route[leg]])
            env.step(action)
            xy = np.asarray(env.get_ob(), dtype=np.float64)
            observations.append(_observation(xy, goals[task]))
            actions.append(action)
            if leg + 1 < len(route) and np.linalg.norm(xy - goals[route[leg]]) <= SUCCESS_RADIUS:
                leg += 1
        next_xy = np.stack([o["achieved_goal"] for o in observations[1:]])
        every_task = rewards_of(None, None, {"achieved_goal": next_xy})
        return episode_to_trajectories(
            observations,
            actions,
            list(every_task[:, task]),
            terminated=False,
            infos={
                "success": list(every_task[:, task] > 0),
                "task_rewards": list(every_task),
                "pursued_task": pursued,
            },
            task_id=task,
            tasks=tasks,
        )


RECIPE = PointMazeTasksRecipe()
RECIPES = {RECIPE.name: RECIPE}


# --------------------------------------------------------------------------- evaluation
class PointMazeTaskEnv(PointMazeEnv):
    """A point maze reset to one fixed-goal task: OGBench's jittered start, the exact goal."""

    def __init__(self, maze: str, goals: np.ndarray) -> None:
        super().__init__(maze)
        self.goals = goals

    def task_goal(self, task: int, rng: np.random.Generator) -> np.ndarray:
        """The task's goal itself (the point its reward is computed for), no noise."""
        return np.array(self.goals[task], dtype=np.float64)


@dataclass(frozen=True)
class PointMazeTasksSuite(PointMazeSuite):
    """The fixed-goal tasks of one maze, named and worded as the recipe's datasets."""

    @property
    def name(self) -> str:
        return f"pointmaze-{self.maze}-tasks"

    @property
    def tasks(self) -> tuple[Task, ...]:
        return maze_tasks(self.maze)[0]

    def make_env(self, render: bool = False) -> PointMazeTaskEnv:
        return PointMazeTaskEnv(self.maze, maze_tasks(self.maze)[1])


SUITES = {
    f"pointmaze-{maze}-tasks": (lambda maze=maze: PointMazeTasksSuite(maze)) for maze in TASK_MAZES
}
