"""The trajectory model: one frozen record over numpy arrays for every source format.

Row ``i`` is the transition ``(observations[i], actions[i], rewards[i], next_observations[i])``.
Episodes are contiguous runs of rows starting at ``episode_starts``; the last row of an
episode, and only that row, has ``terminals`` (the environment terminated) or
``timeouts`` (the episode was cut: time limit or end of the recorded data) set.
``next_observations`` never crosses an episode boundary.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from gcrl.errors import (
    DataError,
    EmptyDatasetError,
    EmptyEpisodeError,
    EpisodeBoundaryError,
    LengthMismatchError,
    MissingKeyError,
    NonFiniteError,
)

#: An observation column: one array ``[N, ...]`` or a flat dict of them (for goal-conditioned
#: data the keys are ``observation``, ``achieved_goal`` and ``desired_goal``).
Observations = np.ndarray | dict[str, np.ndarray]
#: The dict observation key holding the goal a row pursues.
DESIRED_GOAL = "desired_goal"


@dataclass(frozen=True)
class Task:
    """One task of a multi-task dataset: a short name and a natural-language instruction."""

    name: str
    text: str = ""


@dataclass(frozen=True, eq=False)
class Trajectories:
    """N transitions in E episodes, with optional task labels and per-step extras.

    Construction checks every invariant (shapes, dtypes, boundaries, finiteness) and raises a
    :class:`gcrl.errors.DataError` subclass that names the offending key. ``rewards`` are cast
    to float32, ``terminals``/``timeouts`` to bool and ``episode_starts``/``task_ids`` to int64;
    other arrays keep their dtype.
    """

    observations: Observations
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    next_observations: Observations
    episode_starts: np.ndarray
    task_ids: np.ndarray | None = None
    tasks: tuple[Task, ...] = ()
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    #: Provenance: JSON-compatible scalars and strings (source file, format, relabel strategy).
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("rewards", "terminals", "timeouts", "task_ids"):
            value = getattr(self, name)
            if value is not None:  # before the casts below would drop an imaginary part
                check_real_dtype(name, np.asarray(value))
        set_(self, "rewards", np.asarray(self.rewards, dtype=np.float32))
        set_(self, "terminals", np.asarray(self.terminals, dtype=bool))
        set_(self, "timeouts", np.asarray(self.timeouts, dtype=bool))
        set_(self, "episode_starts", np.asarray(self.episode_starts, dtype=np.int64))
        if self.task_ids is not None:
            set_(self, "task_ids", np.asarray(self.task_ids, dtype=np.int64))
        set_(self, "tasks", tuple(self.tasks))
        set_(self, "infos", dict(self.infos))
        set_(self, "attrs", dict(self.attrs))
        self._validate()

    @classmethod
    def _trusted(cls, **values: Any) -> Trajectories:
        """Build without validation, for views of an already validated record."""
        obj = object.__new__(cls)
        for f in fields(cls):
            object.__setattr__(obj, f.name, values[f.name])
        return obj

    # ----------------------------------------------------------------- validation
    def _validate(self) -> None:
        n = len(self.actions)
        if n == 0:
            raise EmptyDatasetError("actions: the dataset holds no transition")
        columns: dict[str, np.ndarray] = {"actions": self.actions}
        columns.update(_named_columns("observations", self.observations))
        columns.update(_named_columns("next_observations", self.next_observations))
        columns.update(rewards=self.rewards, terminals=self.terminals, timeouts=self.timeouts)
        if self.task_ids is not None:
            columns["task_ids"] = self.task_ids
        columns.update({f"infos/{k}": v for k, v in self.infos.items()})
        for name, array in columns.items():
            if array.ndim == 0 or len(array) != n:
                length = "a scalar" if array.ndim == 0 else f"{len(array)} rows"
                raise LengthMismatchError(f"{name}: {length}, expected {n} (as actions)")
        for name in ("rewards", "terminals", "timeouts"):
            if columns[name].ndim != 1:
                raise DataError(f"{name}: shape {columns[name].shape}, expected ({n},)")
        _check_same_structure(self.observations, self.next_observations)
        for name, array in columns.items():
            if name.startswith(("observations", "next_observations", "actions")):
                check_real_dtype(name, array)
                check_finite(name, array)
            elif name.startswith("infos/") and array.dtype.kind in "cVO":
                raise DataError(f"{name}: dtype {array.dtype} (complex, compound or object)")
        check_finite("rewards", self.rewards)

        check_episode_index(self.episode_starts, self.terminals, self.timeouts)
        check_task_labels(self.task_ids, self.tasks, n)

    # ----------------------------------------------------------------- sizes
    @property
    def num_transitions(self) -> int:
        """N, the number of rows."""
        return len(self.actions)

    @property
    def num_episodes(self) -> int:
        """E, the number of episodes."""
        return len(self.episode_starts)

    def __len__(self) -> int:
        return self.num_transitions

    @cached_property
    def episode_ends(self) -> np.ndarray:
        """Exclusive end row of each episode, ``[E]`` int64."""
        return np.append(self.episode_starts[1:], self.num_transitions).astype(np.int64)

    @cached_property
    def episode_lengths(self) -> np.ndarray:
        """Transitions per episode, ``[E]`` int64."""
        return self.episode_ends - self.episode_starts

    @cached_property
    def episode_ids(self) -> np.ndarray:
        """Episode index of every row, ``[N]`` int64."""
        return np.repeat(np.arange(self.num_episodes, dtype=np.int64), self.episode_lengths)

    @property
    def is_goal_conditioned(self) -> bool:
        """True when observations are a dict holding ``desired_goal``."""
        return isinstance(self.observations, dict) and "desired_goal" in self.observations

    # ----------------------------------------------------------------- views
    def rows(self, start: int, stop: int) -> Trajectories:
        """Rows ``[start, stop)`` as a view (no copy); both must be episode boundaries."""
        if not (0 <= start < stop <= self.num_transitions):
            raise IndexError(f"rows [{start}, {stop}) out of [0, {self.num_transitions})")
        first, last = np.searchsorted(self.episode_starts, [start, stop])
        on_boundary = first < self.num_episodes and self.episode_starts[first] == start
        on_boundary &= stop == self.num_transitions or (
            last < self.num_episodes and self.episode_starts[last] == stop
        )
        if not on_boundary:
            raise IndexError(f"rows [{start}, {stop}) do not start and end on episode boundaries")
        return self._take_rows(slice(start, stop), self.episode_starts[first:last] - start)

    def episode(self, index: int) -> Trajectories:
        """Episode ``index`` (negative counts from the end) as a view, without copying."""
        index = range(self.num_episodes)[index]
        return self.rows(int(self.episode_starts[index]), int(self.episode_ends[index]))

    def episodes(self) -> Iterator[Trajectories]:
        """Iterate over the episodes as views, in order."""
        for index in range(self.num_episodes):
            yield self.episode(index)

    def chunks(self, max_rows: int = 1 << 18) -> Iterator[Trajectories]:
        """Views of whole episodes, about ``max_rows`` rows each (see :func:`episode_chunks`)."""
        for first, stop in episode_chunks(self.episode_starts, self.num_transitions, max_rows):
            yield self.rows(int(self.episode_starts[first]), int(self.episode_ends[stop - 1]))

    def select_episodes(self, indices: Sequence[int] | np.ndarray) -> Trajectories:
        """The given episodes, in the given order, as a new record (copies the rows)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise EmptyDatasetError("select_episodes: no episode selected")
        return self._take_rows(*self.episode_rows(indices))

    def episode_rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the given episodes (repeats allowed), in order, and where each starts in
        that row list: ``(rows [n] int64, starts [len(indices)] int64)``."""
        lengths = self.episode_lengths[indices]
        starts = (np.cumsum(lengths) - lengths).astype(np.int64)
        rows = np.repeat(self.episode_starts[indices] - starts, lengths) + np.arange(
            lengths.sum(), dtype=np.int64
        )
        return rows, starts

    def _take_rows(self, rows: slice | np.ndarray, episode_starts: np.ndarray) -> Trajectories:
        """The given rows (a slice gives views, an index array copies) as a trusted record."""
        return Trajectories._trusted(
            observations=take_observations(self.observations, rows),
            actions=take_rows(self.actions, rows),
            rewards=take_rows(self.rewards, rows),
            terminals=take_rows(self.terminals, rows),
            timeouts=take_rows(self.timeouts, rows),
            next_observations=take_observations(self.next_observations, rows),
            episode_starts=episode_starts,
            task_ids=None if self.task_ids is None else take_rows(self.task_ids, rows),
            tasks=self.tasks,
            infos={k: take_rows(v, rows) for k, v in self.infos.items()},
            attrs=self.attrs,
        )

    # ----------------------------------------------------------------- comparison
    def equals(self, other: Trajectories, *, check_attrs: bool = False) -> bool:
        """True when every array (dict observations and infos included) is equal."""
        if not isinstance(other, Trajectories):
            return False
        mine, theirs = self.columns(), other.columns()
        if mine.keys() != theirs.keys() or self.tasks != other.tasks:
            return False
        if check_attrs and self.attrs != other.attrs:
            return False
        return all(
            mine[k].dtype == theirs[k].dtype and np.array_equal(mine[k], theirs[k]) for k in mine
        )

    def columns(self) -> dict[str, np.ndarray]:
        """Every array by its storage name (``observations/achieved_goal``, ``infos/qpos``)."""
        out: dict[str, np.ndarray] = {}
        out.update(_named_columns("observations", self.observations))
        out.update(_named_columns("next_observations", self.next_observations))
        out.update(
            actions=self.actions,
            rewards=self.rewards,
            terminals=self.terminals,
            timeouts=self.timeouts,
            episode_starts=self.episode_starts,
        )
        if self.task_ids is not None:
            out["task_ids"] = self.task_ids
        out.update({f"infos/{k}": v for k, v in self.infos.items()})
        return out

    def __repr__(self) -> str:
        obs = (
            "{" + ", ".join(f"{k}: {v.shape[1:]}" for k, v in self.observations.items()) + "}"
            if isinstance(self.observations, dict)
            else str(self.observations.shape[1:])
        )
        return (
            f"Trajectories(transitions={self.num_transitions}, episodes={self.num_episodes}, "
            f"observations={obs}, actions={self.actions.shape[1:]}, tasks={len(self.tasks)})"
        )


# --------------------------------------------------------------------- helpers
def _named_columns(prefix: str, observations: Observations) -> dict[str, np.ndarray]:
    if isinstance(observations, Mapping):
        return {f"{prefix}/{k}": np.asarray(v) for k, v in observations.items()}
    return {prefix: np.asarray(observations)}


def take_observations(observations: Observations, rows: slice | np.ndarray) -> Observations:
    """The given rows of an observation column (array or dict of arrays)."""
    if isinstance(observations, dict):
        return {k: take_rows(v, rows) for k, v in observations.items()}
    return take_rows(observations, rows)


def stack_observations(observations: Sequence[Any]) -> Observations:
    """One observation column from a list of single observations (dicts or arrays)."""
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


def replace_fields(data: Trajectories, **changes: Any) -> Trajectories:
    """``data`` with some fields replaced, without revalidating the untouched arrays (the
    caller vouches for the new ones)."""
    values = {name: getattr(data, name) for name in Trajectories.__dataclass_fields__}
    values.update(changes)
    return Trajectories._trusted(**values)


def take_rows(array: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    """``array[rows]``: a view for a slice, else a gather of the rows alone.

    ``np.take`` is several times faster than fancy indexing for rows of a C-contiguous 2-D
    array, but copies the *whole* array first when it is not C-contiguous (a strided column
    view, an F-ordered array); those take fancy indexing, which copies only the rows."""
    if isinstance(rows, slice):
        return array[rows]
    if array.flags.c_contiguous:
        return array.take(rows, axis=0)
    return array[np.asarray(rows)]


def goal_columns(
    data: Trajectories, goal_key: str, goal_dims: Sequence[int] | slice | None
) -> tuple[np.ndarray, np.ndarray]:
    """The achieved-goal column (:func:`goal_column`) of ``s`` and of ``s'``."""
    return (
        goal_column(data.observations, goal_key, goal_dims),
        goal_column(data.next_observations, goal_key, goal_dims),
    )


