"""Shared fixtures: small datasets written by the tests themselves, from real components."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gcrl.datasets import Task, Trajectories
from gcrl.datasets.trajectories import episode_starts_from_ends


def make_trajectories(
    lengths: list[int],
    *,
    obs_dim: int = 3,
    goal: bool = False,
    terminal_last: bool = False,
    task: int | None = None,
    seed: int = 0,
) -> Trajectories:
    """Episodes whose observation encodes (episode, step): obs[..., 0] = episode, [..., 1] = step.

    Row t of episode e has next observation (e, t + 1), so alignment errors are visible.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for e, length in enumerate(lengths):
        steps = np.arange(length + 1)
        states = np.zeros((length + 1, obs_dim))
        states[:, 0] = e
        states[:, 1] = steps
        states[:, 2:] = rng.normal(size=(length + 1, obs_dim - 2))
        rows.append(states)
    obs = np.concatenate([s[:-1] for s in rows])
    nxt = np.concatenate([s[1:] for s in rows])
    n = len(obs)
    ends = np.zeros(n, dtype=bool)
    ends[np.cumsum(lengths) - 1] = True
    observations: Any = obs
    next_observations: Any = nxt
    if goal:
        goals = np.repeat(rng.normal(size=(len(lengths), 2)), lengths, axis=0)
        observations = {"observation": obs, "achieved_goal": obs[:, :2], "desired_goal": goals}
        next_observations = {"observation": nxt, "achieved_goal": nxt[:, :2], "desired_goal": goals}
    return Trajectories(
        observations=observations,
        actions=rng.normal(size=(n, 2)).astype(np.float32),
        rewards=rng.normal(size=n),
        terminals=ends if terminal_last else np.zeros(n, dtype=bool),
        timeouts=np.zeros(n, dtype=bool) if terminal_last else ends,
        next_observations=next_observations,
        episode_starts=episode_starts_from_ends(ends),
        task_ids=None if task is None else np.full(n, 0),
        tasks=() if task is None else (Task(f"task{task}", f"do task {task}"),),
        infos={"qpos": rng.normal(size=(n, 2)), "success": rng.random(n) < 0.1},
    )


@pytest.fixture
def trajectories_factory() -> Callable[..., Trajectories]:
    return make_trajectories


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MINARI_DATASETS_PATH for one test."""
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def create_pointmaze_minari(
    dataset_id: str, episodes: int, *, seed: int = 0, max_steps: int = 30
) -> Any:
    """A Minari dataset from the real gymnasium-robotics PointMaze env, random actions.

    Episodes are cut at random lengths (some by the time limit, some earlier with no flag) so
    their lengths differ and misalignment shows up as drift.
    """
    import gymnasium as gym
    import gymnasium_robotics
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    gym.register_envs(gymnasium_robotics)
    env = gym.make("PointMaze_UMaze-v3", continuing_task=False, max_episode_steps=max_steps)
    rng = np.random.default_rng(seed)
    buffers = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        observations = {k: [v] for k, v in obs.items()}
        successes = [info.get("success", False)]
        actions, rewards, terminations, truncations = [], [], [], []
        cut = int(rng.integers(1, max_steps + 5))
        for step in range(max_steps):
            action = rng.uniform(-1, 1, size=2).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            for k, v in obs.items():
                observations[k].append(v)
            successes.append(info["success"])
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            if terminated or truncated or step + 1 == cut:
                break
        buffers.append(
            EpisodeBuffer(
                id=episode,
                observations={k: np.stack(v) for k, v in observations.items()},
                actions=np.stack(actions),
                rewards=rewards,
                terminations=terminations,
                truncations=truncations,
                infos={"success": np.array(successes)},
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, env=env, algorithm_name="random"
        )


@pytest.fixture(scope="session")
def pointmaze_minari(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(MINARI_DATASETS_PATH, dataset id) of a 25-episode PointMaze dataset, made once."""
    root = tmp_path_factory.mktemp("minari-session")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        create_pointmaze_minari("test/pointmaze-random-v0", 25)
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return root, "test/pointmaze-random-v0"
