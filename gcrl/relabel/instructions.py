"""Hindsight instructions: an episode relabeled with the task it actually accomplished.

The text analogue of HER. An environment module computes, for every episode it can, the task
(for BabyAI, the mission naming the object the agent ended next to and facing) and the step at
which that task would have been accomplished; the episode's rows up to that step then form an
episode of the new task, rewarded and ended there as the environment would have. That table
is a :class:`HindsightTasks`; :class:`InstructionRelabel` applies it to a share of each
training batch, and :func:`hindsight_episodes` writes the relabeled episodes out (offline).

>>> import numpy as np
>>> table = HindsightTasks(task_ids=np.array([2, 2, -1]), rewards=np.array([0.0, 0.9, 0.0]),
...                        terminals=np.array([False, True, False]), tasks=("a", "b", "c"))
>>> table.relabelable.tolist()
[True, True, False]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import (
    Trajectories,
    episode_starts_from_ends,
    replace_fields,
    take_rows,
)
from gcrl.errors import ConfigError
from gcrl.relabel.tasks import with_task_labels


@dataclass(frozen=True)
class HindsightTasks:
    """Per-row hindsight labels of a dataset (``N`` rows).

    ``task_ids[i]`` is the task row i belongs to in hindsight (-1: none; rows after the step
    that accomplished it have none, since the relabeled episode ends there), ``rewards[i]``
    and ``terminals[i]`` its reward and end under that task. ``tasks`` is the dataset's task
    table extended by the hindsight tasks (existing ids unchanged).
    """

    task_ids: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    tasks: Sequence[Any]

    @property
    def relabelable(self) -> np.ndarray:
        """Rows with a hindsight task; bool ``[N]``."""
        return np.asarray(self.task_ids) >= 0


#: ``fn(data) -> HindsightTasks``: an environment's hindsight labels of a dataset.
HindsightFn = Callable[[Trajectories], HindsightTasks]


class InstructionRelabel:
    """Relabels a share of each batch with the rows' hindsight tasks.

    ``round(ratio * B)`` rows are tried; those with a hindsight task take its id, reward and
    mask (0 where the relabeled episode ends); the rest keep their own.
    """

    def __init__(self, hindsight: HindsightTasks, ratio: float) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"instruction_relabel_ratio: must lie in [0, 1], got {ratio}")
        self.hindsight = hindsight
        self.ratio = ratio

    def apply(self, batch: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """``batch`` with relabeled rows' ``task_ids``, ``rewards`` and ``masks`` replaced
        (new arrays), plus ``source_task_ids`` and ``instruction_relabeled`` (bool)."""
        rows = np.asarray(batch["rows"], dtype=np.int64)
        tried = rng.choice(len(rows), size=round(self.ratio * len(rows)), replace=False)
        table = self.hindsight
        positions = tried[table.task_ids[rows[tried]] >= 0]
        picked = rows[positions]
        return with_task_labels(
            batch,
            positions,
            table.task_ids[picked],
            table.rewards[picked],
            ~table.terminals[picked],
            "instruction_relabeled",
        )


def hindsight_episodes(data: Trajectories, hindsight: HindsightTasks) -> Trajectories | None:
    """The relabeled episodes of ``data`` (each episode's rows that have a hindsight task,
    as one episode of that task, ending in a terminal where it was accomplished); None when
    no episode has one."""
    rows = np.flatnonzero(hindsight.relabelable)
    if len(rows) == 0:
        return None
    terminals = take_rows(hindsight.terminals, rows)
    # A copy ends at its terminal (or where its source episode ended without one).
    source_ends = np.zeros(data.num_transitions, dtype=bool)
    source_ends[data.episode_starts[1:] - 1] = True
    source_ends[-1] = True
    ends = terminals | source_ends[rows]
    copy = data._take_rows(rows, episode_starts_from_ends(ends))
    return replace_fields(
        copy,
        rewards=take_rows(hindsight.rewards, rows).astype(np.float32),
        terminals=terminals,
        timeouts=ends & ~terminals,
        task_ids=take_rows(hindsight.task_ids, rows).astype(np.int64),
        tasks=tuple(hindsight.tasks),
    )