def goal_column(
    observations: Observations, goal_key: str, goal_dims: Sequence[int] | slice | None
) -> np.ndarray:
    """The achieved goals of ``observations``: ``observations[goal_key]`` of dict
    observations, the ``goal_dims`` (default: all) of array observations.

    Selected dimensions are copied once into a C-contiguous array, so that gathering a batch of
    goal rows from it never copies the column (a list of dimensions gives an F-ordered copy, a
    slice a strided view, both slow to gather from)."""
    if isinstance(observations, dict):
        if goal_key not in observations:
            raise MissingKeyError(
                f"observations/{goal_key}: no such key (the observations hold "
                f"{', '.join(sorted(observations))}); pass goal_key"
            )
        column = observations[goal_key]
    else:
        column = observations
    if goal_dims is not None:
        column = np.ascontiguousarray(column[:, goal_dims])
    return column


def _check_same_structure(
    observations: Observations,
    next_observations: Observations,
    *,
    name: str = "next_observations",
    rows: bool = True,
) -> None:
    """Same dict keys, dtypes and shapes (``rows=False``: per-row shapes only)."""
    if isinstance(observations, dict) != isinstance(next_observations, dict):
        raise DataError(f"{name}: must be a dict exactly when observations is one")
    pairs: list[tuple[str, np.ndarray, np.ndarray]]
    if isinstance(observations, dict):
        assert isinstance(next_observations, dict)
        if observations.keys() != next_observations.keys():
            raise DataError(
                f"{name}: keys {sorted(next_observations)} differ from "
                f"observations keys {sorted(observations)}"
            )
        pairs = [(f"/{k}", observations[k], next_observations[k]) for k in observations]
    else:
        assert isinstance(next_observations, np.ndarray)
        pairs = [("", observations, next_observations)]
    first = 0 if rows else 1
    for key, obs, nxt in pairs:
        if obs.shape[first:] != nxt.shape[first:] or obs.dtype != nxt.dtype:
            raise DataError(
                f"{name}{key}: {nxt.shape[first:]} {nxt.dtype} differs from "
                f"observations{key}: {obs.shape[first:]} {obs.dtype}"
            )


