"""D4RL-format files the tests write: parity with the real ``d4rl`` helpers (the tests taking
the ``d4rl`` fixture, skipped without it) and the loader's own conversion rules."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcrl.datasets import load, load_d4rl, qlearning_dataset, save
from gcrl.datasets.d4rl_format import from_d4rl_arrays
from gcrl.errors import EmptyDatasetError


@pytest.fixture
def d4rl() -> Any:
    """The real ``d4rl`` package (its pure-Python helpers; scripts/setup.sh installs it, so
    a missing one fails the tests instead of skipping them)."""
    return importlib.import_module("d4rl")


def write_d4rl(
    path: Path,
    n: int,
    *,
    seed: int,
    timeouts: bool = True,
    goal: bool = False,
    next_observations: bool = False,
) -> dict[str, np.ndarray]:
    """A D4RL-style file: terminals mid-file, timeouts every 7 steps, obs[:, 0] = row index."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4))
    obs[:, 0] = np.arange(n)
    arrays = {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n),
        "terminals": rng.random(n) < 0.08,
        "infos/qpos": rng.normal(size=(n, 3)),
    }
    if timeouts:
        t = np.zeros(n, dtype=bool)
        t[6::7] = True
        arrays["timeouts"] = t & ~arrays["terminals"]
    if goal:
        arrays["infos/goal"] = np.repeat(rng.normal(size=(n // 5 + 1, 2)), 5, axis=0)[:n]
    if next_observations:
        arrays["next_observations"] = obs + 0.5
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
        f.create_dataset("metadata/algorithm", data="random")
    return arrays


@pytest.mark.parametrize("terminate_on_end", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qlearning_dataset_matches_d4rl_with_timeouts(
    d4rl: Any, tmp_path: Path, terminate_on_end: bool, seed: int
) -> None:
    arrays = write_d4rl(tmp_path / "d.hdf5", 200, seed=seed)
    assert arrays["terminals"][:-1].any() and arrays["timeouts"].any()
    expected = d4rl.qlearning_dataset(None, dataset=arrays, terminate_on_end=terminate_on_end)
    ours = qlearning_dataset(tmp_path / "d.hdf5", terminate_on_end=terminate_on_end)
    assert ours.keys() == expected.keys()
    for key in expected:
        assert ours[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(ours[key], expected[key], err_msg=key)


@pytest.mark.parametrize("terminate_on_end", [False, True])
@pytest.mark.parametrize(("seed", "max_steps"), [(0, 7), (1, 10), (2, 2), (3, 3)])
def test_qlearning_dataset_matches_d4rl_without_timeouts(
    d4rl: Any, tmp_path: Path, terminate_on_end: bool, seed: int, max_steps: int
) -> None:
    arrays = write_d4rl(tmp_path / "d.hdf5", 150, seed=seed, timeouts=False)
    env = SimpleNamespace(_max_episode_steps=max_steps)
    expected = d4rl.qlearning_dataset(env, dataset=arrays, terminate_on_end=terminate_on_end)
    ours = qlearning_dataset(
        tmp_path / "d.hdf5", terminate_on_end=terminate_on_end, max_episode_steps=max_steps
    )
    for key in expected:
        np.testing.assert_array_equal(ours[key], expected[key], err_msg=key)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_episodes_split_as_sequence_dataset(d4rl: Any, tmp_path: Path, seed: int) -> None:
    arrays = write_d4rl(tmp_path / "d.hdf5", 200, seed=seed)
    episodes = list(d4rl.sequence_dataset(None, dataset=arrays))
    t = load(tmp_path / "d.hdf5")
    assert t.attrs["source_format"] == "d4rl"
    complete = [e for e in episodes if len(e["rewards"]) > (0 if e["terminals"][-1] else 1)]
    assert t.num_episodes >= len(complete)
    for ours, theirs in zip(t.episodes(), complete, strict=False):
        # Rows without a next observation (a timed-out last row) are dropped, as qlearning does.
        keep = len(theirs["rewards"]) - (0 if theirs["terminals"][-1] else 1)
        np.testing.assert_array_equal(ours.observations, theirs["observations"][:keep])
        np.testing.assert_array_equal(ours.actions, theirs["actions"][:keep])
        np.testing.assert_array_equal(ours.rewards, theirs["rewards"][:keep].astype(np.float32))
        assert ours.terminals[-1] == bool(theirs["terminals"][-1])
        assert ours.timeouts[-1] == (not theirs["terminals"][-1])


def test_next_observations_stay_in_their_episode(tmp_path: Path) -> None:
    write_d4rl(tmp_path / "d.hdf5", 300, seed=3)
    t = load(tmp_path / "d.hdf5")
    row = t.observations[:, 0]
    nxt = t.next_observations[:, 0]
    last = np.zeros(len(t), dtype=bool)
    last[t.episode_ends - 1] = True
    assert np.array_equal(nxt[~last], row[~last] + 1)
    # A terminal row has no stored successor: its own observation stands in (never the next
    # episode's first).
    assert np.array_equal(nxt[t.terminals], row[t.terminals])
    assert np.all(nxt[t.timeouts] == row[t.timeouts] + 1)
    assert not (t.terminals & t.timeouts).any()


def test_stored_next_observations_are_used(tmp_path: Path) -> None:
    arrays = write_d4rl(tmp_path / "d.hdf5", 60, seed=4, next_observations=True)
    t = load(tmp_path / "d.hdf5")
    assert t.num_transitions == 60
    np.testing.assert_array_equal(t.next_observations, arrays["next_observations"])


def test_files_without_timeouts(tmp_path: Path) -> None:
    arrays = write_d4rl(tmp_path / "d.hdf5", 100, seed=5, timeouts=False)
    t = load(tmp_path / "d.hdf5")
    assert t.num_episodes == int(arrays["terminals"][:-1].sum()) + 1
    # Only the end of the data is cut (unless the file happens to end on a terminal).
    assert t.timeouts.sum() == (0 if arrays["terminals"][-1] else 1)
    limited = load_d4rl(tmp_path / "d.hdf5", max_episode_steps=5)
    assert limited.episode_lengths.max() <= 5
    assert limited.num_episodes > t.num_episodes


def test_infos_goal_becomes_the_goal(tmp_path: Path) -> None:
    arrays = write_d4rl(tmp_path / "d.hdf5", 80, seed=6, goal=True)
    t = load(tmp_path / "d.hdf5")
    assert t.is_goal_conditioned and "goal" not in t.infos
    rows = t.observations["observation"][:, 0].astype(int)
    np.testing.assert_array_equal(t.observations["desired_goal"], arrays["infos/goal"][rows])
    np.testing.assert_array_equal(t.next_observations["desired_goal"], arrays["infos/goal"][rows])
    np.testing.assert_array_equal(t.observations["achieved_goal"], arrays["observations"][rows, :2])
    np.testing.assert_array_equal(t.infos["qpos"], arrays["infos/qpos"][rows])
    other = load_d4rl(tmp_path / "d.hdf5", achieved_goal_dims=[2, 3])
    np.testing.assert_array_equal(
        other.observations["achieved_goal"], arrays["observations"][rows, 2:]
    )
    assert not load_d4rl(tmp_path / "d.hdf5", goal=False).is_goal_conditioned


def test_round_trip_through_native(tmp_path: Path) -> None:
    write_d4rl(tmp_path / "d.hdf5", 120, seed=7, goal=True)
    t = load(tmp_path / "d.hdf5")
    assert load(save(t, tmp_path / "n.hdf5")).equals(t)


def reference_conversion(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A plain loop over episodes stating the documented conversion."""
    n = len(arrays["rewards"])
    terminals, timeouts = arrays["terminals"], arrays["timeouts"]
    out: dict[str, list] = {k: [] for k in ("obs", "next", "actions", "terminals", "timeouts")}
    start = 0
    for row in range(n):
        if not (terminals[row] or timeouts[row] or row == n - 1):
            continue
        last = row if terminals[row] else row - 1  # a cut last row has no s': dropped
        for i in range(start, last + 1):
            out["obs"].append(arrays["observations"][i])
            out["next"].append(arrays["observations"][i + 1 if i < row else i])
            out["actions"].append(arrays["actions"][i])
            out["terminals"].append(i == last and bool(terminals[row]))
            out["timeouts"].append(i == last and not terminals[row])
        start = row + 1
    return {k: np.array(v) for k, v in out.items()}


@settings(max_examples=150, deadline=None)
@given(
    flags=st.lists(st.sampled_from(["", "", "", "T", "O", "TO"]), min_size=1, max_size=40),
)
def test_conversion_matches_the_documented_loop(flags: list[str]) -> None:
    n = len(flags)
    arrays = {
        "observations": np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 2)),
        "actions": np.arange(n, dtype=np.float32)[:, None],
        "rewards": np.zeros(n),
        "terminals": np.array(["T" in f for f in flags]),
        "timeouts": np.array(["O" in f for f in flags]),
    }
    expected = reference_conversion(arrays)
    if len(expected["obs"]) == 0:
        with pytest.raises(EmptyDatasetError):
            from_d4rl_arrays(arrays)
        return
    before = {k: v.copy() for k, v in arrays.items()}
    t = from_d4rl_arrays(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, before[k])  # inputs untouched
    np.testing.assert_array_equal(t.observations, expected["obs"])
    np.testing.assert_array_equal(t.next_observations, expected["next"])
    np.testing.assert_array_equal(t.actions, expected["actions"])
    np.testing.assert_array_equal(t.terminals, expected["terminals"])
    np.testing.assert_array_equal(t.timeouts, expected["timeouts"])
