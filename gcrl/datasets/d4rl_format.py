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

import os
from collections.abc import Mapping, Sequence

import h5py
import numpy as np

from gcrl.datasets.trajectories import Trajectories, episode_starts_from_ends
from gcrl.errors import (
    DataError,
    EmptyDatasetError,
    GcrlError,
    LengthMismatchError,
    MissingKeyError,
)

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")


def read_d4rl_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every dataset of a D4RL-format file by its path (``infos/qpos``), ``metadata/*`` excluded."""
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and not name.startswith("metadata"):
                arrays[name] = obj[()]

        f.visititems(visit)
    return arrays


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> int:
    for key in REQUIRED_KEYS:
        if key not in arrays:
            raise MissingKeyError(f"missing key {key!r}")
    n = len(arrays["actions"])
    if n == 0:
        raise EmptyDatasetError("actions: the dataset holds no transition")
    for key in (*REQUIRED_KEYS, "timeouts", "next_observations"):
        if key in arrays and len(arrays[key]) != n:
            raise LengthMismatchError(f"{key}: {len(arrays[key])} rows, expected {n} (as actions)")
    return n


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
    try:
        return from_d4rl_arrays(
            read_d4rl_arrays(path),
            max_episode_steps=max_episode_steps,
            goal=goal,
            achieved_goal_dims=achieved_goal_dims,
            source=str(path),
        )
    except GcrlError as err:
        raise err.with_source(path) from None


def from_d4rl_arrays(
    arrays: Mapping[str, np.ndarray],
    *,
    max_episode_steps: int | None = None,
    goal: bool = True,
    achieved_goal_dims: Sequence[int] | None = None,
    source: str = "",
) -> Trajectories:
    """:func:`load_d4rl` on arrays already in memory (a dict as ``env.get_dataset()`` returns)."""
    n = _check_arrays(arrays)
    terminals = np.asarray(arrays["terminals"]).astype(bool)
    if "timeouts" in arrays:
        timeouts = np.asarray(arrays["timeouts"]).astype(bool)
    elif max_episode_steps is not None:
        timeouts = synthesize_timeouts(terminals, max_episode_steps)
    else:
        timeouts = np.zeros(n, dtype=bool)
    ends = terminals | timeouts
    ends[-1] = True
    observations = np.asarray(arrays["observations"])

    if "next_observations" in arrays:
        keep = np.arange(n)
        next_rows = None
    else:
        # Rows whose episode was cut have no next observation: drop them (as qlearning_dataset).
        keep = np.flatnonzero(~(ends & ~terminals))
        if keep.size == 0:
            raise EmptyDatasetError("timeouts: every episode is a single timed-out step")
        next_rows = np.where(terminals[keep], keep, keep + 1)
    episode_of_row = np.concatenate([[0], np.cumsum(ends)[:-1]])[keep]
    new_ends = np.append(episode_of_row[1:] != episode_of_row[:-1], True)
    new_terminals = terminals[keep] & new_ends

    obs = observations[keep]
    next_obs = arrays["next_observations"] if next_rows is None else observations[next_rows]
    infos = {
        key.removeprefix("infos/"): np.asarray(value)[keep]
        for key, value in arrays.items()
        if key.startswith("infos/") and len(value) == n
    }
    observations_out: np.ndarray | dict[str, np.ndarray] = obs
    next_out: np.ndarray | dict[str, np.ndarray] = next_obs
    if goal and "goal" in infos:
        goals = infos.pop("goal")
        dims = list(range(goals.shape[-1])) if achieved_goal_dims is None else list(achieved_goal_dims)
        if len(dims) != goals.shape[-1]:
            raise DataError(
                f"achieved_goal_dims: {len(dims)} dimensions for a goal of size {goals.shape[-1]}"
            )
        goals = goals.astype(obs.dtype, copy=False)
        observations_out = {"observation": obs, "achieved_goal": obs[:, dims], "desired_goal": goals}
        next_out = {
            "observation": next_obs,
            "achieved_goal": next_obs[:, dims],
            "desired_goal": goals,
        }
    return Trajectories(
        observations=observations_out,
        actions=np.asarray(arrays["actions"])[keep],
        rewards=np.asarray(arrays["rewards"]).reshape(n)[keep],
        terminals=new_terminals,
        timeouts=new_ends & ~new_terminals,
        next_observations=next_out,
        episode_starts=episode_starts_from_ends(new_ends),
        infos=infos,
        attrs={"source": source, "source_format": "d4rl"},
    )


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
        n = _check_arrays(arrays)
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


def is_d4rl(file: h5py.File) -> bool:
    """True when an open HDF5 file has D4RL's root keys."""
    return all(key in file for key in ("observations", "actions"))


