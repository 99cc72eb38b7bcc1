"""Any dataset opened for streaming whole episodes: native files lazily, others loaded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from gcrl.datasets.loading import check_format_applies, detect_format, load
from gcrl.datasets.native_format import NativeReader
from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.errors import MissingKeyError, reading
from gcrl.io import raise_if_interrupted, resolve_source

#: Rows per chunk when streaming (whole episodes; about 10-30 MB per chunk for typical rows).
CHUNK_ROWS = 1 << 16


class Source:
    """One dataset opened for streaming: native files lazily, other formats loaded whole.

    Use as a context manager. ``num_transitions`` and ``tasks`` are known on opening;
    :meth:`chunks` may be iterated several times (a two-pass command reads the file twice).
    """

    def __init__(self, source: str | os.PathLike[str], format: str | None = None, **options: Any):
        source = resolve_source(source)
        self.path = source
        self.format = format or detect_format(source)
        self._reader: NativeReader | None = None
        self._data: Trajectories | None = None
        if self.format == "gcrl":
            if format is not None:
                check_format_applies(source, format)
            with reading(source):
                self._reader = NativeReader(source)
            self.num_transitions = self._reader.num_transitions
            self.tasks: tuple[Task, ...] = self._reader.tasks
        else:
            self._data = load(source, format=self.format, **options)
            self.num_transitions = self._data.num_transitions
            self.tasks = self._data.tasks

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.close()

    def chunks(self, max_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, Trajectories]]:
        """``(first_row, chunk)`` pairs of whole episodes, about ``max_rows`` rows each."""
        parts = (
            self._reader.iter_chunks(max_rows)
            if self._reader is not None
            else self._data.chunks(max_rows)  # type: ignore[union-attr]
        )
        first_row = 0
        while True:
            with reading(self.path):  # only the read: a failed write is not the input's fault
                part = next(parts, None)
            if part is None:
                return
            raise_if_interrupted()  # a signal whose exception a C extension swallowed
            yield first_row, part
            first_row += len(part)

    @property
    def image_observations(self) -> bool:
        """Whether the observations are one column of uint8 camera images (rows of three
        dimensions)."""
        if self._reader is not None:
            shape, dtype = self._reader.layout().get("observations", ((), np.dtype(np.float32)))
            return len(shape) == 3 and dtype == np.uint8
        assert self._data is not None
        observations = self._data.observations
        return (
            isinstance(observations, np.ndarray)
            and observations.ndim == 4
            and observations.dtype == np.uint8
        )

    def goal_states(self, key: str) -> np.ndarray:
        """The ``key`` observation of every state (``s_0`` of each row, plus each episode's
        final ``s'``): ``[N + E, ...]``, in no particular order."""
        name, next_name = f"observations/{key}", f"next_observations/{key}"
        if self._reader is not None:
            with reading(self.path):
                starts = self._reader.episode_starts
                current = self._reader.column(name)
                following = self._reader.column(next_name)
        else:
            assert self._data is not None
            columns = self._data.columns()
            if name not in columns:
                raise MissingKeyError(f"{self.path}: missing key {name!r}")
            starts = self._data.episode_starts
            current, following = columns[name], columns[next_name]
        last_rows = np.append(starts[1:], self.num_transitions) - 1
        return np.concatenate([current, following[last_rows]])