def check_real_dtype(name: str, array: np.ndarray) -> None:
    """Raise unless ``array`` holds booleans, integers or real floats: complex, compound
    (structured), string and object columns are refused rather than cast or written out."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name}: dtype {array.dtype}, expected booleans, integers or floats")


def check_task_labels(task_ids: np.ndarray | None, tasks: Sequence[Task], n: int) -> None:
    """Raise unless ``task_ids`` (or None) is ``[n]`` integers indexing ``tasks``, whose names
    are unique; a task table without ids is refused too."""
    if task_ids is not None:
        if task_ids.ndim != 1 or len(task_ids) != n:
            raise LengthMismatchError(f"task_ids: shape {task_ids.shape}, expected ({n},)")
        if task_ids.dtype.kind not in "iu":
            raise DataError(f"task_ids: dtype {task_ids.dtype}, expected integers")
        if len(tasks) == 0:
            raise DataError("tasks: task_ids are given but the task table is empty")
        low, high = int(task_ids.min()), int(task_ids.max())
        if low < 0 or high >= len(tasks):
            raise DataError(
                f"task_ids: values must lie in [0, {len(tasks)}) (the task table), "
                f"found {low}..{high}"
            )
    elif tasks:
        raise DataError("task_ids: a task table is given but no task_ids")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise DataError(f"tasks/names: task name {duplicate!r} appears more than once")


def check_finite(name: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.inexact) or array.size == 0:
        return
    # A sum propagates NaN and infinity: one pass, no temporary. If it overflows, the exact
    # check below decides.
    if np.isfinite(array.sum()):
        return
    bad = ~np.isfinite(array)
    if not bad.any():
        return
    row = int(np.argmax(bad.reshape(len(array), -1).any(axis=1)))
    raise NonFiniteError(f"{name}: {int(bad.sum())} NaN or infinite values (first at row {row})")


def check_episode_index(starts: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray) -> None:
    """Raise unless ``starts`` are valid episode starts for N = ``len(terminals)`` rows and the
    terminal/timeout flags are set on each episode's last row and nowhere else."""
    n = len(terminals)
    if starts.ndim != 1 or len(starts) == 0 or starts[0] != 0:
        raise EpisodeBoundaryError("episode_starts: must be a non-empty 1-D array from 0")
    lengths = np.diff(np.append(starts, n))
    if np.any(lengths <= 0):
        episode = int(np.argmax(lengths <= 0))
        raise EmptyEpisodeError(
            f"episode_starts: episode {episode} holds no transition "
            f"(starts at row {int(starts[episode])})"
        )
    ends = np.zeros(n, dtype=bool)
    ends[starts[1:] - 1] = True
    ends[-1] = True
    flagged = terminals | timeouts
    if np.any(flagged & ~ends):
        row = int(np.argmax(flagged & ~ends))
        raise EpisodeBoundaryError(
            f"terminals/timeouts: row {row} ends an episode but is not at an episode boundary"
        )
    if np.any(ends & ~flagged):
        row = int(np.argmax(ends & ~flagged))
        raise EpisodeBoundaryError(
            f"terminals/timeouts: row {row} is the last of its episode but neither flag is set"
        )


