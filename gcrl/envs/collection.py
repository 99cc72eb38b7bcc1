"""Recording a recipe's noisy scripted expert into a dataset, from Python or ``gcrl collect``.

:func:`collect` plays a recipe of :data:`gcrl.envs.RECIPES` and writes what it records: the
native format (written to a temporary file and renamed into place when complete), for an
output named ``*.npz`` OGBench's compact npz layout (:func:`gcrl.datasets.write_ogbench`), or,
with ``minari_id``, a Minari dataset. Either way the dataset's attributes hold the recipe's
provenance and the ``gcrl collect`` command that makes it again (``collect_command``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gcrl.datasets.native_format import NativeReader, NativeWriter
from gcrl.datasets.trajectories import Trajectories, concatenate
from gcrl.envs import recipe
from gcrl.envs.base import CollectOptions
from gcrl.errors import ConfigError, OutputExistsError, option
from gcrl.io import raise_if_interrupted, refuse_existing_output


@dataclass(frozen=True)
class CollectSummary:
    """What :func:`collect` wrote: ``transitions`` in ``episodes`` episodes to ``output`` (a
    file, or the Minari dataset ``minari_id`` under that directory)."""

    output: Path
    transitions: int
    episodes: int
    minari_id: str | None = None

    def line(self) -> str:
        """One line for the command line."""
        if self.minari_id:
            return f"wrote Minari dataset {self.minari_id} at {self.output}"
        return (
            f"wrote {self.transitions:,} transitions in {self.episodes:,} "
            f"episode{'s' * (self.episodes != 1)} to {self.output}"
        )


def collect(
    name: str,
    output: str | os.PathLike[str],
    options: CollectOptions | None = None,
    *,
    minari_id: str | None = None,
    compression: str = "lzf",
    overwrite: bool = False,
    progress: bool | None = None,
    workers: int = 1,
    chunk_episodes: int | None = None,
    **values: Any,
) -> CollectSummary:
    """Record recipe ``name``'s expert into ``output``: its options record ``options``, or
    one built from ``values`` (``episodes=20, seed=0``; the ``gcrl collect`` options without
    dashes). ``progress``: a bar of recorded steps (default: only on a terminal).

    ``chunk_episodes`` (or ``workers`` > 1, which chunks by :data:`CHUNK_EPISODES`) records in
    chunks of that many episodes, each played from its own seed (drawn from the options' seed
    and the chunk's index, so the data depends on the chunk size, never on ``workers``) in
    one of ``workers`` processes and written to ``OUT.parts/``; the chunks are joined into
    ``output`` once all exist, then removed. An interrupted run keeps the finished chunks, and
    the same command resumes from them.

    Returns the summary; a bad option is a one-line :class:`gcrl.errors.ConfigError` before
    anything is played, and an interrupted or failed recording leaves no output.
    """
    if workers < 1:
        raise ConfigError(f"{option('workers')}: must be at least 1, got {workers}")
    if chunk_episodes is not None and chunk_episodes < 1:
        raise ConfigError(f"{option('chunk_episodes')}: must be at least 1, got {chunk_episodes}")
    if chunk_episodes is None and workers > 1:
        chunk_episodes = CHUNK_EPISODES
    found = recipe(name)
    if options is not None and values:
        raise ConfigError(f"collect {name}: give an options record or values, not both")
    known = {f.name for f in fields(found.options)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"collect {name}: unknown option {unknown[0]!r}; choose from {', '.join(sorted(known))}"
        )
    typed = options if options is not None else found.options(**values)
    if not isinstance(typed, found.options):
        raise ConfigError(
            f"collect {name}: options are {type(typed).__name__}, expected {found.options.__name__}"
        )
    command = collect_command(name, output, typed, minari_id, chunk_episodes)
    attrs = {"source": f"gcrl collect {name}", "collect_command": command, **found.attrs(typed)}
    if chunk_episodes is not None:
        if getattr(typed, "episodes_per_task", None) is not None:
            raise ConfigError(
                f"{option('chunk_episodes')}: chunks split --episodes; {name} was given "
                f"{option('episodes_per_task')}"
            )
        if minari_id:
            raise ConfigError(f"{option('chunk_episodes')}: not with {option('minari_id')}")
        attrs["chunk_episodes"] = chunk_episodes
    bar = tqdm(
        desc=f"collecting {name}",
        unit="step",
        unit_scale=True,
        disable=None if progress is None else not progress,
    )
    chunks: Chunks | None = None
    try:
        if not minari_id:
            refuse_existing_output(output, overwrite=overwrite)  # before hours of play
        if chunk_episodes is None:
            parts = reported(found.collect(typed), bar.update)
        else:
            chunks = Chunks(name, typed, Path(output), chunk_episodes, command, compression)
            parts = chunks.record(workers, bar.update)
        if minari_id:
            from gcrl.datasets.minari_writer import save_minari

            path = save_minari(parts, output, minari_id, attrs, overwrite=overwrite)
            return CollectSummary(Path(path), 0, 0, minari_id)
        if Path(output).suffix == ".npz":
            summary = _write_npz(list(parts), output, overwrite)
        else:
            episodes = 0
            with NativeWriter(
                output, overwrite=overwrite, compression=compression, attrs=attrs
            ) as writer:
                for part in parts:
                    writer.append(part)
                    episodes += part.num_episodes
                    bar.set_postfix(episodes=episodes, refresh=False)
            summary = CollectSummary(Path(output), writer.num_transitions, episodes)
        if chunks is not None:
            chunks.remove()
        return summary
    finally:
        bar.close()


def _write_npz(
    parts: list[Trajectories], output: str | os.PathLike[str], overwrite: bool
) -> CollectSummary:
    """OGBench's compact npz layout (what ``ogbench.utils.load_dataset`` reads): states,
    actions and episode ends only, so rewards, tasks, infos and provenance are not kept."""
    from gcrl.datasets.ogbench_format import write_ogbench

    if not parts:
        raise ConfigError(f"collect: nothing was recorded for {output}")
    data = concatenate(parts)
    write_ogbench(data, output, overwrite=overwrite)
    return CollectSummary(Path(output), data.num_transitions, data.num_episodes)


def reported(
    parts: Iterable[Trajectories], progress: Callable[[int], object]
) -> Iterator[Trajectories]:
    """``parts`` as they come, each one's number of transitions passed to ``progress`` first."""
    for part in parts:
        progress(len(part))
        yield part


def collect_command(
    name: str,
    output: str | os.PathLike[str],
    options: CollectOptions,
    minari_id: str | None,
    chunk_episodes: int | None = None,
) -> str:
    """The ``gcrl collect`` command that records this dataset again: every option of the
    record spelled out (a comma list for tuple options, the flag repeated for ``append``
    ones, a bare flag for a true switch; unset and false ones left out)."""
    words = ["gcrl", "collect", name, str(Path(output))]
    given: dict[str, tuple[Any, bool]] = {
        f.name: (getattr(options, f.name), f.metadata.get("action") == "append")
        for f in fields(options)
    }
    given["minari_id"] = (minari_id, False)
    given["chunk_episodes"] = (chunk_episodes, False)
    for key, (value, repeated) in sorted(given.items()):
        if value is None or value is False or (repeated and not value):
            continue
        flag = "--" + key.replace("_", "-")
        if repeated:
            for item in value:
                words += [flag, str(item)]
        elif value is True:
            words.append(flag)
        elif isinstance(value, tuple | list):
            words += [flag, ",".join(str(v) for v in value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


#: Episodes per chunk when ``workers`` > 1 and no chunk size is given.
CHUNK_EPISODES = 10


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed chunk ``chunk`` of a chunked recording with options seed ``seed`` plays from
    (independent streams: ``numpy.random.SeedSequence([seed, chunk])``)."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


class Chunks:
    """A chunked recording: its chunk files under ``OUT.parts/`` (``chunk-00000.hdf5``, ...)
    and ``plan.json``, the command they belong to (a directory holding another command's
    chunks is refused, never mixed in)."""

    def __init__(
        self,
        name: str,
        options: CollectOptions,
        output: Path,
        chunk_episodes: int,
        command: str,
        compression: str,
    ) -> None:
        self.name = name
        self.compression = compression
        self.directory = output.with_name(output.name + ".parts")
        starts = range(0, options.episodes, chunk_episodes)
        self.options = [
            replace(
                options,
                episodes=min(chunk_episodes, options.episodes - start),
                seed=chunk_seed(options.seed, index),
            )
            for index, start in enumerate(starts)
        ]
        self.plan = {"collect_command": command, "chunks": len(self.options)}

    def path(self, index: int) -> Path:
        """Chunk ``index``'s file."""
        return self.directory / f"chunk-{index:05d}.hdf5"

    def record(self, workers: int, progress: Callable[[int], object]) -> Iterator[Trajectories]:
        """Play every chunk not on disk yet (in ``workers`` processes), then yield all chunks'
        episodes in order; ``progress`` gets each finished chunk's transitions (those found on
        disk first)."""
        self._claim()
        missing = [i for i in range(len(self.options)) if not self.path(i).is_file()]
        for index in range(len(self.options)):
            if index not in missing:
                with NativeReader(self.path(index)) as reader:
                    progress(reader.num_transitions)
        jobs = [(self.name, self.options[i], str(self.path(i)), self.compression) for i in missing]
        try:
            if workers == 1 or len(jobs) <= 1:
                for job in jobs:
                    progress(record_chunk(job))
            else:
                context = multiprocessing.get_context("spawn")  # no forked simulator state
                pool = context.Pool(min(workers, len(jobs)))
                try:
                    for transitions in pool.imap_unordered(record_chunk, jobs):
                        raise_if_interrupted()
                        progress(transitions)
                except BaseException:
                    pool.terminate()
                    raise
                else:
                    pool.close()  # the workers exit on their own (releasing their renderers)
                finally:
                    pool.join()
        finally:  # a worker killed mid-chunk leaves its temporary file
            for stale in self.directory.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        for index in range(len(self.options)):
            with NativeReader(self.path(index)) as reader:
                yield from reader.iter_chunks()

    def remove(self) -> None:
        """Delete the chunks once the output is written."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def _claim(self) -> None:
        plan_file = self.directory / "plan.json"
        if plan_file.is_file():
            found = json.loads(plan_file.read_text())
            if found != self.plan:
                raise OutputExistsError(
                    f"{self.directory}: holds the chunks of another command "
                    f"({found.get('collect_command')}); remove it to start again"
                )
            return
        self.directory.mkdir(exist_ok=True)
        plan_file.write_text(json.dumps(self.plan))


def record_chunk(job: tuple[str, CollectOptions, str, str]) -> int:
    """Play one chunk (recipe name, its options, output path, compression) into its file;
    returns its transitions. Runs in a worker process."""
    name, options, path, compression = job
    with NativeWriter(path, compression=compression) as writer:
        for part in recipe(name).collect(options):
            raise_if_interrupted()
            writer.append(part)
    return writer.num_transitions
