"""D4RL-format HDF5 files: one row per step, episodes marked by ``terminals``/``timeouts``.

Root keys: ``observations``, ``actions``, ``rewards``, ``terminals`` (required), ``timeouts``,
``next_observations`` and ``infos/*`` (optional; ``metadata/*`` is ignored).

Conversion to :class:`Trajectories` (what :func:`load_d4rl` does):

* Episodes end at rows where ``terminals`` or ``timeouts`` is set, as D4RL's
  ``sequence_dataset`` splits them; rows after the last flag form a final episode cut by the
  end of the data (``sequence_dataset`` drops them).
* Without ``next_observations`` in the file, the next observation of row ``i`` is
  ``observations[i + 1]`` within the episode. The last row of an episode has none:

  - cut by a timeout (or the end of data), it is dropped, as ``d4rl.qlearning_dataset`` does,
    and the row before it becomes the episode's timeout row;
  - ending in a terminal, it is kept (the terminal signal matters for Q-learning) and its
    ``next_observations`` repeats its own observation. The value is never bootstrapped from;
    note that goal rewards judged on s' see the state s for these rows.

* Without ``timeouts``, episodes end only at terminals, unless ``max_episode_steps`` is given:
  then every run of ``max_episode_steps`` rows without a terminal ends in a timeout. (D4RL's own
  step counter starts at 1 after the first episode, so its synthesized limits fire one step
  early; :func:`qlearning_dataset` reproduces that, the loader does not.)
* ``infos/goal`` (maze2d, antmaze) makes observations a dict: ``observation``,
  ``desired_goal`` (the goal of the row) and ``achieved_goal`` (by default the first
  ``goal_dim`` observation dimensions, the x-y position in these tasks).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gcrl.datasets.loading import DatasetFormat, SourceProbe
from gcrl.datasets.trajectories import Trajectories, check_columns, episode_starts_from_ends
from gcrl.errors import (
    DataError,
    DatasetNotFoundError,
    EmptyDatasetError,
    GcrlError,
    MissingKeyError,
)

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
#: Optional row-aligned keys whose length is checked when present.
OPTIONAL_KEYS = ("timeouts", "next_observations")
#: Columns at least this large are compacted in place, to keep peak memory near the output's.
_IN_PLACE_BYTES = 1 << 25


def read_d4rl_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every dataset of a D4RL-format file by its path (``infos/qpos``), ``metadata/*`` excluded."""
    with h5py.File(path, "r") as f:
        return {name: data[()] for name, data in _datasets(f).items()}


def _datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and not name.startswith("metadata"):
            found[name] = obj

    f.visititems(visit)
    return found


def synthesize_timeouts(terminals: np.ndarray, max_episode_steps: int) -> np.ndarray:
    """Timeout flags ``[N]`` for data without them: every ``max_episode_steps``-th row of a run
    without terminal.

    >>> synthesize_timeouts(np.array([0, 0, 0, 1, 0, 0, 0]), 2).astype(int).tolist()
    [0, 1, 0, 0, 0, 1, 0]
    """
    if max_episode_steps < 1:
        raise DataError(f"max_episode_steps: must be >= 1, got {max_episode_steps}")
    terminals = np.asarray(terminals, dtype=bool)
    n = len(terminals)
    after_terminal = np.concatenate([[True], terminals[:-1]])
    run_start = np.maximum.accumulate(np.where(after_terminal, np.arange(n), 0))
    position = np.arange(n) - run_start
    return (position % max_episode_steps == max_episode_steps - 1) & ~terminals


def load_d4rl(
    path: str | os.PathLike[str],
    *,
    max_episode_steps: int | None = None,
    goal: bool = True,
    achieved_goal_dims: Sequence[int] | None = None,
) -> Trajectories:
    """Load a D4RL-format HDF5 file; see the module docstring for the exact conversion.

    ``goal=False`` ignores ``infos/goal``; ``achieved_goal_dims`` picks the observation
    dimensions compared with the goal (default: the first ``goal_dim``).
    """
    if not Path(path).is_file():
        raise DatasetNotFoundError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            # Columns are read one at a time (lazily), so peak memory stays near the output's.
            return from_d4rl_arrays(
                _datasets(f),
                max_episode_steps=max_episode_steps,
                goal=goal,
                achieved_goal_dims=achieved_goal_dims,
                source=str(path),
            )
    except GcrlError as err:
        raise err.with_source(path) from None