def check_columns(
    arrays: Mapping[str, Any], required: Sequence[str], optional: Sequence[str] = ()
) -> int:
    """Raise unless every ``required`` key is present, non-empty, and every present key among
    ``required`` and ``optional`` has as many rows as ``actions``; returns that row count N."""
    for key in required:
        if key not in arrays:
            raise MissingKeyError(f"missing key {key!r}")
    for key in (*required, *optional):
        if key in arrays and np.ndim(arrays[key]) == 0:
            raise LengthMismatchError(f"{key}: a scalar, expected one row per transition")
    n = len(arrays["actions"])
    if n == 0:
        raise EmptyDatasetError("actions: the dataset holds no transition")
    for key in (*required, *optional):
        if key in arrays and len(arrays[key]) != n:
            raise LengthMismatchError(f"{key}: {len(arrays[key])} rows, expected {n} (as actions)")
    return n


def episode_starts_from_ends(ends: np.ndarray) -> np.ndarray:
    """Episode start rows ``[E]`` from a per-row bool array marking each episode's last row.

    >>> episode_starts_from_ends(np.array([0, 0, 1, 0, 1], dtype=bool)).tolist()
    [0, 3]
    """
    last = np.flatnonzero(ends)
    return np.concatenate([[0], last[:-1] + 1]).astype(np.int64)


