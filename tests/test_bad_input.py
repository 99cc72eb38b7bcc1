"""Bad input: one clear line naming the file and key, a specific exception, exit code 2,
and no output left behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from gcrl.cli.main import main
from gcrl.datasets import load, save
from gcrl.errors import (
    DatasetNotFoundError,
    EmptyDatasetError,
    EmptyEpisodeError,
    GcrlError,
    LengthMismatchError,
    MissingKeyError,
    NonFiniteError,
    OutputExistsError,
    UnknownFormatError,
)

from .conftest import create_pointmaze_minari, make_trajectories


def d4rl_file(path: Path, n: int = 20, **change: np.ndarray | None) -> Path:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray | None] = {
        "observations": rng.normal(size=(n, 3)),
        "actions": rng.normal(size=(n, 2)),
        "rewards": rng.normal(size=n),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": np.arange(n) % 5 == 4,
    }
    arrays.update(change)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is not None:
                f.create_dataset(key, data=value)
    return path


def nan_at(shape: tuple[int, ...]) -> np.ndarray:
    array = np.zeros(shape)
    array[3, 0] = np.nan
    return array


def native_with_empty_episode(path: Path) -> Path:
    save(make_trajectories([3, 4]), path)
    with h5py.File(path, "a") as f:
        del f["episode_starts"]
        f["episode_starts"] = np.array([0, 3, 3])
    return path


def npz_without_terminals(path: Path) -> Path:
    np.savez(path, observations=np.zeros((4, 2)), actions=np.zeros((4, 1)))
    return path


def minari_with(path: Path, edit: Callable[[h5py.Group], None]) -> Path:
    create_pointmaze_minari("test/broken-v0", 3, max_steps=6)
    with h5py.File(path / "test" / "broken-v0" / "data" / "main_data.hdf5", "a") as f:
        edit(f["episode_1"])
    return path / "test" / "broken-v0"


def empty_minari_episode(group: h5py.Group) -> None:
    for key in ("actions", "rewards", "terminations", "truncations"):
        data = group[key][()]
        del group[key]
        group[key] = data[:0]
    for key in list(group["observations"]):
        data = group["observations"][key][()]
        del group["observations"][key]
        group["observations"][key] = data[:1]


def short_minari_observations(group: h5py.Group) -> None:
    data = group["observations/observation"][()]
    del group["observations/observation"]
    group["observations/observation"] = data[:-1]


CASES: dict[str, tuple[Callable[[Path], Path], type[GcrlError], str]] = {
    "missing file": (lambda d: d / "nope.hdf5", DatasetNotFoundError, "no such file"),
    "not hdf5 or npz": (
        lambda d: (d / "notes.hdf5").write_text("hello") and d / "notes.hdf5",  # type: ignore[func-returns-value]
        UnknownFormatError,
        "not an HDF5, npz",
    ),
    "hdf5 of another kind": (
        lambda d: d4rl_file(d / "x.hdf5", observations=None),
        UnknownFormatError,
        "observations",
    ),
    "d4rl missing rewards": (
        lambda d: d4rl_file(d / "x.hdf5", rewards=None),
        MissingKeyError,
        "'rewards'",
    ),
    "d4rl mismatched lengths": (
        lambda d: d4rl_file(d / "x.hdf5", rewards=np.zeros(19)),
        LengthMismatchError,
        "rewards",
    ),
    "d4rl empty": (lambda d: d4rl_file(d / "x.hdf5", n=0), EmptyDatasetError, "actions"),
    "d4rl nan observations": (
        lambda d: d4rl_file(d / "x.hdf5", observations=nan_at((20, 3))),
        NonFiniteError,
        "observations",
    ),
    "d4rl nan actions": (
        lambda d: d4rl_file(d / "x.hdf5", actions=nan_at((20, 2))),
        NonFiniteError,
        "actions",
    ),
    "native zero-length episode": (
        lambda d: native_with_empty_episode(d / "x.hdf5"),
        EmptyEpisodeError,
        "episode_starts",
    ),
    "npz missing terminals": (
        lambda d: npz_without_terminals(d / "x.npz"),
        MissingKeyError,
        "'terminals'",
    ),
    "minari zero-length episode": (
        lambda d: minari_with(d, empty_minari_episode),
        EmptyEpisodeError,
        "episode_1",
    ),
    "minari observations not T+1": (
        lambda d: minari_with(d, short_minari_observations),
        LengthMismatchError,
        "episode_1/observations/observation",
    ),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def bad_source(
    request: pytest.FixtureRequest, tmp_path: Path, minari_root: Path
) -> tuple[Path, type[GcrlError], str]:
    make, error, key = CASES[request.param]
    inputs = minari_root if "minari" in request.param else tmp_path / "in"
    inputs.mkdir(exist_ok=True)
    return make(inputs), error, key


def test_api_raises_specific_error(bad_source: tuple[Path, type[GcrlError], str]) -> None:
    source, error, key = bad_source
    with pytest.raises(error) as info:
        load(source)
    message = str(info.value)
    assert "\n" not in message
    assert str(source) in message and key in message


@pytest.mark.parametrize("command", ["info", "convert"])
def test_cli_prints_one_line_and_exits_2(
    bad_source: tuple[Path, type[GcrlError], str],
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, _, key = bad_source
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [command, str(source)] + ([str(out_dir / "out.hdf5")] if command == "convert" else [])
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert str(source) in lines[0] and key in lines[0]
    assert captured.out == ""
    assert list(out_dir.iterdir()) == []  # no partial output, no temporary file


def test_existing_output_is_refused_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = d4rl_file(tmp_path / "in.hdf5")
    out = tmp_path / "out.hdf5"
    out.write_bytes(b"keep me")
    assert main(["convert", str(source), str(out)]) == 2
    assert str(out) in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    with pytest.raises(OutputExistsError):
        save(load(source), out)
    assert main(["convert", str(source), str(out), "--force"]) == 0
    assert load(out).num_transitions == 16


def test_inputs_are_never_modified(tmp_path: Path) -> None:
    source = d4rl_file(tmp_path / "in.hdf5")
    before = source.read_bytes()
    assert main(["convert", str(source), str(tmp_path / "out.hdf5")]) == 0
    assert main(["info", str(source)]) == 0
    assert source.read_bytes() == before


def test_unknown_format_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = d4rl_file(tmp_path / "in.hdf5")
    with pytest.raises(UnknownFormatError, match="format"):
        load(source, format="parquet")
    assert main(["info", str(source), "--format", "parquet"]) == 2
    assert "--format" in capsys.readouterr().err


def test_inputs_that_would_hang_or_mislead_and_options_that_cannot_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO, a symlink loop, --chunk-rows 0, two high-reward rules, one task named for two
    sources, and an evaluation output in a missing directory: each one line, exit 2, checked
    before any work."""
    import os

    source = save(make_trajectories([4, 5], goal=True), tmp_path / "g.hdf5")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.hdf5"
    loop.symlink_to(tmp_path / "loop.hdf5")
    out = str(tmp_path / "out.hdf5")
    relabel = ["relabel", str(source), out]
    cases = [
        (["info", str(fifo)], "not a regular file or directory"),
        (["info", str(loop)], "a symlink loop"),
        ([*relabel, "--strategy", "future", "--chunk-rows", "0"], "--chunk-rows: must be >= 1"),
        (
            [*relabel, "--strategy", "high-reward", "--top-k", "1", "--temperature", "1"],
            "one of them",
        ),
        (["convert", str(source), str(source), out, "--task", "a", "--task", "a"], "'a' names"),
        ([*relabel, "--strategy", "future", "--k", "1000000000000"], "GiB are free; lower --k"),
        (
            ["evaluate", str(source), "--env", "pointmaze-medium", "--json", "/nonexistent/x.json"],
            "--json /nonexistent/x.json: directory /nonexistent does not exist",
        ),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (args, err)
    assert not (tmp_path / "out.hdf5").exists()
