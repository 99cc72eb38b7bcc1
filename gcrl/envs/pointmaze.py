"""PointMaze: goal-conditioned navigation in OGBench's point-mass mazes.

Collection (``gcrl collect pointmaze``) follows OGBench's *navigate* datasets: each episode
starts in a random free cell, heads for a random goal cell, and draws a new goal cell as soon
as the current one is reached, until the step limit cuts the episode (a timeout, never a
terminal). The expert is a waypoint follower: it heads at full speed for the centre of the next
cell on a shortest path through the maze (breadth-first search over cells), or for the goal
itself once in the goal's cell, with Gaussian action noise.

Observations are dicts: ``observation`` and ``achieved_goal`` are the ball's x-y position (the
OGBench point maze observes exactly that), ``desired_goal`` the goal the expert pursues at that
observation. ``rewards[t]`` is 1 when ``s'`` lies within the success radius (1.0, OGBench's) of
the goal pursued at step t, else 0; ``infos/success`` is the same as a bool. Positions are in
maze units (4 per cell).

``--backend gymnasium-robotics`` plays the same way in gymnasium-robotics' ``PointMaze_*-v3``
(4-d observations: position and velocity; its own goal resets and 0.45 success radius; a PD
controller towards the next cell centre). The environment swaps the goal after returning the
observation that reached it, so there the new goal appears one observation later than in the
OGBench backend. Its datasets are for training; evaluation suites use OGBench's mazes.

Evaluation (``gcrl evaluate --env pointmaze-medium``) uses OGBench's five fixed tasks per maze
(start cell, goal cell) with their position noise, success within 1.0 of the goal, and the
1000-step limit, as in OGBench's published table.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.envs.base import CollectOptions, Step, argument, episode_to_trajectories
from gcrl.errors import ConfigError

MAZES = ("arena", "medium", "large", "giant")
#: OGBench's success radius for the point mass, in maze units.
SUCCESS_RADIUS = 1.0
#: gymnasium-robotics PointMaze's own success radius.
ROBOTICS_SUCCESS_RADIUS = 0.45
EVAL_STEPS = 1000


def make_ogbench_env(maze: str) -> Any:
    """An OGBench point-maze environment (no time limit; callers count steps)."""
    if maze not in MAZES:
        raise ConfigError(f"--maze: unknown {maze!r}; choose one of {', '.join(MAZES)}")
    from ogbench.locomaze.maze import make_maze_env

    # OGBench writes each maze's XML with tempfile.mkstemp and never deletes it (one file per
    # environment: thousands in /tmp after a sweep). Write it into a directory of our own,
    # removed once MuJoCo has read the model.
    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="gcrl-maze-") as scratch:
        tempfile.tempdir = scratch
        try:
            return make_maze_env("point", "maze", maze_type=maze, terminate_at_goal=False)
        finally:
            tempfile.tempdir = saved


def draw_maze(env: Any, xy: np.ndarray, goal_xy: np.ndarray, cell: int = 16) -> np.ndarray:
    """RGB uint8 top-down image of ``env``'s maze with the goal and the ball."""
    walls = np.kron(env.maze_map == 1, np.ones((cell, cell), dtype=bool))
    image = np.where(walls[..., None], 60, 235).astype(np.uint8).repeat(3, axis=2)
    rows, cols = np.mgrid[0 : walls.shape[0], 0 : walls.shape[1]]
    for point, colour, radius in ((goal_xy, (40, 170, 60), 0.25), (xy, (210, 40, 40), 0.15)):
        # Cell (i, j) has its centre at ij_to_xy((i, j)); one cell is maze_unit wide.
        i, j = env.xy_to_ij(point)
        ci, cj = (i + 0.5) * cell, (j + 0.5) * cell
        cx, cy = env.ij_to_xy((i, j))
        pi = ci + (point[1] - cy) / env._maze_unit * cell
        pj = cj + (point[0] - cx) / env._maze_unit * cell
        disc = (rows - pi) ** 2 + (cols - pj) ** 2 <= (radius * cell) ** 2
        image[disc] = colour
    return image


