"""Hindsight instructions: an episode relabeled with the task it actually accomplished.

The text analogue of HER. An environment module computes, for every episode it can, the task
(for BabyAI, the mission naming the object the agent ended next to and facing) and the step at
which that task would have been accomplished; the episode's rows up to that step then form an
episode of the new task, rewarded and ended there as the environment would have. That table
is a :class:`HindsightTasks` (:func:`with_hindsight_tasks` stores it in the data);
:class:`InstructionRelabel` applies it to a share of each training batch, and
:func:`hindsight_episodes` writes the relabeled episodes out (offline). The caller names the
environment's function: no layer below the environments imports one.

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
from gcrl.errors import ConfigError, option
from gcrl.relabel.reward_fns import resolve
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
#: Info columns holding the hindsight tasks of each row (see :func:`with_hindsight_tasks`).
HINDSIGHT_COLUMNS = ("hindsight_task_id", "hindsight_reward", "hindsight_terminal")
#: The option naming the hindsight function (``data.hindsight_fn``, ``--hindsight-fn``).
HINDSIGHT_OPTION = "hindsight_fn"


def hindsight_function(spec: str | HindsightFn | None) -> tuple[str, HindsightFn]:
    """``(label, function)`` of a hindsight function given as ``MODULE:NAME`` or as the
    function; None is a one-line error saying what to give (an environment module computes
    hindsight tasks, for BabyAI ``gcrl.envs.babyai:hindsight_instructions``)."""
    if spec is None:
        raise ConfigError(
            f"{option(HINDSIGHT_OPTION)}: hindsight instructions need the function computing "
            "each row's hindsight task, MODULE:NAME (BabyAI: "
            "gcrl.envs.babyai:hindsight_instructions)"
        )
    label, fn = resolve(spec, HINDSIGHT_OPTION)
    if not callable(fn):
        raise ConfigError(f"{label}: {fn!r} is not callable")
    return label, fn


def with_hindsight_tasks(
    data: Trajectories, hindsight_fn: str | HindsightFn | None
) -> Trajectories:
    """``data`` with its hindsight tasks (from ``hindsight_fn``, see
    :func:`hindsight_function`) as info columns (so a split into training and validation
    episodes keeps them) and its task table extended by them."""
    table = hindsight_function(hindsight_fn)[1](data)
    infos = dict(data.infos)
    columns = (table.task_ids, table.rewards, table.terminals)
    infos.update(zip(HINDSIGHT_COLUMNS, columns, strict=True))
    return replace_fields(data, infos=infos, tasks=tuple(table.tasks))


def hindsight_table(data: Trajectories) -> HindsightTasks:
    """The hindsight tasks :func:`with_hindsight_tasks` stored in ``data``."""
    task_ids, rewards, terminals = (data.infos[k] for k in HINDSIGHT_COLUMNS)
    return HindsightTasks(task_ids, rewards, terminals, data.tasks)


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
