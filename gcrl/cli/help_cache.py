"""``gcrl fit --help`` (and ``validate`` / ``test``) without building it each time: building
LightningCLI's help imports torch and Lightning, 5 to 10 s on two cores, for text that changes
only when the installed code does.

Two sources, tried in order:

- the user's cache, ``$XDG_CACHE_HOME/gcrl/help/`` (default ``~/.cache``), keyed by the
  command, the terminal width, the Python, gcrl, Lightning, jsonargparse and torch versions,
  and the size and modification time of every module of gcrl: anything changing builds it
  again (a cache that cannot be written is skipped silently);
- the text shipped in ``gcrl/cli/help/``, built for a terminal of :data:`SHIPPED_COLUMNS`
  columns, used on terminals at least that wide when the installed gcrl, Lightning and
  jsonargparse are the versions it was built with (its first line records them), so that
  even the first ``gcrl fit --help`` is immediate. ``python -m gcrl.cli.help_cache`` rebuilds
  it, and a test fails when it differs from what LightningCLI writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from gcrl import __version__

#: The commands whose help is cached and shipped.
COMMANDS = ("fit", "validate", "test")
#: Where the shipped help is, and for how wide a terminal it was built.
SHIPPED = Path(__file__).resolve().with_name("help")
SHIPPED_COLUMNS = 100
_HELP_FLAGS = ("-h", "--help")
_VERSIONED = ("lightning", "jsonargparse", "torch")
_SHIPPED_HEADER = "# built with "


def is_plain_help(args: Sequence[str]) -> bool:
    """``gcrl fit --help`` itself: a subcommand and a help flag, nothing else (a config file
    changes the defaults the help shows, so those requests are not cached)."""
    return len(args) == 2 and args[0] in COMMANDS and args[1] in _HELP_FLAGS


def _columns() -> int:
    return shutil.get_terminal_size().columns


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cache_path(args: Sequence[str]) -> Path:
    """Where the user's cache keeps the help text of ``args`` (the file may not exist)."""
    package = Path(__file__).resolve().parents[1]
    modules = sorted(
        (str(p.relative_to(package)), p.stat().st_mtime_ns, p.stat().st_size)
        for p in package.rglob("*.py")
    )
    key = json.dumps([list(args), _columns(), sys.version, __version__, _versions(), modules])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "gcrl" / "help" / f"{args[0]}-{digest}.txt"


def shipped_versions() -> dict[str, str | None]:
    """The versions the shipped help must have been built with to be used: gcrl's, and the
    installed Lightning's and jsonargparse's."""
    versions = _versions()
    return {
        "gcrl": __version__,
        "lightning": versions["lightning"],
        "jsonargparse": versions["jsonargparse"],
    }


def shipped_path(command: str) -> Path:
    """The help text of ``command`` shipped with gcrl (the file may not exist)."""
    return SHIPPED / f"{command}.txt"


def shipped_help(command: str) -> str | None:
    """The shipped help text of ``command``, or None when it is missing or was built with
    other versions of the packages that write it."""
    try:
        header, text = shipped_path(command).read_text().split("\n", 1)
        built_with = json.loads(header.removeprefix(_SHIPPED_HEADER))
    except (OSError, ValueError):
        return None
    return text if built_with == shipped_versions() else None


def build_help(commands: Sequence[str] = COMMANDS) -> dict[str, str]:
    """``gcrl COMMAND --help`` of each of ``commands`` as LightningCLI writes it for a
    terminal of :data:`SHIPPED_COLUMNS` columns, built in one fresh process; returns the texts
    by command."""
    code = (
        "import contextlib, io, json, sys; sys.argv[0] = 'gcrl'\n"
        "from gcrl.cli.main import run_training\n"
        "texts = {}\n"
        f"for command in {list(commands)!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        assert run_training([command, '--help']) == 0\n"
        "    texts[command] = out.getvalue()\n"
        "print(json.dumps(texts))\n"
    )
    env = {**os.environ, "COLUMNS": str(SHIPPED_COLUMNS)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    texts: dict[str, str] = json.loads(done.stdout.splitlines()[-1])
    return texts


def write_shipped() -> list[Path]:
    """Rebuild the shipped help texts; returns their paths."""
    SHIPPED.mkdir(exist_ok=True)
    header = _SHIPPED_HEADER + json.dumps(shipped_versions(), sort_keys=True)
    paths = []
    for command, text in build_help().items():
        path = shipped_path(command)
        path.write_text(f"{header}\n{text}")
        paths.append(path)
    return paths


def cached_help(args: Sequence[str], build: Callable[[], int]) -> int:
    """Print the help of ``args`` from the user's cache or the shipped text, or else run
    ``build`` (which prints it and returns the exit code) and cache what it printed; returns
    the exit code."""
    path = cache_path(args)
    try:
        text: str | None = path.read_text()
    except OSError:
        text = shipped_help(args[0]) if _columns() >= SHIPPED_COLUMNS else None
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


if __name__ == "__main__":
    for written in write_shipped():
        print(f"wrote {written}")
