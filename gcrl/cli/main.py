"""``gcrl`` command dispatch: argument parsing, and one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gcrl import __version__
from gcrl.errors import GcrlError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from gcrl.cli import convert, info, relabel

    parser = argparse.ArgumentParser(
        prog="gcrl",
        description="Goal-conditioned imitation and offline RL on trajectory datasets.",
    )
    parser.add_argument("--version", action="version", version=f"gcrl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info.add_parser(commands)
    convert.add_parser(commands)
    relabel.add_parser(commands)
    return parser


def main(args: Sequence[str] | None = None) -> int:
    """Run ``gcrl`` with ``args`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        options = parser.parse_args(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return int(options.handler(options))
    except GcrlError as err:
        print(f"gcrl {options.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"gcrl {options.command}: interrupted, no output written", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
