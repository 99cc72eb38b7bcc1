"""File plumbing every reader and writer shares: bundled datasets, atomic outputs, and
interrupts that stop a long command cleanly.

Standard library only, so that any layer of gcrl may use it.

>>> str(resolve_source("data.hdf5"))
'data.hdf5'
>>> "pointmaze-medium-navigate" in bundled_datasets()
True
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import signal
import stat
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gcrl.errors import DataError, DatasetNotFoundError, OutputExistsError, UnwritableOutputError

#: ``bundled:NAME`` names a dataset shipped inside the package (``gcrl/data/NAME.hdf5``).
BUNDLED_PREFIX = "bundled:"
_BUNDLED_DIR = Path(__file__).resolve().parent / "data"


def bundled_datasets() -> list[str]:
    """The names of the datasets shipped inside the package, sorted."""
    return sorted(p.stem for p in _BUNDLED_DIR.glob("*.hdf5"))


def resolve_source(source: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """``source`` itself, or for ``bundled:NAME`` the path of that bundled dataset.

    Raises :class:`DataError` for a path that can only hang or mislead a reader: a FIFO, a
    device or a socket, or a symlink loop (which would otherwise read as "no such file")."""
    text = str(source)
    if not text.startswith(BUNDLED_PREFIX):
        try:
            mode = os.stat(text).st_mode
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise DataError(f"{source}: a symlink loop") from None
            return source  # missing, or a dataset id: the loaders say which
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise DataError(f"{source}: not a regular file or directory (a FIFO or device?)")
        return source
    name = text[len(BUNDLED_PREFIX) :]
    path = _BUNDLED_DIR / f"{name}.hdf5"
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{source}: no such bundled dataset; bundled: {', '.join(bundled_datasets())}"
        )
    return path


class Interrupted(KeyboardInterrupt):
    """A long command was stopped by SIGINT or SIGTERM; :attr:`exit_code` is 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM: the shell's convention."""
        return 128 + self.signum


_received: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    # The first signal raises here; should a C extension swallow that exception (h5py's
    # destructors do), the writers raise it again at their next chunk (raise_if_interrupted).
    # Later signals only count, so that they cannot break the cleanup of the first.
    _received.append(signum)
    if len(_received) == 1:
        raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise :class:`Interrupted`, so temporary outputs are removed
    on the way out. Only in the main thread (elsewhere, a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    unraisable = sys.unraisablehook

    def quiet(report: Any) -> None:
        # A swallowed Interrupted is raised again at the next chunk; do not print it.
        if not isinstance(report.exc_value, Interrupted):
            unraisable(report)

    _received.clear()
    sys.unraisablehook = quiet
    for s in previous:
        signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = unraisable
        _received.clear()


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` when a signal arrived whose exception was swallowed."""
    if _received:
        raise Interrupted(_received[0])


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete the temporary files and directories of ``target`` (``.<name>.<pid>-<hex>.tmp``)
    whose writing process no longer runs (killed before it could clean up); returns them."""
    removed = []
    for candidate in target.parent.glob(f".{target.name}.*.tmp"):
        match = _TEMPORARY.match(candidate.name)
        if match is None or match["name"] != target.name:
            continue
        try:
            os.kill(int(match["pid"]), 0)
            continue  # its writer still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def refuse_existing_output(path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Raise :class:`OutputExistsError` when ``path`` exists and ``overwrite`` is false, or
    when ``path`` is anything but a regular file (never replaced). Long commands call it
    before their work as well as through :func:`atomic_path` after it."""
    target = Path(path)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise OutputExistsError(f"{target}: exists and is not a regular file; not replacing it")
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"{target}: output exists; pass --force (overwrite=True) to replace"
        )


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` on success, delete it on
    error or interrupt.

    The temporary file (``.<name>.<pid>-<random>.tmp``, created empty) has the permissions an
    ordinary ``open`` gives under the user's umask, so the output does too; stale ones of
    ``path`` left by killed writers are removed first. Without ``overwrite`` the output is
    published with an exclusive link, so of two writers racing for one path exactly one
    succeeds. Raises :class:`OutputExistsError` when ``path`` exists and ``overwrite`` is false,
    and when ``path`` is anything but a regular file (``overwrite`` never replaces a symlink,
    a directory or a device).
    """
    target = Path(path)
    refuse_existing_output(target, overwrite=overwrite)
    if not target.parent.is_dir():
        raise DatasetNotFoundError(f"{target}: output directory {target.parent} does not exist")
    remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        open(tmp, "xb").close()  # exclusive: never another writer's file
    except OSError as err:  # a read-only directory or file system, a full disk
        raise UnwritableOutputError(
            f"{target}: cannot write in {target.parent} ({err.strerror or err})"
        ) from None
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, target)
        else:
            _publish_exclusively(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _publish_exclusively(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` unless ``target`` exists by now (another writer was first)."""
    try:
        os.link(tmp, target)  # fails if target exists: atomic
    except FileExistsError:
        raise OutputExistsError(
            f"{target}: output appeared while writing (another writer?); pass --force to replace"
        ) from None
    except OSError:  # no hard links on this file system: check, then rename
        if target.exists():
            raise OutputExistsError(f"{target}: output appeared while writing") from None
        os.replace(tmp, target)


def refuse_output_among_inputs(
    sources: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> None:
    """Raise when ``output`` is one of ``sources`` (writing would destroy an input)."""
    target = Path(output).resolve()
    for source in sources:
        if Path(source).exists() and Path(source).resolve() == target:
            raise DataError(f"{output}: the output is also an input")
