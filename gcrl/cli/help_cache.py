"""``gcrl fit --help`` (and ``validate`` / ``test``) from a cache: building LightningCLI's
help imports torch and Lightning, 5 to 10 s on two cores, for text that changes only when the
installed code does.

The text is stored under ``$XDG_CACHE_HOME/gcrl/help/`` (default ``~/.cache``), keyed by the
command, the terminal width, the Python, gcrl, Lightning, jsonargparse and torch versions,
and the size and modification time of every module of gcrl; anything else changing builds
it again. A cache that cannot be written is skipped silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from gcrl import __version__

_HELP_FLAGS = ("-h", "--help")
_VERSIONED = ("lightning", "jsonargparse", "torch")


def is_plain_help(args: Sequence[str]) -> bool:
    """``gcrl fit --help`` itself: a subcommand and a help flag, nothing else (a config file
    changes the defaults the help shows, so those requests are not cached)."""
    return len(args) == 2 and args[1] in _HELP_FLAGS


def cache_path(args: Sequence[str]) -> Path:
    """Where the help text of ``args`` is cached (the file may not exist)."""
    package = Path(__file__).resolve().parents[1]
    modules = sorted(
        (str(p.relative_to(package)), p.stat().st_mtime_ns, p.stat().st_size)
        for p in package.rglob("*.py")
    )
    versions: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    key = json.dumps(
        [
            list(args),
            shutil.get_terminal_size().columns,
            sys.version,
            __version__,
            versions,
            modules,
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "gcrl" / "help" / f"{args[0]}-{digest}.txt"


def cached_help(args: Sequence[str], build: Callable[[], int]) -> int:
    """Print the help of ``args`` from the cache, or run ``build`` (which prints it and
    returns the exit code) and store what it printed; returns the exit code."""
    path = cache_path(args)
    try:
        text = path.read_text()
    except OSError:
        text = None
    if text is not None:
        sys.stdout.write(text)
        return 0
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = build()
    text = captured.getvalue()
    sys.stdout.write(text)
    if code == 0 and text:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
    return code
