"""OGBench npz files, checked against ``ogbench.utils.load_dataset`` itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import ogbench.utils as ogbench_utils
import pytest

from gcrl.datasets import load, load_ogbench, save, write_ogbench
from gcrl.errors import DataError, OutputExistsError


def write_raw(path: Path, lengths: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    """An npz as OGBench distributes it: L states and actions per trajectory, terminal last."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    observations = rng.normal(size=(n, 5)).astype(np.float32)
    observations[:, 0] = np.repeat(np.arange(len(lengths)), lengths)
    observations[:, 1] = np.concatenate([np.arange(length) for length in lengths])
    terminals = np.zeros(n, dtype=np.float32)
    terminals[np.cumsum(lengths) - 1] = 1
    arrays = {
        "observations": observations,
        "actions": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        "terminals": terminals,
        "qpos": rng.normal(size=(n, 3)),
    }
    np.savez(path, **arrays)
    return arrays


def test_compact_file_matches_ogbench_regular_dataset(tmp_path: Path) -> None:
    write_raw(tmp_path / "raw.npz", [6, 2, 9, 4])
    reference = ogbench_utils.load_dataset(str(tmp_path / "raw.npz"))
    t = load(tmp_path / "raw.npz")
    assert t.attrs["source_format"] == "ogbench" and t.attrs["ogbench_layout"] == "compact"
    np.testing.assert_array_equal(t.observations, reference["observations"])
    np.testing.assert_array_equal(t.next_observations, reference["next_observations"])
    np.testing.assert_array_equal(t.actions, reference["actions"])
    # OGBench's terminals mark cut trajectories: they are timeouts here.
    np.testing.assert_array_equal(t.timeouts, reference["terminals"].astype(bool))
    assert not t.terminals.any()
    assert t.episode_lengths.tolist() == [5, 1, 8, 3]
    # Alignment: next observation is the following state of the same trajectory.
    assert np.array_equal(t.next_observations[:, 0], t.observations[:, 0])
    assert np.array_equal(t.next_observations[:, 1], t.observations[:, 1] + 1)


def test_processed_layouts_load_the_same(tmp_path: Path) -> None:
    write_raw(tmp_path / "raw.npz", [3, 7, 5])
    expected = load(tmp_path / "raw.npz")
    regular = ogbench_utils.load_dataset(str(tmp_path / "raw.npz"))
    np.savez(tmp_path / "regular.npz", **regular)
    compact = ogbench_utils.load_dataset(str(tmp_path / "raw.npz"), compact_dataset=True)
    np.savez(tmp_path / "compact.npz", **compact)
    from_regular = load(tmp_path / "regular.npz")
    assert from_regular.attrs["ogbench_layout"] == "regular"
    for other in (from_regular, load(tmp_path / "compact.npz")):
        np.testing.assert_array_equal(other.observations, expected.observations)
        np.testing.assert_array_equal(other.next_observations, expected.next_observations)
        np.testing.assert_array_equal(other.timeouts, expected.timeouts)
        np.testing.assert_array_equal(other.episode_starts, expected.episode_starts)


def test_extras_become_infos_aligned_with_the_state(tmp_path: Path) -> None:
    arrays = write_raw(tmp_path / "raw.npz", [4, 4])
    t = load(tmp_path / "raw.npz")
    keep = np.array([0, 1, 2, 4, 5, 6])
    np.testing.assert_array_equal(t.infos["qpos"], arrays["qpos"][keep])
    assert np.all(t.rewards == 0)


def test_terminals_can_stay_terminals(tmp_path: Path) -> None:
    write_raw(tmp_path / "raw.npz", [4, 4])
    t = load_ogbench(tmp_path / "raw.npz", terminals_are_timeouts=False)
    assert t.terminals.tolist() == [False, False, True] * 2 and not t.timeouts.any()


def test_round_trip_through_native(tmp_path: Path) -> None:
    write_raw(tmp_path / "raw.npz", [5, 8, 3])
    t = load(tmp_path / "raw.npz")
    assert load(save(t, tmp_path / "n.hdf5")).equals(t)


def test_write_ogbench_is_read_back_by_ogbench(tmp_path: Path) -> None:
    write_raw(tmp_path / "raw.npz", [6, 2, 9, 4])
    t = load(tmp_path / "raw.npz")
    out = write_ogbench(t, tmp_path / "out.npz")
    assert not list(tmp_path.glob(".*.tmp"))
    reference = ogbench_utils.load_dataset(str(out))  # OGBench's own reader, regular layout
    np.testing.assert_array_equal(reference["observations"], t.observations)
    np.testing.assert_array_equal(reference["next_observations"], t.next_observations)
    np.testing.assert_array_equal(reference["actions"], t.actions)
    np.testing.assert_array_equal(reference["terminals"].astype(bool), t.timeouts)
    compact = ogbench_utils.load_dataset(str(out), compact_dataset=True)
    # One valid state fewer per trajectory than stored states: each final state is only an s'.
    assert int(compact["valids"].sum()) == t.num_transitions == len(compact["valids"]) - 4
    assert load(out).episode_lengths.tolist() == t.episode_lengths.tolist()


def test_write_ogbench_takes_a_dict_key_and_refuses_gaps(tmp_path: Path) -> None:
    write_raw(tmp_path / "raw.npz", [5, 3])
    t = load(tmp_path / "raw.npz")
    as_dict = dataclasses.replace(
        t,
        observations={"observation": t.observations, "desired_goal": t.observations[:, :2]},
        next_observations={
            "observation": t.next_observations,
            "desired_goal": t.next_observations[:, :2],
        },
    )
    written = ogbench_utils.load_dataset(str(write_ogbench(as_dict, tmp_path / "d.npz")))
    np.testing.assert_array_equal(written["observations"], t.observations)
    with pytest.raises(DataError, match="observations/state: no such key"):
        write_ogbench(as_dict, tmp_path / "e.npz", key="state")
    broken = t.next_observations.copy()
    broken[1] += 1.0  # row 1's s' is no longer row 2's s
    with pytest.raises(DataError, match="row 1's s'"):
        write_ogbench(dataclasses.replace(t, next_observations=broken), tmp_path / "f.npz")
    assert not (tmp_path / "f.npz").exists()
    with pytest.raises(OutputExistsError, match="output exists"):
        write_ogbench(t, tmp_path / "d.npz")
