"""Why task sharing does or does not help Q-learning on multi-task PointMaze data.

    python scripts/sharing_diagnosis.py shares DATA --task-sharing high-reward \
        --sharing-percentile 90
    python scripts/sharing_diagnosis.py values CKPT [CKPT ...]

``shares`` draws training batches as ``gcrl fit`` does (uniform rows, then the sharing step of
the data module's options) and prints, per target task, how many rows of a batch are shared
to it, how many of those earn the target task's true reward (computed on s', as the data
stores it in ``infos/task_rewards``), the reward they are given (0 under ``zero-reward``),
and how many come from episodes that reach the target's goal at all. Conservative sharing
is left out: its filter is the critic being trained, and the training log already has its
kept shares (``sharing/<source>-><target>``).

``values`` loads trained IQL-family checkpoints and prints ``V(s, task)`` at each task's
evaluation start (OGBench's start cell centre, no position noise) and at its goal, with the
shortest-path distance between the two in maze cells: under the sparse reward of the data
(1 per step within the goal radius, discount gamma), a value that learned the task is about
``gamma^(steps to the goal) / (1 - gamma)`` at the start, and near ``1 / (1 - gamma)`` at the
goal. Both commands can write their table as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: Batches drawn by ``shares`` (each of ``--batch-size`` rows).
BATCHES = 200


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    shares = commands.add_parser("shares", help="which rows each sharing mode gives each task")
    shares.add_argument("data", type=Path, help="a multi-task native file with infos/task_rewards")
    shares.add_argument(
        "--task-sharing", required=True, choices=("random", "high-reward", "zero-reward")
    )
    shares.add_argument("--task-relabel-ratio", type=float, default=0.5)
    shares.add_argument("--sharing-percentile", type=float)
    shares.add_argument("--sharing-top-k", type=int)
    shares.add_argument("--batch-size", type=int, default=256)
    shares.add_argument("--seed", type=int, default=0)
    values = commands.add_parser("values", help="V at each task's evaluation start and goal")
    values.add_argument("checkpoints", type=Path, nargs="+")
    values.add_argument("--maze", default="medium")
    for command in (shares, values):
        command.add_argument("--json", type=Path, help="also write the table here")
    return parser.parse_args(argv)


def shares(options: argparse.Namespace) -> list[dict[str, Any]]:
    """Per target task: rows shared to it per batch, and the share of those with a positive
    true reward, their mean given reward, and the share from episodes reaching its goal."""
    from gcrl.datasets import load
    from gcrl.relabel.episodes import EpisodeIndex
    from gcrl.relabel.pipeline import Pipeline
    from gcrl.relabel.reward_fns import TASK_REWARDS_KEY
    from gcrl.relabel.sampler import RowSampler
    from gcrl.relabel.sharing import SharingConfig
    from gcrl.relabel.tasks import episode_returns

    data = load(str(options.data))
    config = SharingConfig.build(
        options.task_sharing,
        ratio=options.task_relabel_ratio,
        reward_fn=None,
        top_k=options.sharing_top_k,
        percentile=options.sharing_percentile,
        temperature=None,
        conservative_percentile=50.0,
        conservative_refresh=1000,
    )
    assert config is not None
    # What the rows earn under each task (the stored column the non-zero modes give too).
    true_rewards = np.asarray(data.infos[TASK_REWARDS_KEY], dtype=np.float32)
    reaches = episode_returns(true_rewards, data.episode_starts) > 0  # [E, M]
    episode_of_row = EpisodeIndex.from_starts(data.episode_starts, len(data)).episode_of_row
    rng = np.random.default_rng(options.seed)
    pipeline = Pipeline(RowSampler(data, rng), [config.sharing(data, str(options.data))], rng)
    num_tasks = len(data.tasks)
    counts = np.zeros(num_tasks)
    earning = np.zeros(num_tasks)
    given = np.zeros(num_tasks)
    reaching = np.zeros(num_tasks)
    own = np.zeros(num_tasks)
    for _ in range(BATCHES):
        batch = pipeline.sample(options.batch_size, gather=False)
        rows, targets = np.asarray(batch["rows"]), np.asarray(batch["task_ids"])
        shared = np.asarray(batch["shared"], dtype=bool)
        rewards = np.asarray(batch["rewards"], dtype=np.float64)
        own += np.bincount(targets[~shared], minlength=num_tasks)
        t, r = targets[shared], rows[shared]
        counts += np.bincount(t, minlength=num_tasks)
        earning += np.bincount(t, weights=(true_rewards[r, t] > 0), minlength=num_tasks)
        given += np.bincount(t, weights=rewards[shared], minlength=num_tasks)
        reaching += np.bincount(t, weights=reaches[episode_of_row[r], t], minlength=num_tasks)
    safe = np.maximum(counts, 1)
    return [
        {
            "task": data.tasks[m].name,
            "own_rows_per_batch": own[m] / BATCHES,
            "shared_rows_per_batch": counts[m] / BATCHES,
            "shared_with_true_reward": earning[m] / safe[m],
            "shared_mean_given_reward": given[m] / safe[m],
            "shared_from_episodes_reaching_goal": reaching[m] / safe[m],
        }
        for m in range(num_tasks)
    ]


def values(options: argparse.Namespace) -> list[dict[str, Any]]:
    """Per checkpoint and task: V at the task's evaluation start and at its goal."""
    import torch

    from gcrl.envs.pointmaze import distances_to, make_ogbench_env
    from gcrl.policy import load_agent

    env = make_ogbench_env(options.maze)
    infos = env.task_infos
    maze_map = np.asarray(env.maze_map)
    env.close()
    starts = np.array([info["init_xy"] for info in infos], dtype=np.float32)
    goals = np.array([info["goal_xy"] for info in infos], dtype=np.float32)
    ids = torch.arange(len(infos))
    table = []
    for checkpoint in options.checkpoints:
        agent = load_agent(checkpoint)
        if not hasattr(agent, "state_value"):
            raise SystemExit(f"{checkpoint}: a {type(agent).__name__}, which has no V(s, g)")
        at = {}
        for where, xy in (("start", starts), ("goal", goals)):
            observations = {"observation": xy, "achieved_goal": xy, "desired_goal": goals}
            state = torch.as_tensor(agent.spec.network_state(observations))
            goal = None
            if agent.spec.goal_dim:
                goal = torch.as_tensor(agent.spec.network_goals(goals, len(goals)))
            at[where] = agent.state_value(state, goal, ids).numpy()
        for m, info in enumerate(infos):
            cells = distances_to(maze_map, tuple(info["goal_ij"]))[tuple(info["init_ij"])]
            table.append(
                {
                    "checkpoint": str(checkpoint),
                    "task": info["task_name"],
                    "cells_to_goal": int(cells),
                    "v_start": float(at["start"][m]),
                    "v_goal": float(at["goal"][m]),
                }
            )
    return table


def print_table(rows: list[dict[str, Any]]) -> None:
    """``rows`` as a Markdown table (floats to 3 decimals)."""
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    table = shares(options) if options.command == "shares" else values(options)
    print_table(table)
    if options.json:
        tmp = options.json.with_name(f".{options.json.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table, indent=1) + "\n")
        os.replace(tmp, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
