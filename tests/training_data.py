"""Small datasets with known structure for the training tests (made, never downloaded), and
a quiet ``fit``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from gcrl.datasets import Task, Trajectories, save
from gcrl.datasets.trajectories import episode_starts_from_ends
from gcrl.learner import AgentModule


def goal_reaching(
    path: Path, episodes: int = 40, length: int = 25, seed: int = 0, noise: float = 0.05
) -> Path:
    """A 2-D point that steps towards a per-episode goal: ``a = clip(goal - pos, -1, 1) / 2 +
    noise``, ``pos' = pos + 0.2 a``. Dict observations: ``observation`` = position (2,),
    ``achieved_goal`` = position, ``desired_goal`` = the goal; rewards 1 within 0.1 of it."""
    rng = np.random.default_rng(seed)
    pos_rows, next_rows, act_rows, goal_rows = [], [], [], []
    for _ in range(episodes):
        pos = rng.uniform(-1, 1, size=2)
        goal = rng.uniform(-1, 1, size=2)
        for _ in range(length):
            action = np.clip(goal - pos, -1, 1) / 2 + rng.normal(scale=noise, size=2)
            nxt = pos + 0.2 * action
            pos_rows.append(pos)
            next_rows.append(nxt)
            act_rows.append(action)
            goal_rows.append(goal)
            pos = nxt
    n = episodes * length
    ends = np.zeros(n, dtype=bool)
    ends[length - 1 :: length] = True
    obs, nxt, goals = np.array(pos_rows), np.array(next_rows), np.array(goal_rows)
    data = Trajectories(
        observations={"observation": obs, "achieved_goal": obs, "desired_goal": goals},
        next_observations={"observation": nxt, "achieved_goal": nxt, "desired_goal": goals},
        actions=np.array(act_rows, dtype=np.float32),
        rewards=(np.linalg.norm(nxt - goals, axis=1) < 0.1).astype(np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=ends,
        episode_starts=episode_starts_from_ends(ends),
    )
    return save(data, path, overwrite=True)


def render_dot(positions: np.ndarray, size: int) -> np.ndarray:
    """Images ``[N, size, size, 3]`` uint8 of points in [-1, 1]^2: a bright 3 x 3 square at
    each position on a dark background, red channel only."""
    images = np.zeros((len(positions), size, size, 3), dtype=np.uint8)
    cells = np.clip(((positions + 1) / 2 * (size - 1)).round().astype(int), 1, size - 2)
    for i, (x, y) in enumerate(cells):
        images[i, y - 1 : y + 2, x - 1 : x + 2, 0] = 255
    return images


def image_goal_reaching(
    path: Path, episodes: int = 40, length: int = 25, seed: int = 0, size: int = 16
) -> Path:
    """:func:`goal_reaching` seen through a camera: array observations are ``size`` x ``size``
    x 3 uint8 images of the point (:func:`render_dot`), goals are whole observations
    (OGBench's visual layout). Returns the path."""
    source = goal_reaching(path.with_suffix(".state.hdf5"), episodes, length, seed, noise=0.02)
    from gcrl.datasets import load

    state = load(source)
    assert isinstance(state.observations, dict) and isinstance(state.next_observations, dict)
    data = Trajectories(
        observations=render_dot(state.observations["observation"], size),
        next_observations=render_dot(state.next_observations["observation"], size),
        actions=state.actions,
        rewards=np.zeros(state.num_transitions, dtype=np.float32),
        terminals=state.terminals,
        timeouts=state.timeouts,
        episode_starts=state.episode_starts,
    )
    source.unlink()
    return save(data, path, overwrite=True)


def two_text_tasks(path: Path, rows_per_task: int = 600, seed: int = 0) -> Path:
    """Two tasks over the same observations whose actions are opposite: "move left" takes
    -1, "move right" +1 (single-step episodes)."""
    rng = np.random.default_rng(seed)
    n = 2 * rows_per_task
    obs = rng.uniform(-1, 1, size=(n, 3))
    task_ids = np.repeat([0, 1], rows_per_task)
    actions = np.where(task_ids == 0, -1.0, 1.0)[:, None] + rng.normal(scale=0.05, size=(n, 1))
    data = Trajectories(
        observations=obs,
        next_observations=obs + 0.01,
        actions=actions.astype(np.float32),
        rewards=np.zeros(n),
        terminals=np.zeros(n, dtype=bool),
        timeouts=np.ones(n, dtype=bool),
        episode_starts=np.arange(n),
        task_ids=task_ids,
        tasks=(Task("left", "move left"), Task("right", "move right")),
    )
    return save(data, path, overwrite=True)


def chain_mdp(
    path: Path, states: int = 6, episodes: int = 300, seed: int = 0, right: float = 0.5
) -> Path:
    """A chain of ``states`` cells; action 1 moves right, 0 left (clipped at 0). Reaching the
    last cell pays 1 and terminates. Episodes of up to 12 steps of a random policy that moves
    right with probability ``right``. Observations
    are one-hot cells; actions are int64."""
    rng = np.random.default_rng(seed)
    eye = np.eye(states)
    obs, nxt, acts, rews, terms, touts = [], [], [], [], [], []
    for _ in range(episodes):
        cell = int(rng.integers(0, states - 1))
        for step in range(12):
            action = int(rng.random() < right)
            new = min(cell + 1, states - 1) if action == 1 else max(cell - 1, 0)
            done = new == states - 1
            obs.append(eye[cell])
            nxt.append(eye[new])
            acts.append(action)
            rews.append(float(done))
            terms.append(done)
            touts.append(not done and step == 11)
            cell = new
            if done:
                break
    ends = np.array(terms) | np.array(touts)
    data = Trajectories(
        observations=np.array(obs),
        next_observations=np.array(nxt),
        actions=np.array(acts, dtype=np.int64),
        rewards=np.array(rews),
        terminals=np.array(terms),
        timeouts=np.array(touts),
        episode_starts=episode_starts_from_ends(ends),
    )
    return save(data, path, overwrite=True)


def multitask_goal_reaching(path: Path, tasks: int = 3) -> Path:
    """``tasks`` goal-reaching datasets stacked as tasks ``task0..`` with instructions."""
    from gcrl.datasets import concatenate, load

    parts = []
    for task in range(tasks):
        part_path = goal_reaching(path.with_name(f"{path.stem}-{task}.hdf5"), 6, 8, seed=task)
        parts.append(load(part_path))
    labels = [Task(f"task{t}", f"reach goal number {t}") for t in range(tasks)]
    return save(concatenate(parts, labels), path, overwrite=True)


def fit(model: Any, data: Any, steps: int, **trainer: object) -> L.Trainer:
    """Train ``steps`` steps quietly (an agent through :class:`gcrl.learner.AgentModule`);
    returns the trainer."""
    torch.manual_seed(0)
    options = {
        "max_steps": steps,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **trainer,
    }
    t = L.Trainer(**options)  # type: ignore[arg-type]
    t.fit(model if isinstance(model, L.LightningModule) else AgentModule(model), data)
    return t


def goal_chain(path: Path, cells: int = 7, episodes: int = 200, seed: int = 0) -> Path:
    """Discrete goal reaching on a chain: a random walk (action 1 right, 0 left, clipped at
    the ends) of 10 steps. Dict observations: ``observation`` and ``achieved_goal`` are the
    one-hot cell, ``desired_goal`` a random cell, one-hot; actions are int64."""
    rng = np.random.default_rng(seed)
    eye = np.eye(cells, dtype=np.float32)
    cell_rows, next_rows, act_rows, goal_rows = [], [], [], []
    for _ in range(episodes):
        cell, goal = int(rng.integers(cells)), int(rng.integers(cells))
        for _ in range(10):
            action = int(rng.integers(2))
            nxt = min(max(cell + (1 if action else -1), 0), cells - 1)
            cell_rows.append(cell)
            next_rows.append(nxt)
            act_rows.append(action)
            goal_rows.append(goal)
            cell = nxt
    n = len(cell_rows)
    ends = np.zeros(n, dtype=bool)
    ends[9::10] = True
    obs, nxt, goals = eye[cell_rows], eye[next_rows], eye[goal_rows]
    data = Trajectories(
        observations={"observation": obs, "achieved_goal": obs, "desired_goal": goals},
        next_observations={"observation": nxt, "achieved_goal": nxt, "desired_goal": goals},
        actions=np.array(act_rows, dtype=np.int64),
        rewards=(np.array(next_rows) == np.array(goal_rows)).astype(np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=ends,
        episode_starts=episode_starts_from_ends(ends),
    )
    return save(data, path, overwrite=True)
