"""``gcrl relabel SOURCE OUT.hdf5 --strategy S``: offline relabeling into the native format.

Argument parsing and printing around :func:`gcrl.relabel.relabel_file`, which does the work
(streamed chunk by chunk, output written atomically, input only read).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from gcrl.datasets.loading import format_names, root_attributes
from gcrl.datasets.native_format import COMPRESSION_HELP, COMPRESSIONS
from gcrl.datasets.sources import CHUNK_ROWS
from gcrl.relabel.expand import TASK_EXPANSIONS
from gcrl.relabel.goals import goal_expansions
from gcrl.relabel.offline import HINDSIGHT_INSTRUCTION, relabel_file, relabel_strategies
from gcrl.relabel.reward_fns import TASK_REWARDS_KEY
from gcrl.relabel.rewards import GoalReward, recorded_tolerance
from gcrl.relabel.tasks import TaskSelection


def add_parser(commands: Any) -> None:
    """Register the ``relabel`` subcommand."""
    parser = commands.add_parser(
        "relabel",
        help="expand a dataset with hindsight-goal or task relabeled copies",
        description=(
            "Write SOURCE's rows plus relabeled copies to OUT.hdf5 (native format). Goal "
            f"strategies ({', '.join(goal_expansions())}) give every row --k new goals; task "
            f"strategies ({', '.join(TASK_EXPANSIONS)}) share whole episodes with other tasks; "
            "hindsight-instruction adds each episode that accomplished another task (BabyAI "
            "GoTo missions by default) as an episode of that task."
        ),
    )
    parser.add_argument("source", metavar="SOURCE", help="input dataset (any supported format)")
    parser.add_argument("output", metavar="OUT.hdf5", help="output file (native format)")
    parser.add_argument(
        "--strategy",
        required=True,
        metavar="STRATEGY",
        help=f"one of {', '.join(relabel_strategies())}",
    )
    parser.add_argument(
        "--k",
        type=int,
        default=4,
        help="goal strategies: copies per row; random-task, zero-reward and high-reward with "
        "--temperature: tasks per episode (default 4)",
    )
    goal = parser.add_argument_group("goal strategies")
    goal.add_argument("--gamma", type=float, default=0.99, help="geometric: discount (0.99)")
    goal.add_argument(
        "--truncation",
        choices=("renormalise", "clip"),
        default="renormalise",
        help="geometric: offsets past the episode's end are redrawn (renormalise) or put on "
        "its last state (clip)",
    )
    goal.add_argument(
        "--goal-key",
        default="achieved_goal",
        help="observation key of the achieved goal (default achieved_goal)",
    )
    goal.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="success when the achieved goal is within this distance of the goal (default: "
        "the radius the dataset records, success_radius or tolerance, else 0.5)",
    )
    goal.add_argument(
        "--judged-on",
        choices=("next", "current"),
        default="next",
        help="state whose achieved goal decides success: s' (next, default) or s (current)",
    )
    goal.add_argument("--negative-rewards", action="store_true", help="rewards -1/0 instead of 0/1")
    goal.add_argument(
        "--within-goal-segments",
        action="store_true",
        help="draw goals within each pursuit of one stored desired_goal (the episode cut where "
        "it changes), as navigate-style play needs for BC",
    )
    parser.add_argument(
        "--reward-fn",
        metavar="MODULE:NAME",
        help="goal strategies: fn(observations, actions, next_observations) -> rewards [n]; "
        "task strategies: the same returning [n, tasks], or a list (or dict by task name) of "
        "per-task functions. MODULE may be a file path. Default: goal success, or the "
        f"infos/{TASK_REWARDS_KEY} column for tasks",
    )
    parser.add_argument(
        "--hindsight-fn",
        metavar="MODULE:NAME",
        help="hindsight-instruction: the function giving each row's hindsight task "
        "(default: BabyAI GoTo missions, gcrl.envs.babyai:hindsight_instructions)",
    )
    task = parser.add_argument_group("high-reward selection (one rule)")
    task.add_argument("--top-k", type=int, help="share with the K highest-return tasks")
    task.add_argument(
        "--percentile",
        type=float,
        help="share with the tasks under which the episode ranks at or above P (0-100) among "
        "all episodes (Generalized Hindsight's AIR; with --top-k, the K best ranked)",
    )
    task.add_argument(
        "--temperature",
        type=float,
        help="draw --k tasks from HIPI's softmax over returns normalised per task",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--keep-original",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write the source rows (default: yes)",
    )
    parser.add_argument(
        "--format", choices=format_names(), help="format of SOURCE (default: detect)"
    )
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="lzf",
        help=COMPRESSION_HELP,
    )
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    parser.set_defaults(handler=run)


def _reward(options: argparse.Namespace) -> tuple[GoalReward, str]:
    """The goal reward of the options, the tolerance defaulting as :func:`relabel_file`'s, and
    where the tolerance came from."""
    tolerance, origin = options.tolerance, "--tolerance"
    if tolerance is None:
        tolerance, origin = recorded_tolerance(root_attributes(options.source))
    return GoalReward(tolerance, options.judged_on, options.negative_rewards), origin


def run(options: argparse.Namespace) -> int:
    """Relabel ``options.source`` into ``options.output``; prints a summary."""
    reward, tolerance_source = _reward(options)
    summary = relabel_file(
        options.source,
        options.output,
        strategy=options.strategy,
        k=options.k,
        seed=options.seed,
        keep_original=options.keep_original,
        format=options.format,
        goal_key=options.goal_key,
        reward=reward,
        gamma=options.gamma,
        truncation=options.truncation,
        reward_fn=options.reward_fn,
        hindsight_fn=_hindsight_fn(options),
        within_goal_segments=options.within_goal_segments,
        selection=TaskSelection(options.top_k, options.percentile, options.temperature)
        if options.strategy == "high-reward"
        else None,
        compression=options.compression,
        chunk_rows=options.chunk_rows,
        overwrite=options.force,
    )
    summary = dataclasses.replace(summary, tolerance_source=tolerance_source)
    print("\n".join(summary.lines()))
    return 0


def _hindsight_fn(options: argparse.Namespace) -> Any:
    """The ``--hindsight-fn`` given, else (for ``hindsight-instruction``) BabyAI's."""
    if options.hindsight_fn is None and options.strategy == HINDSIGHT_INSTRUCTION:
        from gcrl.envs.babyai import hindsight_instructions

        return hindsight_instructions
    return options.hindsight_fn
