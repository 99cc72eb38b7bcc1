"""``gcrl convert SOURCE [SOURCE ...] OUT.hdf5``: any supported format to the native one.

Argument parsing and printing around :func:`gcrl.datasets.convert`: several sources
are stacked into one multi-task file, one ``--task`` (and optional ``--task-text``) per
source, task indices in the order given.
"""

from __future__ import annotations

import argparse
from typing import Any

from gcrl.datasets.conversion import convert
from gcrl.datasets.loading import format_names
from gcrl.datasets.native_format import COMPRESSION_HELP, COMPRESSIONS
from gcrl.datasets.trajectories import Task
from gcrl.errors import ConfigError


def add_parser(commands: Any) -> None:
    """Register the ``convert`` subcommand."""
    parser = commands.add_parser(
        "convert",
        help="convert datasets to gcrl's native HDF5 format",
        description="Convert one or more datasets to gcrl's native HDF5 format.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="input datasets")
    parser.add_argument("output", metavar="OUT.hdf5", help="output file (native format)")
    parser.add_argument(
        "--format", choices=format_names(), help="format of every source (default: detect)"
    )
    parser.add_argument(
        "--task", action="append", default=[], metavar="NAME", help="task of each source, in order"
    )
    parser.add_argument(
        "--task-text",
        action="append",
        default=[],
        metavar="TEXT",
        help="natural-language instruction of each --task, in order",
    )
    parser.add_argument(
        "--max-episode-steps",
        type=int,
        help="D4RL files without timeouts: cut episodes after this many steps",
    )
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="lzf",
        help=COMPRESSION_HELP,
    )
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    parser.set_defaults(handler=run)


def parse_tasks(options: argparse.Namespace) -> list[Task] | None:
    """One task per source from ``--task`` / ``--task-text`` (None when no ``--task``)."""
    names, texts = options.task, options.task_text
    if not names:
        if texts:
            raise ConfigError("--task-text: given without --task")
        return None
    if texts and len(texts) != len(names):
        raise ConfigError(f"--task-text: given {len(texts)} times for {len(names)} --task")
    return [Task(n, t) for n, t in zip(names, texts or [""] * len(names), strict=True)]


def run(options: argparse.Namespace) -> int:
    """Convert ``options.sources`` into ``options.output`` (:func:`gcrl.datasets.convert`);
    prints what was written."""
    summary = convert(
        options.sources,
        options.output,
        tasks=parse_tasks(options),
        format=options.format,
        max_episode_steps=options.max_episode_steps,
        compression=options.compression,
        overwrite=options.force,
    )
    print(summary.line())
    return 0