def _without_rows(array: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """``array`` minus the sorted rows ``drop``, compacted in place (one pass, no full copy).

    Returns a view of ``array``'s first ``len(array) - len(drop)`` rows; ``array`` is modified.
    """
    if drop.size == 0:
        return array
    if array.nbytes < _IN_PLACE_BYTES:  # small: one vectorised copy is faster than the loop
        keep = np.ones(len(array), dtype=bool)
        keep[drop] = False
        return array[keep]
    bounds = np.concatenate([[-1], drop, [len(array)]])
    write = 0
    for previous, nxt in itertools.pairwise(bounds):
        read, count = previous + 1, nxt - previous - 1
        if count > 0 and read != write:
            array[write : write + count] = array[read : read + count]
        write += count
    return array[:write]


def from_d4rl_arrays(
    arrays: Mapping[str, Any],
    *,
    max_episode_steps: int | None = None,
    goal: bool = True,
    achieved_goal_dims: Sequence[int] | None = None,
    source: str = "",
) -> Trajectories:
    """:func:`load_d4rl` on arrays (a dict as ``env.get_dataset()`` returns, or h5py datasets,
    read one at a time). Arrays passed in memory are not modified."""
    n = check_columns(arrays, REQUIRED_KEYS, OPTIONAL_KEYS)

    def column(key: str) -> np.ndarray:
        """A private, writable copy of one column (read from the file when it is a dataset)."""
        value = arrays[key]
        return value[()] if isinstance(value, h5py.Dataset) else np.array(value)

    terminals = column("terminals").astype(bool).reshape(n)
    if "timeouts" in arrays:
        timeouts = column("timeouts").astype(bool).reshape(n)
    elif max_episode_steps is not None:
        timeouts = synthesize_timeouts(terminals, max_episode_steps)
    else:
        timeouts = np.zeros(n, dtype=bool)
    ends = terminals | timeouts
    ends[-1] = True
    stored_next = "next_observations" in arrays
    # Rows cut by a timeout (or the end of data) have no next observation: drop them, as
    # qlearning_dataset does. A terminal row is kept; its own observation stands in for s'.
    drop = np.zeros(0, dtype=np.int64) if stored_next else np.flatnonzero(ends & ~terminals)
    if drop.size == n:
        raise EmptyDatasetError("timeouts: every episode is a single timed-out step")
    kept_terminals = _without_rows(terminals.copy(), drop)
    kept_ends = _without_rows(ends.copy(), drop)
    # The kept row before each dropped one (when in the same episode) now ends its episode.
    has_kept_row = (drop > 0) & ~ends[np.maximum(drop - 1, 0)]
    cut_rows = (drop - 1 - np.arange(drop.size))[has_kept_row]
    kept_ends[cut_rows] = True
    kept_ends[-1] = True
    new_terminals = kept_terminals & kept_ends

    raw = column("observations")
    if stored_next:
        obs, next_obs = raw, column("next_observations")
    else:
        # s' of a kept row is the following raw row: the next kept row within the episode, or
        # the dropped timeout row at its end.
        next_of_cut = raw[drop[has_kept_row]]
        obs = _without_rows(raw, drop)
        next_obs = np.empty_like(obs)
        next_obs[:-1] = obs[1:]
        next_obs[cut_rows] = next_of_cut
        terminal_rows = np.flatnonzero(new_terminals)
        next_obs[terminal_rows] = obs[terminal_rows]

    infos = {
        key.removeprefix("infos/"): _without_rows(column(key), drop)
        for key in arrays
        if key.startswith("infos/") and len(arrays[key]) == n
    }
    observations_out: np.ndarray | dict[str, np.ndarray] = obs
    next_out: np.ndarray | dict[str, np.ndarray] = next_obs
    if goal and "goal" in infos:
        goals = infos.pop("goal").astype(obs.dtype, copy=False)
        dims = (
            list(range(goals.shape[-1])) if achieved_goal_dims is None else list(achieved_goal_dims)
        )
        if len(dims) != goals.shape[-1]:
            raise DataError(
                f"achieved_goal_dims: {len(dims)} dimensions for a goal of size {goals.shape[-1]}"
            )
        # A contiguous range of dimensions is a strided copy, much faster than a gather.
        pick: slice | list[int] = (
            slice(dims[0], dims[-1] + 1) if dims == list(range(dims[0], dims[-1] + 1)) else dims
        )
        observations_out = {
            "observation": obs,
            "achieved_goal": np.ascontiguousarray(obs[:, pick]),
            "desired_goal": goals,
        }
        next_out = {
            "observation": next_obs,
            "achieved_goal": np.ascontiguousarray(next_obs[:, pick]),
            "desired_goal": goals,
        }
    return Trajectories(
        observations=observations_out,
        actions=_without_rows(column("actions"), drop),
        rewards=_without_rows(_flat(column("rewards"), "rewards", n), drop),
        terminals=new_terminals,
        timeouts=kept_ends & ~new_terminals,
        next_observations=next_out,
        episode_starts=episode_starts_from_ends(kept_ends),
        infos=infos,
        attrs={"source": source, "source_format": "d4rl"},
    )


def _flat(array: np.ndarray, name: str, n: int) -> np.ndarray:
    """``array`` as ``[n]``: D4RL writers store rewards as ``[N]`` or ``[N, 1]``."""
    if array.shape not in ((n,), (n, 1)):
        raise DataError(f"{name}: shape {array.shape}, expected ({n},) or ({n}, 1)")
    return array.reshape(n)


def _d4rl_time_limits(
    terminals: np.ndarray, n: int, max_episode_steps: int, terminate_on_end: bool
) -> np.ndarray:
    """The ``final_timestep`` flags of ``d4rl.qlearning_dataset`` for files without timeouts.

    Mirrors its step counter exactly, one iteration per episode rather than per row: the
    counter restarts at 0 after a skipped time-limit row and at 1 after a terminal (or a kept
    time-limit row, with ``terminate_on_end``).
    """
    final = np.zeros(max(n - 1, 0), dtype=bool)
    terminal_rows = np.flatnonzero(np.asarray(terminals[: n - 1], dtype=bool))
    row, step = 0, 0
    while row < n - 1:
        limit_row = row + (max_episode_steps - 1 - step) if step <= max_episode_steps - 1 else n
        k = np.searchsorted(terminal_rows, row)
        terminal_row = int(terminal_rows[k]) if k < len(terminal_rows) else n
        if limit_row <= terminal_row and limit_row < n - 1:
            final[limit_row] = True
            step = 1 if terminate_on_end else 0
            row = limit_row + 1
        elif terminal_row < n - 1:
            step = 1
            row = terminal_row + 1
        else:
            break
    return final


def qlearning_dataset(
    source: Mapping[str, np.ndarray] | str | os.PathLike[str],
    *,
    terminate_on_end: bool = False,
    max_episode_steps: int | None = None,
) -> dict[str, np.ndarray]:
    """The transitions ``d4rl.qlearning_dataset`` returns, computed without a per-row loop.

    Same rows, order and dtypes (float32 arrays, bool terminals): the file's last row is always
    dropped; time-limit rows are dropped unless ``terminate_on_end``; ``next_observations`` is
    the following row even across a terminal (D4RL's behaviour, kept for parity; use
    :func:`load_d4rl` for data that never crosses episodes). Files without ``timeouts`` need
    ``max_episode_steps`` (D4RL reads it from the environment).
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "dataset"
    arrays = read_d4rl_arrays(source) if isinstance(source, (str, os.PathLike)) else source
    try:
        n = check_columns(arrays, REQUIRED_KEYS, OPTIONAL_KEYS)
        if "timeouts" in arrays:
            final = np.asarray(arrays["timeouts"][: n - 1]).astype(bool)
        elif max_episode_steps is None:
            raise MissingKeyError(
                "missing key 'timeouts'; pass max_episode_steps to count episode steps instead"
            )
        else:
            final = _d4rl_time_limits(arrays["terminals"], n, max_episode_steps, terminate_on_end)
    except GcrlError as err:
        raise err.with_source(name) from None
    rows = np.arange(n - 1) if terminate_on_end else np.flatnonzero(~final)
    observations = np.asarray(arrays["observations"])
    return {
        "observations": observations[rows].astype(np.float32),
        "actions": np.asarray(arrays["actions"])[rows].astype(np.float32),
        "next_observations": observations[rows + 1].astype(np.float32),
        "rewards": np.asarray(arrays["rewards"])[rows].astype(np.float32),
        "terminals": np.asarray(arrays["terminals"])[rows].astype(bool),
    }


def _recognises(probe: SourceProbe) -> bool:
    return probe.is_hdf5 and {"observations", "actions"} <= probe.hdf5_keys


FORMAT = DatasetFormat(
    name="d4rl",
    kind="HDF5",
    signature="root keys 'observations' and 'actions'",
    recognises=_recognises,
    load=load_d4rl,
)
