"""``gcrl`` command dispatch: argument parsing, and one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gcrl import __version__
from gcrl.errors import GcrlError, command_line_names
from gcrl.io import Interrupted, interruptible

EXIT_USAGE = 2
#: Subcommands handed to LightningCLI (``gcrl fit --config CONFIG.yaml``).
TRAINING_COMMANDS = ("fit", "validate", "test")
TRAINING_SUMMARIES = {
    "fit": "train an algorithm from a YAML config (gcrl fit --config CONFIG.yaml)",
    "validate": "validation losses of a checkpoint (--config CONFIG.yaml --ckpt_path CKPT)",
    "test": "test losses of a checkpoint (--config CONFIG.yaml --ckpt_path CKPT)",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from gcrl.cli import collect, convert, evaluate, info, relabel

    parser = argparse.ArgumentParser(
        prog="gcrl",
        description="Goal-conditioned imitation and offline RL on trajectory datasets.",
    )
    parser.add_argument("--version", action="version", version=f"gcrl {__version__}")
    parser.epilog = "Each command's options: gcrl COMMAND --help."
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info.add_parser(commands)
    convert.add_parser(commands)
    relabel.add_parser(commands)
    collect.add_parser(commands)
    evaluate.add_parser(commands)
    # Listed for the overview only: main() hands these to LightningCLI before parsing.
    for name, summary in TRAINING_SUMMARIES.items():
        commands.add_parser(name, help=summary)
    return parser


def main(args: Sequence[str] | None = None) -> int:
    """Run ``gcrl`` with ``args`` (default: ``sys.argv[1:]``); returns the exit code."""
    args = list(sys.argv[1:] if args is None else args)
    if args and args[0] in TRAINING_COMMANDS:
        return _train(args)
    parser = build_parser()
    try:
        options = parser.parse_args(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        with command_line_names(), interruptible():
            return int(options.handler(options))
    except GcrlError as err:
        print(f"gcrl {options.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        code = err.exit_code if isinstance(err, Interrupted) else 130
        print(f"gcrl {options.command}: interrupted ({err}), no output written", file=sys.stderr)
        return code


def _train(args: list[str]) -> int:
    """``fit``/``validate``/``test``: LightningCLI parses the rest (imports torch on demand)."""
    from gcrl.cli import help_cache

    if help_cache.is_plain_help(args):
        return help_cache.cached_help(args, lambda: run_training(args))
    if sys.stderr.isatty():  # the imports take seconds: say so to someone watching
        print(f"gcrl {args[0]}: starting (importing torch and Lightning)", file=sys.stderr)
    return run_training(args)


def run_training(args: list[str]) -> int:
    """Run LightningCLI on ``args``; returns the exit code (2 with one line for errors)."""
    from gcrl.cli import train

    try:
        return train.run(args)
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USAGE
    except GcrlError as err:
        print(f"gcrl {args[0]}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as err:  # jsonargparse wraps errors raised while building classes
        print(f"gcrl {args[0]}: error: {train.innermost_error(str(err))}", file=sys.stderr)
        return EXIT_USAGE


def run() -> None:
    """Console-script entry point. A closed pipe (``gcrl info X | head``) ends it quietly."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again when flushing stdout at exit; point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.exit(code)
