from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from gcrl.datasets import NativeWriter, Task, concatenate, load, load_native, open_native, save
from gcrl.datasets.native_format import FORMAT_VERSION
from gcrl.errors import DataError, OutputExistsError, UnknownFormatError

from .conftest import make_trajectories


@pytest.mark.parametrize("goal", [False, True])
@pytest.mark.parametrize("compression", ["lzf", "gzip", "none"])
def test_round_trip_is_exact(tmp_path: Path, goal: bool, compression: str) -> None:
    t = concatenate(
        [make_trajectories([5, 1, 7], goal=goal), make_trajectories([4], goal=goal, seed=1)],
        tasks=[Task("a", "go to a"), Task("b", "go to b")],
    )
    path = save(t, tmp_path / "t.hdf5", compression=compression, attrs={"relabel_strategy": "none"})
    back = load(path)
    assert back.equals(t)
    assert back.tasks == (Task("a", "go to a"), Task("b", "go to b"))
    assert back.attrs["relabel_strategy"] == "none"
    with h5py.File(path) as f:
        assert f.attrs["format"] == "gcrl" and f.attrs["format_version"] == FORMAT_VERSION
        assert f["actions"].chunks is not None
        assert f["actions"].compression == (None if compression == "none" else compression)
        assert isinstance(f["observations"], h5py.Group) == goal


def test_streamed_reading_by_episode_chunks(tmp_path: Path) -> None:
    t = make_trajectories([5, 3, 7, 2, 9, 4], goal=True)
    path = save(t, tmp_path / "t.hdf5")
    with open_native(path) as reader:
        assert reader.num_transitions == 30
        chunks = list(reader.iter_chunks(max_rows=8))
        assert [c.num_episodes for c in chunks] == [2, 1, 1, 1, 1]  # 5+3, 7, 2 (+9 > 8), 9, 4
        assert concatenate(chunks).equals(t)
        assert reader.read_episodes(2, 4).equals(t.select_episodes([2, 3]))


def test_writer_appends_parts_with_tasks(tmp_path: Path) -> None:
    a, b = make_trajectories([3, 2]), make_trajectories([4], seed=1)
    with NativeWriter(tmp_path / "out.hdf5") as writer:
        writer.append(a, Task("a"))
        writer.append(b, Task("b", "bee"))
        writer.append(a, Task("a"))
    back = load_native(tmp_path / "out.hdf5")
    assert back.task_ids.tolist() == [0] * 5 + [1] * 4 + [0] * 5
    assert back.episode_starts.tolist() == [0, 3, 5, 9, 12]
    assert back.equals(concatenate([a, b, a], tasks=[Task("a"), Task("b", "bee"), Task("a")]))


def test_output_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "out.hdf5"
    with pytest.raises(DataError), NativeWriter(out) as writer:
        writer.append(make_trajectories([3]))
        writer.append(make_trajectories([3], goal=True))  # different columns: refused
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out.hdf5"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=str(out)):
        save(make_trajectories([3]), out)
    assert out.read_bytes() == b"precious"
    save(make_trajectories([3]), out, overwrite=True)
    assert load(out).num_transitions == 3


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = save(make_trajectories([3]), tmp_path / "t.hdf5")
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(UnknownFormatError, match="format_version"):
        load(path)


def test_infos_and_dtypes_survive(tmp_path: Path) -> None:
    t = make_trajectories([3, 4])
    back = load(save(t, tmp_path / "t.hdf5"))
    assert back.infos["success"].dtype == bool
    assert back.actions.dtype == np.float32
    assert np.array_equal(back.infos["qpos"], t.infos["qpos"])
