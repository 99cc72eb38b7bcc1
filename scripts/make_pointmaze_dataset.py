"""Make a small Minari dataset from the real gymnasium-robotics PointMaze environment.

A noisy scripted expert plays in the maze: it follows the shortest path through the maze's
cells (breadth-first search) towards the episode's goal, steering to the centre of the next
cell with a PD controller, plus Gaussian action noise. Observations are gymnasium-robotics'
Dict (``observation``, ``achieved_goal``, ``desired_goal``); ``infos/success`` is kept.

    python scripts/make_pointmaze_dataset.py data/minari --episodes 40 --seed 0

writes the Minari dataset ``pointmaze/umaze-noisy-v0`` under ``data/minari`` (the directory
is used as ``MINARI_DATASETS_PATH``) and prints its path.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from pathlib import Path

import numpy as np


def shortest_path_next_cell(
    maze_map: list[list[int]], start: tuple[int, int], goal: tuple[int, int]
) -> tuple[int, int]:
    """The cell after ``start`` on a shortest 4-connected path to ``goal`` (``goal`` if adjacent
    or equal, ``start`` if unreachable)."""
    if start == goal:
        return goal
    previous: dict[tuple[int, int], tuple[int, int]] = {start: start}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        r, c = cell
        for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if nxt not in previous and maze_map[nxt[0]][nxt[1]] != 1:
                previous[nxt] = cell
                queue.append(nxt)
    if goal not in previous:
        return start
    cell = goal
    while previous[cell] != start:
        cell = previous[cell]
    return cell


def expert_action(
    env, obs: dict[str, np.ndarray], rng: np.random.Generator, noise: float
) -> np.ndarray:
    """PD control towards the next cell centre on the shortest path, plus Gaussian noise."""
    maze = env.unwrapped.maze
    position, velocity = obs["observation"][:2], obs["observation"][2:4]
    cell = tuple(int(v) for v in maze.cell_xy_to_rowcol(position))
    goal_cell = tuple(int(v) for v in maze.cell_xy_to_rowcol(obs["desired_goal"]))
    nxt = shortest_path_next_cell(maze.maze_map, cell, goal_cell)
    target = obs["desired_goal"] if nxt == goal_cell else maze.cell_rowcol_to_xy(np.array(nxt))
    action = 10.0 * (target - position) - 1.0 * velocity
    action = action + rng.normal(0.0, noise, size=2)
    return np.clip(action, -1.0, 1.0).astype(np.float32)


def collect(env_id: str, episodes: int, max_steps: int, noise: float, seed: int) -> list:
    """Roll the noisy expert out; returns Minari ``EpisodeBuffer``s."""
    import gymnasium as gym
    import gymnasium_robotics
    from minari.data_collector.episode_buffer import EpisodeBuffer

    gym.register_envs(gymnasium_robotics)
    env = gym.make(env_id, continuing_task=False, max_episode_steps=max_steps)
    rng = np.random.default_rng(seed)
    buffers = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        observations = {k: [v] for k, v in obs.items()}
        infos: dict[str, list] = {"success": [bool(info.get("success", False))]}
        actions, rewards, terminations, truncations = [], [], [], []
        done = False
        while not done:
            action = expert_action(env, obs, rng, noise)
            obs, reward, terminated, truncated, info = env.step(action)
            for k, v in obs.items():
                observations[k].append(v)
            infos["success"].append(bool(info["success"]))
            actions.append(action)
            rewards.append(float(reward))
            terminations.append(bool(terminated))
            truncations.append(bool(truncated))
            done = terminated or truncated
        buffers.append(
            EpisodeBuffer(
                id=episode,
                observations={k: np.stack(v) for k, v in observations.items()},
                actions=np.stack(actions),
                rewards=rewards,
                terminations=terminations,
                truncations=truncations,
                infos={k: np.array(v) for k, v in infos.items()},
            )
        )
    return buffers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path, help="directory used as MINARI_DATASETS_PATH")
    parser.add_argument("--env", default="PointMaze_UMaze-v3")
    parser.add_argument("--dataset-id", default="pointmaze/umaze-noisy-v0")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--noise", type=float, default=0.3, help="action noise std")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing dataset")
    args = parser.parse_args(argv)

    args.root.mkdir(parents=True, exist_ok=True)
    os.environ["MINARI_DATASETS_PATH"] = str(args.root.resolve())
    import warnings

    import minari

    warnings.filterwarnings("ignore", module="minari")
    target = args.root / args.dataset_id
    if target.exists():
        if not args.force:
            print(f"{target}: exists; pass --force to replace", file=sys.stderr)
            return 2
        minari.delete_dataset(args.dataset_id)
    buffers = collect(args.env, args.episodes, args.max_steps, args.noise, args.seed)
    import gymnasium as gym

    env = gym.make(args.env, continuing_task=False, max_episode_steps=args.max_steps)
    minari.create_dataset_from_buffers(
        args.dataset_id,
        buffers,
        env=env,
        algorithm_name=f"noisy BFS waypoint expert (noise {args.noise}, seed {args.seed})",
        author="gcrl",
        author_email="gcrl@example.invalid",
        code_permalink="scripts/make_pointmaze_dataset.py",
        description="Noisy scripted expert play in PointMaze, made by gcrl's quick start.",
    )
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