def free_cells(maze_map: np.ndarray) -> list[tuple[int, int]]:
    """The (row, column) cells without a wall, in row-major order."""
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(maze_map == 0), strict=True)]


def distances_to(maze_map: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """Breadth-first-search distance (in cells, 4-connected) of every cell to ``goal``;
    -1 for walls and unreachable cells."""
    dist = np.full(maze_map.shape, -1, dtype=np.int64)
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        i, j = queue.popleft()
        for ni, nj in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if maze_map[ni, nj] == 0 and dist[ni, nj] < 0:
                dist[ni, nj] = dist[i, j] + 1
                queue.append((ni, nj))
    return dist


class ShortestPaths:
    """The next cell on a shortest 4-connected path through a maze (BFS distances cached per
    goal cell)."""

    def __init__(self, maze_map: np.ndarray) -> None:
        self.maze_map = np.asarray(maze_map)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def next_cell(self, cell: tuple[int, int], goal: tuple[int, int]) -> tuple[int, int] | None:
        """The neighbour of ``cell`` nearest ``goal`` (``goal`` itself when no neighbour
        reaches it); None when ``cell`` is the goal's cell or a wall."""
        if cell == goal or self.maze_map[cell] != 0:
            return None
        dist = self._cache.get(goal)
        if dist is None:
            dist = self._cache[goal] = distances_to(self.maze_map, goal)
        i, j = cell
        steps = [(i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)]
        reachable = [c for c in steps if dist[c] >= 0]
        return min(reachable, key=lambda c: dist[c]) if reachable else goal


class WaypointExpert:
    """Heads for the centre of the next cell on a shortest path to the goal's cell (the goal
    itself once in that cell), at unit speed, plus Gaussian noise; actions clipped to [-1, 1].
    """

    def __init__(self, env: Any, noise: float, rng: np.random.Generator) -> None:
        self.env = env
        self.noise = noise
        self.rng = rng
        self.paths = ShortestPaths(env.maze_map)

    def __call__(self, xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        u = self.env
        step = self.paths.next_cell(u.xy_to_ij(xy), u.xy_to_ij(goal_xy))
        target = goal_xy if step is None else np.asarray(u.ij_to_xy(step))
        direction = target - xy
        direction = direction / max(float(np.linalg.norm(direction)), 1e-6)
        action = direction + self.rng.normal(0.0, self.noise, size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def _jitter(env: Any, cell: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A cell's centre plus OGBench's uniform position noise (a quarter cell each way)."""
    x, y = env.ij_to_xy(cell)
    half = env._noise * env._maze_unit / 4
    return np.array([x, y]) + rng.uniform(-half, half, size=2)


def _place(env: Any, start_xy: np.ndarray, goal_xy: np.ndarray, seed: int) -> np.ndarray:
    """Reset ``env`` with the ball at ``start_xy`` and the goal at ``goal_xy`` (our draws
    replace OGBench's, which use the global numpy random state); returns the position."""
    env.reset(seed=seed, options={"task_info": {"init_ij": (1, 1), "goal_ij": (1, 1)}})
    env.set_goal(goal_xy=goal_xy)
    env.set_xy(start_xy)
    return np.asarray(env.get_ob(), dtype=np.float64)


def _observation(xy: np.ndarray, goal_xy: np.ndarray) -> dict[str, np.ndarray]:
    position = xy.astype(np.float32)
    return {
        "observation": position,
        "achieved_goal": position,
        "desired_goal": goal_xy.astype(np.float32),
    }


def _reached(xy: np.ndarray, goal_xy: np.ndarray) -> bool:
    return bool(np.linalg.norm(xy - goal_xy) <= SUCCESS_RADIUS)


# --------------------------------------------------------------------------- collection
BACKENDS = ("ogbench", "gymnasium-robotics")


@dataclass(frozen=True)
class PointMazeOptions(CollectOptions):
    """Options of ``gcrl collect pointmaze``."""

    noise: float = field(default=0.2, metadata=argument("expert noise (std of the actions)"))
    maze: str = field(default="medium", metadata=argument("maze layout", choices=MAZES))
    backend: str = field(
        default="ogbench",
        metadata=argument(
            "ogbench (default; evaluated by --env pointmaze-MAZE) or gymnasium-robotics "
            "(PointMaze_<Maze>-v3: 4-d observations with velocity, success within 0.45)",
            choices=BACKENDS,
        ),
    )
    max_steps: int = field(default=1000, metadata=argument("steps per episode (OGBench: 1000)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("max_steps")


class PointMazeRecipe:
    """``gcrl collect pointmaze``: navigate-style play in an OGBench point maze."""

    name = "pointmaze"
    summary = "OGBench point maze, navigate-style play of a noisy waypoint expert"
    options = PointMazeOptions
    task = Task("reach", "move the ball to the goal")

    def attrs(self, options: PointMazeOptions) -> dict[str, Any]:
        if options.backend == "gymnasium-robotics":
            return {
                "env": _robotics_id(options.maze),
                "expert": "PD control to the next cell on a BFS path + Gaussian action noise; "
                "the environment resets the goal when reached (continuing_task)",
                "noise": float(options.noise),
                "seed": int(options.seed),
                "max_steps": int(options.max_steps),
                "success_radius": ROBOTICS_SUCCESS_RADIUS,
                "reward": "gymnasium-robotics sparse reward: 1 when s' is within "
                "success_radius of the goal",
            }
        return {
            "env": f"ogbench pointmaze-{options.maze}",
            "expert": "waypoint (BFS over cells) + Gaussian action noise, navigate-style goals",
            "noise": float(options.noise),
            "seed": int(options.seed),
            "max_steps": int(options.max_steps),
            "success_radius": SUCCESS_RADIUS,
            "reward": "1 when s' is within success_radius of the pursued goal, else 0",
        }

    def collect(self, options: PointMazeOptions) -> Iterator[Trajectories]:
        if options.backend == "gymnasium-robotics":
            yield from _collect_robotics(options, self.task)
            return
        env = make_ogbench_env(options.maze)
        try:
            rng = np.random.default_rng(options.seed)
            expert = WaypointExpert(env, options.noise, rng)
            cells = free_cells(env.maze_map)
            for _ in range(options.episodes):
                yield self._episode(env, expert, cells, options.max_steps, rng)
        finally:
            env.close()

    def _episode(
        self,
        env: Any,
        expert: WaypointExpert,
        cells: list[tuple[int, int]],
        max_steps: int,
        rng: np.random.Generator,
    ) -> Trajectories:
        def draw_goal(avoid: tuple[int, int]) -> np.ndarray:
            choices = [c for c in cells if c != avoid]
            return _jitter(env, choices[rng.integers(len(choices))], rng)

        start = cells[rng.integers(len(cells))]
        goal = draw_goal(start)
        xy = _place(env, _jitter(env, start, rng), goal, int(rng.integers(2**31)))
        observations = [_observation(xy, goal)]
        actions, rewards, successes = [], [], []
        for _ in range(max_steps):
            action = expert(xy, goal)
            env.step(action)
            xy = np.asarray(env.get_ob(), dtype=np.float64)
            reached = _reached(xy, goal)
            if reached:  # navigate: a new goal once this one is reached
                goal = draw_goal(env.xy_to_ij(xy))
                env.set_goal(goal_xy=goal)
            observations.append(_observation(xy, goal))
            actions.append(action)
            rewards.append(float(reached))
            successes.append(reached)
        return episode_to_trajectories(
            observations,
            actions,
            rewards,
            terminated=False,
            infos={"success": successes},
            task_id=0,
            tasks=(self.task,),
        )


RECIPE = PointMazeRecipe()
RECIPES = {RECIPE.name: RECIPE}


# --------------------------------------------------------------------------- gymnasium-robotics
def _robotics_id(maze: str) -> str:
    if maze == "arena":
        raise ConfigError("--maze arena: gymnasium-robotics has no arena; use open instead")
    return f"PointMaze_{maze.capitalize()}-v3"


def _collect_robotics(options: PointMazeOptions, task: Task) -> Iterator[Trajectories]:
    """Navigate-style play in gymnasium-robotics' PointMaze: the environment itself draws a
    new goal when the ball reaches the current one (``continuing_task``, ``reset_target``)."""
    import gymnasium as gym
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    env = gym.make(_robotics_id(options.maze), continuing_task=True, reset_target=True)
    maze: Any = getattr(env.unwrapped, "maze")  # noqa: B009
    paths = ShortestPaths(maze.maze_map)
    rng = np.random.default_rng(options.seed)

    def cell_of(xy: np.ndarray) -> tuple[int, int]:
        i, j = (int(v) for v in maze.cell_xy_to_rowcol(xy))
        return i, j

    def expert(obs: dict[str, np.ndarray]) -> np.ndarray:
        position, velocity = obs["observation"][:2], obs["observation"][2:4]
        step = paths.next_cell(cell_of(position), cell_of(obs["desired_goal"]))
        target = obs["desired_goal"] if step is None else maze.cell_rowcol_to_xy(np.array(step))
        action = 10.0 * (target - position) - 1.0 * velocity + rng.normal(0, options.noise, 2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    try:
        for _ in range(options.episodes):
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            observations, actions, rewards, successes = [obs], [], [], []
            for _ in range(options.max_steps):
                action = expert(obs)
                obs, reward, _, _, info = env.step(action)
                observations.append(obs)
                actions.append(action)
                rewards.append(float(reward))
                successes.append(bool(info["success"]))
            yield episode_to_trajectories(
                observations, actions, rewards, False, {"success": successes}, 0, (task,)
            )
    finally:
        env.close()


# --------------------------------------------------------------------------- evaluation
class PointMazeEnv:
    """One OGBench point maze, reset to one of the maze's five evaluation tasks."""

    def __init__(self, maze: str, render: bool = False) -> None:
        self.env = make_ogbench_env(maze)
        self._goal = np.zeros(2)
        self._steps = 0

    def reset(self, task: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        start = _jitter(self.env, self.env.task_infos[task]["init_ij"], rng)
        self._goal = self.task_goal(task, rng)
        xy = _place(self.env, start, self._goal, seed)
        self._steps = 0
        return _observation(xy, self._goal)

    def task_goal(self, task: int, rng: np.random.Generator) -> np.ndarray:
        """The goal of an episode of ``task``: its goal cell with OGBench's position noise."""
        return _jitter(self.env, self.env.task_infos[task]["goal_ij"], rng)

    def step(self, action: np.ndarray) -> Step:
        self.env.step(np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0))
        self._steps += 1
        xy = np.asarray(self.env.get_ob(), dtype=np.float64)
        success = _reached(xy, self._goal)
        done = success or self._steps >= EVAL_STEPS
        return Step(_observation(xy, self._goal), float(success), done, success)

    def render(self) -> np.ndarray:
        """A top-down drawing of the maze, the goal (green) and the ball (red), 16 pixels per
        cell. Drawn with numpy: MuJoCo's renderer needs an OpenGL platform that headless
        machines often lack."""
        return draw_maze(self.env, np.asarray(self.env.get_ob()), self._goal)

    def close(self) -> None:
        self.env.close()


@dataclass(frozen=True)
class PointMazeSuite:
    """OGBench's five evaluation tasks of one maze (``task1`` .. ``task5``)."""

    maze: str

    @property
    def name(self) -> str:
        return f"pointmaze-{self.maze}"

    @property
    def tasks(self) -> tuple[Task, ...]:
        count = 1 if self.maze == "arena" else 5
        return tuple(Task(f"task{i + 1}", "move the ball to the goal") for i in range(count))

    @property
    def max_steps(self) -> int:
        return EVAL_STEPS

    def make_env(self, render: bool = False) -> PointMazeEnv:
        return PointMazeEnv(self.maze, render=render)


SUITES = {f"pointmaze-{maze}": (lambda maze=maze: PointMazeSuite(maze)) for maze in MAZES}
