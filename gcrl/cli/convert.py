"""``gcrl convert SOURCE [SOURCE ...] OUT.hdf5``: any supported format to the native one.

Several sources are stacked into one multi-task file, one ``--task`` (and optional
``--task-text``) per source, task indices in the order given. Native sources are streamed
chunk by chunk (whole episodes); the output appears only once complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gcrl.datasets.loading import detect_format, format_names
from gcrl.datasets.native_format import COMPRESSION_HELP, COMPRESSIONS, NativeWriter
from gcrl.datasets.sources import Source
from gcrl.datasets.trajectories import Task
from gcrl.errors import DataError
from gcrl.io import refuse_output_among_inputs


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


def parse_tasks(options: argparse.Namespace) -> list[Task | None]:
    """One task (or None) per source from ``--task``/``--task-text``."""
    sources, names, texts = options.sources, options.task, options.task_text
    if not names:
        if texts:
            raise DataError("--task-text: given without --task")
        return [None] * len(sources)
    if len(names) != len(sources):
        raise DataError(f"--task: given {len(names)} times for {len(sources)} sources")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"--task: {repeated[0]!r} names two sources; give each source its own task (to "
            "merge files of one task, convert them to one file per task first)"
        )
    if texts and len(texts) != len(names):
        raise DataError(f"--task-text: given {len(texts)} times for {len(names)} --task")
    return [Task(n, t) for n, t in zip(names, texts or [""] * len(names), strict=True)]


def run(options: argparse.Namespace) -> int:
    """Convert ``options.sources`` into ``options.output``; prints what was written."""
    tasks = parse_tasks(options)
    output = Path(options.output)
    refuse_output_among_inputs(options.sources, output)
    formats = [options.format or detect_format(source) for source in options.sources]
    attrs = {"source": ", ".join(map(str, options.sources)), "source_format": ", ".join(formats)}
    loader_options = {}
    if options.max_episode_steps is not None:
        loader_options["max_episode_steps"] = options.max_episode_steps
    with NativeWriter(
        output, overwrite=options.force, compression=options.compression, attrs=attrs
    ) as writer:
        pairs = list(zip(options.sources, formats, tasks, strict=True))
        for path, format, task in tqdm(pairs, desc="sources", disable=len(pairs) == 1 or None):
            options_for = loader_options if format == "d4rl" else {}
            with Source(path, format, **options_for) as source:
                for _, chunk in source.chunks():
                    writer.append(chunk, task)
        rows = writer.num_transitions
    print(f"wrote {output}: {rows:,} transitions from {len(pairs)} source(s)")
    return 0
