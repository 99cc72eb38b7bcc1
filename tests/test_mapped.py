"""Datasets larger than memory: memory-mapped native files, their cache, and training batches
drawn from them."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from gcrl.datasets import load, memory_mapped, save, write_ogbench
from gcrl.datasets.mapped import cache_dir_of
from gcrl.datasets.trajectories import Trajectories
from gcrl.errors import ConfigError, GcrlError
from gcrl.training import TrajectoryDataModule

from .training_data import goal_reaching, multitask_goal_reaching

torch.set_num_threads(1)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_rows(a: Trajectories, b: Trajectories) -> None:
    for f in fields(Trajectories):
        left, right = getattr(a, f.name), getattr(b, f.name)
        if f.name == "attrs":
            continue
        if isinstance(left, dict):
            assert left.keys() == right.keys(), f.name
            for key in left:
                np.testing.assert_array_equal(left[key], right[key], err_msg=f"{f.name}/{key}")
        elif isinstance(left, np.ndarray):
            np.testing.assert_array_equal(left, right, err_msg=f.name)
        else:
            assert left == right, f.name


def test_a_mapped_file_holds_the_same_rows_and_maps_its_columns(tmp_path: Path) -> None:
    path = multitask_goal_reaching(tmp_path / "m.hdf5")
    before = digest(path)
    cache = tmp_path / "cache"
    mapped = memory_mapped(path, cache)
    same_rows(mapped, load(path))
    assert isinstance(mapped.observations, dict)
    for column in (*mapped.observations.values(), mapped.actions):
        assert isinstance(column, np.memmap) and not column.flags.writeable
    assert digest(path) == before  # the source is only read
    assert [p.name for p in cache.iterdir()] == [cache_dir_of(path, cache).name]
    # A second call maps the same cache without writing it again.
    stamp = (cache_dir_of(path, cache) / "actions.npy").stat().st_mtime_ns
    same_rows(memory_mapped(path, cache), mapped)
    assert (cache_dir_of(path, cache) / "actions.npy").stat().st_mtime_ns == stamp


def test_a_rewritten_source_gets_a_new_cache(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=4, length=5, seed=0)
    cache = tmp_path / "cache"
    first = memory_mapped(path, cache)
    old = np.array(first.actions)
    stat = path.stat()
    goal_reaching(path, episodes=4, length=5, seed=1)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = memory_mapped(path, cache)
    assert not np.array_equal(np.asarray(again.actions), old)
    same_rows(again, load(path))


def test_only_native_files_map(tmp_path: Path) -> None:
    data = load(goal_reaching(tmp_path / "g.hdf5", episodes=3, length=4))
    npz = write_ogbench(data, tmp_path / "g.npz")
    with pytest.raises(GcrlError, match=r"g\.npz"):
        memory_mapped(npz, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_batches_from_a_mapped_file_equal_the_in_memory_ones(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=12, length=10)
    options = {"batch_size": 64, "steps_per_epoch": 4, "relabel": "ogbench", "normalize": True}
    in_memory = TrajectoryDataModule(str(path), **options)  # type: ignore[arg-type]
    mapped = TrajectoryDataModule(
        str(path),
        memory_map=True,
        memory_map_dir=str(tmp_path / "cache"),
        **options,  # type: ignore[arg-type]
    )
    assert isinstance(mapped.data.actions, np.memmap)
    assert mapped.device_data == "never"
    assert mapped.spec.observation_scale == in_memory.spec.observation_scale
    for a, b in zip(mapped.train_dataloader(), in_memory.train_dataloader(), strict=True):
        for name in ("observations", "actions", "rewards", "masks", "next_observations"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        for goal_set in a.goals:
            assert torch.equal(a.goals[goal_set], b.goals[goal_set]), goal_set


def test_options_that_copy_the_data_are_refused(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=4, length=5)
    with pytest.raises(ConfigError, match="val_fraction"):
        TrajectoryDataModule(str(path), memory_map=True, val_fraction=0.2)


def test_streaming_statistics_match_the_direct_ones() -> None:
    from gcrl.spec import Standardisation

    rng = np.random.default_rng(0)
    rows = rng.normal(3.0, 2.0, (1000, 4)) * np.array([1, 10, 0.1, 0])
    merged = Standardisation.of_blocks(rows[i : i + 77] for i in range(0, 1000, 77))
    np.testing.assert_allclose(merged.mean, rows.mean(axis=0), rtol=1e-6)
    direct_std = rows.std(axis=0)
    np.testing.assert_allclose(merged.std, np.where(direct_std > 1e-6, direct_std, 1), rtol=1e-5)
    assert merged.std[3] == 1.0  # a constant column


def test_a_mapped_dataset_saves_back_to_a_native_file(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=3, length=4)
    copy = save(memory_mapped(path, tmp_path / "cache"), tmp_path / "copy.hdf5")
    same_rows(load(copy), load(path))


#: A child that maps ``argv[1]`` into the cache ``argv[2]`` slowly (16 rows per copy), with
#: the signal handling of gcrl's commands: a bare KeyboardInterrupt that lands in one of
#: h5py's destructors is swallowed there, and the copy would run to its end.
SLOW_WRITER = """
import sys
from gcrl.datasets import mapped
from gcrl.io import interruptible
mapped.COPY_ROWS = 16
with interruptible():
    mapped.memory_mapped(sys.argv[1], sys.argv[2])
"""


def writing(cache: Path) -> list[Path]:
    """The temporary cache directories under ``cache`` (``.<key>.<pid>-<hex>.tmp``)."""
    return sorted(cache.glob(".*.tmp")) if cache.is_dir() else []


def start_slow_writer(path: Path, cache: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(path), str(cache)], stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not writing(cache) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writing(cache), "the writer never started"
    time.sleep(0.3)
    assert process.poll() is None, "the writer finished before it could be stopped"
    return process


@pytest.mark.parametrize("stop", ["SIGINT", "SIGKILL"])
def test_a_stopped_cache_writer_leaves_no_temporary_behind(tmp_path: Path, stop: str) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=200, length=500)
    cache = tmp_path / "cache"
    process = start_slow_writer(path, cache)
    process.send_signal(getattr(signal, stop))
    process.communicate(timeout=30)
    assert process.returncode != 0
    if stop == "SIGINT":  # the writer removes its own temporary
        assert writing(cache) == []
    else:  # a killed writer cannot; the next one removes it
        assert writing(cache)
    same_rows(memory_mapped(path, cache), load(path))
    assert writing(cache) == []
