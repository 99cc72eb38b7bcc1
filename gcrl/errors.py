"""Exception classes raised by gcrl.

Every error message is one line that names the file and the key (or option) at
fault. The command line turns any :class:`GcrlError` into that line on stderr
and exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_COMMAND_LINE = ContextVar("gcrl_command_line_names", default=False)


def option(name: str) -> str:
    """How an error message names the parameter ``name``: as is from Python (``goal_key``),
    as its option (``--goal-key``) inside :func:`command_line_names`.

    >>> option("goal_key")
    'goal_key'
    >>> with command_line_names():
    ...     option("goal_key")
    '--goal-key'
    """
    return "--" + name.replace("_", "-") if _COMMAND_LINE.get() else name


@contextmanager
def command_line_names() -> Iterator[None]:
    """Within this block, :func:`option` names parameters as command-line options."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


class GcrlError(Exception):
    """Base class of every error gcrl raises on purpose."""

    def with_source(self, source: object) -> GcrlError:
        """Return an error of the same class whose message is prefixed by ``source``."""
        message = str(self)
        prefix = f"{source}: "
        if message.startswith(prefix):
            return self
        return type(self)(prefix + message)


class DatasetNotFoundError(GcrlError, FileNotFoundError):
    """The file, directory or Minari dataset id does not exist."""


class UnknownFormatError(GcrlError, ValueError):
    """The source is not in a format gcrl can read, or the format name is unknown."""


class DataError(GcrlError, ValueError):
    """The source was read but its content is invalid."""


class MissingKeyError(DataError):
    """A required key (HDF5 dataset, npz array, dict entry) is absent."""


class LengthMismatchError(DataError):
    """Arrays that must have one row per transition have different lengths."""


class EmptyDatasetError(DataError):
    """The dataset holds no transition."""


class EmptyEpisodeError(DataError):
    """An episode holds no transition."""


class NonFiniteError(DataError):
    """Observations or actions contain NaN or infinity."""


class EpisodeBoundaryError(DataError):
    """Episode boundaries disagree with the terminal and timeout flags."""


class OutputExistsError(GcrlError, FileExistsError):
    """The output path exists and overwriting was not asked for."""


class UnwritableOutputError(GcrlError, OSError):
    """The output's directory cannot be written (no permission, read-only file system)."""


class ConfigError(GcrlError, ValueError):
    """An option or parameter has an invalid value (names the option)."""


class MissingGoalsError(ConfigError):
    """A goal-conditioned policy was given no goals (nor observations holding them)."""


class RewardFunctionError(GcrlError, ValueError):
    """A user reward function cannot be imported or returned rewards of the wrong shape."""


class RenderError(GcrlError, RuntimeError):
    """A frame was asked of an environment that cannot render (no offscreen OpenGL)."""


class UnreadableError(DataError):
    """The file cannot be read: no permission, truncated, or corrupt."""


@contextmanager
def reading(path: str | os.PathLike[str]) -> Iterator[None]:
    """Within this block, a failure of the storage layer (h5py, zip, the operating system)
    while reading ``path`` becomes a one-line :class:`UnreadableError` naming the file; gcrl's
    own errors pass through unchanged.

    HDF5 reports corruption as ``OSError`` or ``RuntimeError`` depending on where the damage
    lies, and a truncated zip as ``zipfile.BadZipFile`` (a plain ``Exception``).
    """
    import zipfile

    try:
        yield
    except GcrlError:
        raise
    except PermissionError:
        raise UnreadableError(f"{path}: permission denied") from None
    except (OSError, RuntimeError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnreadableError(f"{path}: corrupt or unreadable ({reason})") from None
