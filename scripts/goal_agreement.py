"""How well hindsight goals label the recorded actions of navigate-style PointMaze play.

    python scripts/goal_agreement.py [SOURCE] [--rows 4000]

For sampled rows, the cosine between the recorded action and the noise-free waypoint expert's
direction towards a goal (1: the action heads for it), for the stored ``desired_goal``, for
HER ``future`` goals (split into those within the current pursuit of one stored goal and those
after the expert switched goals) and for ``geometric`` goals. The table of docs/relabel.md.
"""

from __future__ import annotations

import argparse

import numpy as np

from gcrl.datasets import load
from gcrl.envs.pointmaze import ShortestPaths, make_ogbench_env
from gcrl.relabel import GoalMixture, GoalSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", nargs="?", default="bundled:pointmaze-medium-navigate")
    parser.add_argument("--maze", default="medium")
    parser.add_argument("--rows", type=int, default=4000)
    args = parser.parse_args()
    data = load(args.source)
    env = make_ogbench_env(args.maze)
    paths = ShortestPaths(env.maze_map)

    def agreement(xy: np.ndarray, goals: np.ndarray, unit: np.ndarray) -> np.ndarray:
        out = np.empty(len(xy))
        for i, (p, g, u) in enumerate(zip(xy, goals, unit, strict=True)):
            step = paths.next_cell(env.xy_to_ij(p), env.xy_to_ij(g))
            target = g if step is None else np.asarray(env.ij_to_xy(step))
            d = target - p
            out[i] = d @ u / max(float(np.linalg.norm(d)), 1e-6)
        return out

    obs = data.observations
    assert isinstance(obs, dict) and isinstance(data.next_observations, dict)
    stored, achieved = obs["desired_goal"], data.next_observations["achieved_goal"]
    change = np.r_[True, np.any(stored[1:] != stored[:-1], axis=1)]
    change[data.episode_starts] = True
    pursuit = np.cumsum(change) - 1
    pursuit_end = np.r_[np.flatnonzero(change)[1:], len(stored)] - 1
    episode_end = np.repeat(np.r_[data.episode_starts[1:], len(stored)] - 1, data.episode_lengths)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(stored), args.rows)
    rows = rows[rows < episode_end[rows]]
    future = rng.integers(rows, episode_end[rows] + 1)  # goal: the state after row `future`
    within = future <= pursuit_end[pursuit[rows]]
    actions = data.actions[rows]
    unit = actions / np.maximum(np.linalg.norm(actions, axis=1, keepdims=True), 1e-6)
    xy = obs["achieved_goal"][rows]
    her = agreement(xy, achieved[future], unit)
    lengths = np.diff(np.r_[np.flatnonzero(change), len(stored)])
    print(f"{len(rows)} rows; a pursuit lasts {lengths.mean():.0f} steps on average")
    print(f"stored desired_goal            {agreement(xy, stored[rows], unit).mean():.2f}")
    print(f"future (whole episode)         {her.mean():.2f}")
    print(f"  within the pursuit ({within.mean():.0%})      {her[within].mean():.2f}")
    print(f"  after a goal switch ({1 - within.mean():.0%})    {her[~within].mean():.2f}")
    for gamma in (0.99, 0.9):
        sampler = GoalSampler(data, value_goals=GoalMixture.only("geometric", gamma=gamma), seed=1)
        goals = sampler.sample(len(rows), rows=rows)["value_goals"]
        print(f"geometric gamma={gamma:<4}           {agreement(xy, goals, unit).mean():.2f}")


if __name__ == "__main__":
    main()
