"""``gcrl evaluate CHECKPOINT --env SUITE``: success per task in the real environment.

Prints the per-task table with the mean, median and worst task; optionally writes the report
as JSON, a PNG bar chart of per-task success, a PNG of the run's learning curves (from the
CSV log beside the checkpoint) and GIF videos of the first episodes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gcrl.envs import SUITES
from gcrl.errors import DatasetNotFoundError


def add_parser(commands: Any) -> None:
    """Register the ``evaluate`` subcommand."""
    parser = commands.add_parser(
        "evaluate",
        help="roll a trained policy out in a real environment; success per task",
        description="Roll a trained policy out in a real environment and report success "
        "per task (mean, median and worst task).",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a gcrl fit checkpoint")
    parser.add_argument("--env", required=True, choices=sorted(SUITES), help="evaluation suite")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task")
    parser.add_argument("--tasks", nargs="+", metavar="NAME", help="only these tasks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes")
    parser.add_argument("--num-envs", type=int, default=8, help="environments stepped in lockstep")
    parser.add_argument("--json", metavar="OUT.json", help="write the report as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="bar chart of per-task success")
    parser.add_argument(
        "--curves",
        metavar="OUT.png",
        help="learning curves from the run's metrics.csv (found beside the checkpoint)",
    )
    parser.add_argument("--video", metavar="DIR", help="GIFs of the first episode of each task")
    parser.set_defaults(handler=run)


def run(options: argparse.Namespace) -> int:
    """Evaluate ``options.checkpoint`` on ``options.env``; prints the table."""
    from gcrl.envs import suite
    from gcrl.evaluation import evaluate, write_videos
    from gcrl.policy import load_policy

    _check_outputs(options)  # before the rollout, not after it
    _limit_threads()
    policy = load_policy(options.checkpoint)
    chosen = suite(options.env)
    report = evaluate(
        policy.on_tasks,
        chosen,
        episodes=options.episodes,
        tasks=options.tasks,
        seed=options.seed,
        num_envs=options.num_envs,
        record=1 if options.video else 0,
        seen_tasks=_seen_tasks(policy.task_names, [t.name for t in chosen.tasks]),
        progress=True,
    )
    print(report.table())
    if options.json:
        report.write_json(options.json)
        print(f"wrote {options.json}")
    if options.plot:
        from gcrl.plots import plot_task_success

        plot_task_success(report, options.plot)
        print(f"wrote {options.plot}")
    if options.curves:
        from gcrl.plots import find_metrics, plot_learning_curves

        plot_learning_curves(find_metrics(options.checkpoint), options.curves)
        print(f"wrote {options.curves}")
    if options.video:
        paths = write_videos(report, options.video)
        print(f"wrote {len(paths)} videos to {options.video}")
    return 0


def _check_outputs(options: argparse.Namespace) -> None:
    """Raise unless every requested output can be written: its directory exists."""
    for flag in ("json", "plot", "curves", "video"):
        value = getattr(options, flag)
        if value is None:
            continue
        parent = Path(value).resolve().parent
        if not parent.is_dir():
            raise DatasetNotFoundError(f"--{flag} {value}: directory {parent} does not exist")


def _seen_tasks(trained: list[str], suite: list[str]) -> list[str] | None:
    """The policy's training tasks when they name some of the suite's tasks (then the report
    tells seen from unseen ones); None when they are unrelated (a goal-conditioned policy
    trained on one "reach" task evaluated on a maze's task1..task5)."""
    return trained if set(trained) & set(suite) else None


def _limit_threads() -> None:
    """Small per-step batches: one torch thread is faster than several on a shared CPU."""
    import torch

    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)