def episode_chunks(starts: np.ndarray, num_rows: int, max_rows: int) -> Iterator[tuple[int, int]]:
    """Episode ranges ``[first, stop)`` of about ``max_rows`` rows each, in order.

    A single episode longer than ``max_rows`` comes alone.

    >>> list(episode_chunks(np.array([0, 3, 5, 9]), 10, 5))
    [(0, 2), (2, 4)]
    """
    ends = np.append(starts[1:], num_rows)
    first = 0
    while first < len(starts):
        limit = starts[first] + max_rows
        stop = max(first + 1, int(np.searchsorted(ends, limit, side="right")))
        yield first, stop
        first = stop


def concatenate(
    parts: Sequence[Trajectories], tasks: Sequence[Task | None] | None = None
) -> Trajectories:
    """Stack several datasets into one multi-task dataset.

    ``tasks[i]`` labels every row of ``parts[i]``; ``None`` (or no ``tasks`` at all) keeps the
    part's own task table. Task indices (the one-hot positions) are assigned in order of first
    appearance across ``parts``; parts naming the same task share its index (their texts must
    agree). Infos kept are those present in every part. Returns a new record (copies rows).
    """
    if not parts:
        raise EmptyDatasetError("concatenate: no dataset given")
    if tasks is not None and len(tasks) != len(parts):
        raise DataError(f"concatenate: {len(tasks)} tasks for {len(parts)} datasets")
    labels = list(tasks) if tasks is not None else [None] * len(parts)
    table = TaskTable()
    task_ids = [table.ids_for(part, label) for part, label in zip(parts, labels, strict=True)]
    if any(t is None for t in task_ids) and not all(t is None for t in task_ids):
        missing = [i for i, t in enumerate(task_ids) if t is None]
        raise DataError(f"concatenate: datasets {missing} have no task; give one for each")
    for i, part in enumerate(parts[1:], start=1):
        _check_same_structure(
            parts[0].observations, part.observations, name=f"concatenate: dataset {i}", rows=False
        )
        if part.actions.shape[1:] != parts[0].actions.shape[1:]:
            raise DataError(
                f"concatenate: dataset {i} actions {part.actions.shape[1:]} differ from "
                f"{parts[0].actions.shape[1:]}"
            )
    info_keys = [k for k in parts[0].infos if all(k in p.infos for p in parts)]
    offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
    return Trajectories(
        observations=_concat_obs([p.observations for p in parts]),
        actions=np.concatenate([p.actions for p in parts]),
        rewards=np.concatenate([p.rewards for p in parts]),
        terminals=np.concatenate([p.terminals for p in parts]),
        timeouts=np.concatenate([p.timeouts for p in parts]),
        next_observations=_concat_obs([p.next_observations for p in parts]),
        episode_starts=np.concatenate(
            [p.episode_starts + off for p, off in zip(parts, offsets, strict=True)]
        ),
        task_ids=None if task_ids[0] is None else np.concatenate(task_ids),  # type: ignore[arg-type]
        tasks=table.tasks,
        infos={k: np.concatenate([p.infos[k] for p in parts]) for k in info_keys},
        attrs={"sources": [str(p.attrs.get("source", "")) for p in parts]},
    )


