"""``gcrl collect RECIPE OUT``: record a noisy scripted expert in a real environment.

Argument parsing and printing around :func:`gcrl.envs.collection.collect`: one sub-command
per recipe, one option per field of its options record. Writes the native format
(``OUT.hdf5``), OGBench's npz layout (``OUT.npz``), or with ``--minari-id`` a Minari dataset
under the directory ``OUT`` (used as ``MINARI_DATASETS_PATH``).
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import fields
from typing import Any

from gcrl.datasets.native_format import COMPRESSION_HELP, COMPRESSIONS
from gcrl.envs import RECIPES, recipe
from gcrl.envs.base import CollectOptions
from gcrl.envs.collection import collect


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
        sub.add_argument(
            "output",
            metavar="OUT",
            help="output file: native HDF5, or OGBench's npz layout when it ends in .npz",
        )
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
        sub.add_argument(
            "--workers",
            type=int,
            default=1,
            metavar="N",
            help="play chunks of episodes in N processes (chunks of 10 unless --chunk-episodes)",
        )
        sub.add_argument(
            "--chunk-episodes",
            type=int,
            metavar="K",
            help="record in chunks of K episodes under OUT.parts/, each from its own seed; "
            "an interrupted run resumes from the finished chunks",
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
    """Record ``options.episodes`` episodes of ``options.recipe``
    (:func:`gcrl.envs.collection.collect`); prints what was written."""
    summary = collect(
        options.recipe,
        options.output,
        options_from(recipe(options.recipe).options, options),
        minari_id=options.minari_id,
        compression=options.compression,
        overwrite=options.force,
        workers=options.workers,
        chunk_episodes=options.chunk_episodes,
    )
    print(summary.line())
    return 0
