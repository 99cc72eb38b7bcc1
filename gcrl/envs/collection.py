"""Recording a recipe's noisy scripted expert into a dataset, from Python or ``gcrl collect``.

:func:`collect` plays a recipe of :data:`gcrl.envs.RECIPES` and writes what it records: the
native format (written to a temporary file and renamed into place when complete), for an
output named ``*.npz`` OGBench's compact npz layout (:func:`gcrl.datasets.write_ogbench`), or,
with ``minari_id``, a Minari dataset. Either way the dataset's attributes hold the recipe's
provenance and the ``gcrl collect`` command that makes it again (``collect_command``).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gcrl.datasets.native_format import NativeWriter
from gcrl.datasets.trajectories import Trajectories, concatenate
from gcrl.envs import recipe
from gcrl.envs.base import CollectOptions
from gcrl.errors import ConfigError


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
            f"wrote {self.transitions:,} transitions in {self.episodes:,} episodes to {self.output}"
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
    **values: Any,
) -> CollectSummary:
    """Record recipe ``name``'s expert into ``output``: its options record ``options``, or
    one built from ``values`` (``episodes=20, seed=0``; the ``gcrl collect`` options without
    dashes). ``progress``: a bar of recorded steps (default: only on a terminal).

    Returns the summary; a bad option is a one-line :class:`gcrl.errors.ConfigError` before
    anything is played, and an interrupted or failed recording leaves no output.
    """
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
    attrs = {
        "source": f"gcrl collect {name}",
        "collect_command": collect_command(name, output, typed, minari_id),
        **found.attrs(typed),
    }
    bar = tqdm(
        desc=f"collecting {name}",
        unit="step",
        unit_scale=True,
        disable=None if progress is None else not progress,
    )
    try:
        parts = reported(found.collect(typed), bar.update)
        if minari_id:
            from gcrl.datasets.minari_writer import save_minari

            path = save_minari(parts, output, minari_id, attrs, overwrite=overwrite)
            return CollectSummary(Path(path), 0, 0, minari_id)
        if Path(output).suffix == ".npz":
            return _write_npz(list(parts), output, overwrite)
        episodes = 0
        with NativeWriter(
            output, overwrite=overwrite, compression=compression, attrs=attrs
        ) as writer:
            for part in parts:
                writer.append(part)
                episodes += part.num_episodes
                bar.set_postfix(episodes=episodes, refresh=False)
        return CollectSummary(Path(output), writer.num_transitions, episodes)
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
    name: str, output: str | os.PathLike[str], options: CollectOptions, minari_id: str | None
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
