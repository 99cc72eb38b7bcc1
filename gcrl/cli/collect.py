"""``gcrl collect RECIPE OUT``: record a noisy scripted expert in a real environment.

Writes the native format (``OUT.hdf5``), or with ``--minari-id`` a Minari dataset under the
directory ``OUT`` (used as ``MINARI_DATASETS_PATH``). The command line that made the dataset
is stored in its attributes (``collect_command``).
"""

from __future__ import annotations

import argparse
import shlex
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gcrl.datasets.native_format import COMPRESSION_HELP, COMPRESSIONS, NativeWriter
from gcrl.datasets.trajectories import Trajectories
from gcrl.envs import RECIPES, recipe
from gcrl.envs.base import CollectOptions


def add_parser(commands: Any) -> None:
    """Register the ``collect`` subcommand, with one sub-parser per recipe."""
    parser = commands.add_parser(
        "collect",
        help="record a noisy scripted expert in a real environment",
        description="Record a noisy scripted expert in a real environment as a dataset.",
    )
    recipes = parser.add_subparsers(dest="recipe", required=True, metavar="RECIPE")
    for name in RECIPES:
        found = recipe(name)
        sub = recipes.add_parser(name, help=found.summary, description=found.summary)
        sub.add_argument("output", metavar="OUT", help="output file (native HDF5)")
        add_options(sub, found.options)
        sub.add_argument(
            "--minari-id",
            metavar="ID",
            help="write a Minari dataset with this id under the directory OUT instead",
        )
        sub.add_argument(
            "--compression",
            choices=COMPRESSIONS,
            default="lzf",
            help=COMPRESSION_HELP,
        )
        sub.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
        sub.set_defaults(handler=run)


def add_options(parser: argparse.ArgumentParser, options: type[CollectOptions]) -> None:
    """One ``--option`` per field of a recipe's options record, from its metadata."""
    hints = typing.get_type_hints(options)
    for f in fields(options):
        kwargs = dict(f.metadata)
        if kwargs.get("action") == "append":
            kwargs["default"] = None  # argparse appends to a given default
        else:
            # Metadata may name its own ``type`` (a parser of comma lists, say).
            kwargs = {"type": _scalar(hints[f.name])} | kwargs | {"default": f.default}
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def _scalar(hint: Any) -> Any:
    """``int`` for ``int`` and ``int | None``: the type argparse converts values with."""
    if isinstance(hint, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def options_from(options: type[CollectOptions], namespace: argparse.Namespace) -> Any:
    """The recipe's options record from parsed arguments (an option not given keeps its
    field's default)."""
    values = {f.name: getattr(namespace, f.name) for f in fields(options)}
    return options(**{k: v for k, v in values.items() if v is not None})


def run(options: argparse.Namespace) -> int:
    """Record ``options.episodes`` episodes of ``options.recipe``; prints what was written."""
    found = recipe(options.recipe)
    typed = options_from(found.options, options)
    attrs = {
        "source": f"gcrl collect {options.recipe}",
        "collect_command": _command_line(options),
        **found.attrs(typed),
    }
    bar = tqdm(desc=f"collecting {options.recipe}", unit="step", unit_scale=True)
    try:
        parts = reported(found.collect(typed), bar.update)
        if options.minari_id:
            from gcrl.datasets.minari_writer import save_minari

            path = save_minari(
                parts, options.output, options.minari_id, attrs, overwrite=options.force
            )
            bar.close()
            print(f"wrote Minari dataset {options.minari_id} at {path}")
            return 0
        with NativeWriter(
            options.output, overwrite=options.force, compression=options.compression, attrs=attrs
        ) as writer:
            episodes = 0
            for part in parts:
                writer.append(part)
                episodes += part.num_episodes
                bar.set_postfix(episodes=episodes, refresh=False)
        bar.close()
    finally:
        bar.close()
    print(
        f"wrote {writer.num_transitions:,} transitions in {episodes:,} episodes to {options.output}"
    )
    return 0


def reported(
    parts: Iterable[Trajectories], progress: Callable[[int], None]
) -> Iterator[Trajectories]:
    """``parts`` as they come, each one's number of transitions passed to ``progress`` first."""
    for part in parts:
        progress(len(part))
        yield part


def _command_line(options: argparse.Namespace) -> str:
    """The ``gcrl collect`` command that reproduces this dataset (every option spelled out)."""
    words = ["gcrl", "collect", options.recipe, str(Path(options.output))]
    skip = {"recipe", "output", "handler", "command", "force", "compression"}
    for key, value in sorted(vars(options).items()):
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, tuple):  # a comma list option
            value = ",".join(str(v) for v in value)
        values = value if isinstance(value, list) else [value]
        for item in values:
            words += [flag] if item is True else [flag, str(item)]
    return shlex.join(words)
