"""Any supported format to the native one, several sources stacked as tasks of one file.

>>> import tempfile, pathlib
>>> from gcrl.datasets import Task, load, save
>>> from gcrl.datasets.trajectories import Trajectories
>>> import numpy as np
>>> part = Trajectories(observations=np.zeros((3, 2)), actions=np.zeros((3, 1)),
...     rewards=np.zeros(3), terminals=[0, 0, 1], timeouts=[0, 0, 0],
...     next_observations=np.zeros((3, 2)), episode_starts=[0])
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> paths = [save(part, root / name) for name in ("a.hdf5", "b.hdf5")]
>>> done = convert(paths, root / "both.hdf5",
...                tasks=[Task("a"), Task("b")], progress=False)
>>> done.rows, [t.name for t in load(root / "both.hdf5").tasks]
(6, ['a', 'b'])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from gcrl.datasets.loading import detect_format
from gcrl.datasets.native_format import NativeWriter
from gcrl.datasets.sources import Source
from gcrl.datasets.trajectories import Task
from gcrl.errors import ConfigError, option
from gcrl.io import refuse_output_among_inputs

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ConvertSummary:
    """What :func:`convert` wrote: ``rows`` transitions from ``sources`` (their formats)."""

    output: Path
    rows: int
    sources: tuple[str, ...]
    formats: tuple[str, ...]

    def line(self) -> str:
        """One line for the command line."""
        return f"wrote {self.output}: {self.rows:,} transitions from {len(self.sources)} source(s)"


def convert(
    sources: Sequence[PathLike],
    output: PathLike,
    *,
    tasks: Sequence[Task] | None = None,
    format: str | None = None,
    max_episode_steps: int | None = None,
    compression: str = "lzf",
    overwrite: bool = False,
    progress: bool | None = None,
) -> ConvertSummary:
    """Write ``sources`` (any supported format; ``format`` for all, default detected) into
    the native file ``output``, streamed chunk by chunk (whole episodes).

    With ``tasks`` (one per source, names distinct) source i becomes task i of a multi-task
    file; without, the sources' own task tables are kept. ``max_episode_steps`` cuts D4RL
    files without timeouts into episodes. The output appears only once complete (written to
    a temporary file, renamed into place); sources are only read. Returns the summary; bad
    input is a one-line :class:`gcrl.errors.GcrlError` and writes nothing.
    """
    names = [str(s) for s in sources]
    if not names:
        raise ConfigError(f"{option('sources')}: give at least one source")
    labels: list[Task | None] = [None] * len(names)
    if tasks is not None:
        if len(tasks) != len(names):
            raise ConfigError(
                f"{option('task')}: given {len(tasks)} times for {len(names)} sources"
            )
        given = [t.name for t in tasks]
        repeated = sorted({n for n in given if given.count(n) > 1})
        if repeated:
            raise ConfigError(
                f"{option('task')}: {repeated[0]!r} names two sources; give each source its "
                "own task (to merge files of one task, convert them to one file per task first)"
            )
        labels = list(tasks)
    output = Path(output)
    refuse_output_among_inputs(names, output)
    formats = [format or detect_format(source) for source in names]
    attrs = {"source": ", ".join(names), "source_format": ", ".join(formats)}
    d4rl_options = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    with NativeWriter(output, overwrite=overwrite, compression=compression, attrs=attrs) as writer:
        triples = list(zip(names, formats, labels, strict=True))
        # A bar over sources: by default only for several, and only on a terminal (None).
        hidden = (True if len(triples) == 1 else None) if progress is None else not progress
        for path, fmt, task in tqdm(triples, desc="sources", disable=hidden):
            with Source(path, fmt, **(d4rl_options if fmt == "d4rl" else {})) as source:
                for _, chunk in source.chunks():
                    writer.append(chunk, task)
        rows = writer.num_transitions
    return ConvertSummary(output, rows, tuple(names), tuple(formats))