def _concat_obs(parts: list[Observations]) -> Observations:
    dicts = [p for p in parts if isinstance(p, dict)]
    if dicts:
        return {k: np.concatenate([p[k] for p in dicts]) for k in dicts[0]}
    return np.concatenate([p for p in parts if isinstance(p, np.ndarray)])


class TaskTable:
    """A growing task table: indices assigned in order of first appearance, by name."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._tasks: list[Task] = []

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The tasks in index order."""
        return tuple(self._tasks)

    def add(self, task: Task) -> int:
        """Return the index of ``task``, adding it if its name is new."""
        if task.name in self._index:
            index = self._index[task.name]
            known = self._tasks[index]
            if task.text and known.text and task.text != known.text:
                raise DataError(
                    f"tasks: task {task.name!r} given two texts: {known.text!r} and {task.text!r}"
                )
            if task.text and not known.text:
                self._tasks[index] = task
            return index
        self._index[task.name] = len(self._tasks)
        self._tasks.append(task)
        return self._index[task.name]

    def ids_for(self, part: Trajectories, label: Task | None) -> np.ndarray | None:
        """Global task ids ``[N]`` for ``part``: all ``label`` if given, else its own remapped."""
        if label is not None:
            return np.full(len(part), self.add(label), dtype=np.int64)
        if part.task_ids is None:
            return None
        remap = np.array([self.add(t) for t in part.tasks], dtype=np.int64)
        return remap[part.task_ids]
