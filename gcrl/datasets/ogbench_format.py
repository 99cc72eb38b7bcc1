"""OGBench ``.npz`` datasets, in both layouts.

* **Compact** (the files OGBench distributes): each trajectory stores its L states and L
  actions; ``terminals`` is 1 on its last state, whose action has no next state. Files that
  went through OGBench's ``compact_dataset=True`` also carry ``valids`` (0 on those last
  states), which then marks the boundaries. Row t of the result is
  ``(observations[t], actions[t], observations[t + 1])`` within a trajectory: L-1 transitions.
* **Regular** (with ``next_observations``): already one row per transition; ``terminals`` is 1
  on the last transition of each trajectory.

OGBench's ``terminals`` mark where a trajectory was cut, not an environment termination, so
by default they become ``timeouts`` here (``terminals_are_timeouts=False`` keeps them as
terminals). Other arrays with one entry per row (``qpos``, ``qvel``, ``rewards``, ``masks``,
...) are kept: ``rewards`` as rewards (zeros when absent, as in goal-conditioned datasets),
the rest as infos aligned with the row's observation.

:func:`write_ogbench` writes the compact layout, so that OGBench's own code
(``ogbench.utils.load_dataset``) trains on data made or converted by gcrl.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from gcrl.datasets.loading import DatasetFormat, SourceProbe
from gcrl.datasets.trajectories import (
    Observations,
    Trajectories,
    check_columns,
    episode_starts_from_ends,
)
from gcrl.errors import (
    DataError,
    DatasetNotFoundError,
    EmptyDatasetError,
    GcrlError,
    UnknownFormatError,
)
from gcrl.io import atomic_path

REQUIRED_KEYS = ("observations", "actions", "terminals")


def load_ogbench(
    path: str | os.PathLike[str], *, terminals_are_timeouts: bool = True
) -> Trajectories:
    """Load an OGBench npz file (compact or regular layout; detected from its keys)."""
    try:
        return _load(Path(path), terminals_are_timeouts)
    except GcrlError as err:
        raise err.with_source(path) from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DatasetNotFoundError("no such file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UnknownFormatError("not an npz file") from None
    arrays = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as err:  # numpy refuses pickles when allow_pickle is False
                if "allow_pickle" in str(err):
                    raise DataError(
                        f"{key}: an object array (pickled); gcrl never unpickles"
                    ) from None
                raise DataError(f"{key}: unreadable array ({err})") from None
    return arrays


def _load(path: Path, terminals_are_timeouts: bool) -> Trajectories:
    arrays = _read_npz(path)
    n = check_columns(arrays, REQUIRED_KEYS, ("next_observations", "valids"))

    observations = arrays.pop("observations")
    actions = arrays.pop("actions")
    raw_terminals = arrays.pop("terminals").astype(bool)
    if "next_observations" in arrays:
        layout = "regular"
        next_observations = arrays.pop("next_observations")
        ends = raw_terminals.copy()
        ends[-1] = True
        keep = np.arange(n)
        observations_out = observations
    else:
        layout = "compact"
        # The last state of each trajectory is only a next state.
        last_states = (arrays.pop("valids") == 0) if "valids" in arrays else raw_terminals.copy()
        last_states[-1] = True
        keep = np.flatnonzero(~last_states)
        if keep.size == 0:
            raise EmptyDatasetError("terminals: every trajectory is a single state")
        next_observations = observations[keep + 1]
        observations_out = observations[keep]
        ends = last_states[keep + 1]
    rewards = arrays.pop("rewards", np.zeros(n, dtype=np.float32))
    infos = {k: v[keep] for k, v in arrays.items() if v.ndim > 0 and len(v) == n}
    ends = ends.astype(bool)
    ends[-1] = True
    return Trajectories(
        observations=observations_out,
        actions=actions[keep],
        rewards=np.asarray(rewards)[keep],
        terminals=np.zeros(len(keep), dtype=bool) if terminals_are_timeouts else ends,
        timeouts=ends if terminals_are_timeouts else np.zeros(len(keep), dtype=bool),
        next_observations=next_observations,
        episode_starts=episode_starts_from_ends(ends),
        infos=infos,
        attrs={"source": str(path), "source_format": "ogbench", "ogbench_layout": layout},
    )


def write_ogbench(
    trajectories: Trajectories,
    path: str | os.PathLike[str],
    *,
    key: str = "observation",
    overwrite: bool = False,
) -> Path:
    """Write ``trajectories`` as an OGBench npz file in the compact layout OGBench distributes.

    Each episode of L rows becomes L + 1 states (its observations, then the last row's s') and
    L + 1 actions (the last one zeros: a final state has no action); ``terminals`` is 1 on the
    final state. Rewards, terminals-vs-timeouts, tasks and infos are not written: OGBench's
    goal-conditioned agents derive their rewards from the goals. ``key`` picks the dict
    observation to write (OGBench's goals are full states). Observations are float32, but uint8
    camera images stay uint8, as in OGBench's visual files.

    Returns the path written. Raises :class:`DataError` when a row's s' is not the next row's
    observation within its episode (the compact layout cannot hold such data).
    """
    observations = _pick(trajectories.observations, key)
    next_observations = _pick(trajectories.next_observations, key)
    n, ends = trajectories.num_transitions, trajectories.episode_ends
    inner = np.ones(n, dtype=bool)
    inner[ends - 1] = False
    rows = np.flatnonzero(inner)
    differ = next_observations[rows] != observations[rows + 1]
    same = ~differ.any(axis=tuple(range(1, differ.ndim)))
    if not same.all():
        bad = int(rows[np.argmin(same)])
        raise DataError(
            f"next_observations: row {bad}'s s' is not row {bad + 1}'s observation in the same "
            "episode; the compact OGBench layout needs contiguous episodes"
        )
    # Output state j: the rows in order, with each episode's final s' after its last row.
    is_final = np.zeros(n + len(ends), dtype=bool)
    is_final[ends + np.arange(len(ends))] = True
    order = np.empty(len(is_final), dtype=np.int64)
    order[~is_final] = np.arange(n)
    order[is_final] = ends - 1
    states = observations[order]
    states[is_final] = next_observations[ends - 1]
    actions = trajectories.actions[order]  # fancy indexing: a copy
    actions[is_final] = 0
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            # OGBench's visual files keep uint8 images (its loader's ob_dtype=np.uint8).
            observations=states if states.dtype == np.uint8 else states.astype(np.float32),
            actions=actions.astype(np.float32, copy=False),
            terminals=is_final.astype(np.float32),
        )
    return Path(path)


def _pick(observations: Observations, key: str) -> np.ndarray:
    if not isinstance(observations, dict):
        return observations
    if key not in observations:
        raise DataError(f"observations/{key}: no such key (have {', '.join(sorted(observations))})")
    return observations[key]


def _recognises(probe: SourceProbe) -> bool:
    return probe.is_zip


FORMAT = DatasetFormat(
    name="ogbench",
    kind="npz",
    signature="a zip archive of arrays",
    recognises=_recognises,
    load=load_ogbench,
)
