"""``gcrl evaluate CHECKPOINT --env ENV``: success per task in the real environment.

``ENV`` is a gcrl suite (``pointmaze-medium``, ...), any gymnasium id (``CartPole-v1``,
``PointMaze_UMaze-v3``, ``module:EnvId``) or ``minari:DATASET_ID`` (the environment a local
Minari dataset recorded); see :mod:`gcrl.envs.gymnasium_suite`. Argument parsing and output
files around :func:`gcrl.evaluation.evaluate_checkpoint`. Prints the per-task table with
the mean, median and worst task; optionally writes the report as JSON, a PNG bar chart of
per-task success, a PNG of the run's learning curves (from the CSV log beside the checkpoint)
and GIF videos of the first episodes.
"""

from __future__ import annotations

import argparse
import math
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
    parser.add_argument(
        "--env",
        required=True,
        metavar="ENV",
        help=f"a gcrl suite ({', '.join(sorted(SUITES))}), a gymnasium id (CartPole-v1, "
        "PointMaze_UMaze-v3; module:EnvId imports module first) or minari:DATASET_ID (the "
        "environment of a local Minari dataset)",
    )
    parser.add_argument(
        "--goal",
        type=_numbers,
        metavar="X,Y,...",
        help="fixed goal of a gymnasium environment whose observations have no desired_goal",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        metavar="N",
        help="step limit of a gymnasium environment's episodes (default: its time limit, "
        "else 1000)",
    )
    parser.add_argument(
        "--policy",
        metavar="NAME",
        help="another policy the checkpoint holds, by name (Distral's distilled 'prior'); "
        "default: the algorithm's own",
    )
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
    """Evaluate ``options.checkpoint`` on ``options.env``
    (:func:`gcrl.evaluation.evaluate_checkpoint`); prints the table and writes the outputs."""
    from gcrl.evaluation import evaluate_checkpoint, write_videos

    _check_outputs(options)  # before the rollout, not after it
    _limit_threads()
    report = evaluate_checkpoint(
        options.checkpoint,
        options.env,
        episodes=options.episodes,
        tasks=options.tasks,
        seed=options.seed,
        num_envs=options.num_envs,
        goal=options.goal,
        max_steps=options.max_steps,
        policy=options.policy,
        record=1 if options.video else 0,
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


def _numbers(text: str) -> tuple[float, ...]:
    """``--goal X,Y,...`` as floats; raises argparse's error for anything else."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers (X,Y,...), got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _check_outputs(options: argparse.Namespace) -> None:
    """Raise unless every requested output can be written: its directory exists."""
    for flag in ("json", "plot", "curves", "video"):
        value = getattr(options, flag)
        if value is None:
            continue
        parent = Path(value).resolve().parent
        if not parent.is_dir():
            raise DatasetNotFoundError(f"--{flag} {value}: directory {parent} does not exist")


def _limit_threads() -> None:
    """Small per-step batches: one torch thread is faster than several on a shared CPU."""
    import torch

    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)
