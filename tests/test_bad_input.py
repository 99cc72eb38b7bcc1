"""Bad input: one clear line naming the file and key, a specific exception, exit code 2,
and no output left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from gcrl.cli.main import main
from gcrl.datasets import Task, load, save
from gcrl.datasets.trajectories import replace_fields
from gcrl.errors import (
    DataError,
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


def native_file(path: Path, tasks: int = 1) -> Path:
    """A native file of two episodes, labelled with ``tasks`` tasks (one per episode)."""
    data = make_trajectories([6, 7], task=0)
    if tasks == 2:
        data = replace_fields(
            data,
            task_ids=np.repeat([0, 1], [6, 7]),
            tasks=(Task("task0", "do task 0"), Task("task1", "do task 1")),
        )
    return save(data, path)


def native_with(path: Path, edit: Callable[[h5py.File], None], tasks: int = 1) -> Path:
    native_file(path, tasks)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def replace_dataset(f: h5py.File, key: str, value: np.ndarray) -> None:
    del f[key]
    f[key] = value


def truncated(path: Path) -> Path:
    native_file(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def overwritten_metadata(path: Path) -> Path:
    """Random bytes over the object headers just after the superblock: the file opens (or
    not) but its groups cannot be read."""
    native_file(path)
    data = bytearray(path.read_bytes())
    data[96:4096] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def compound(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=[("x", "f4"), ("y", "f4")])


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
    "truncated hdf5": (lambda d: truncated(d / "x.hdf5"), GcrlError, "unreadable"),
    "hdf5 with random bytes in its metadata": (
        lambda d: overwritten_metadata(d / "x.hdf5"),
        GcrlError,
        "unreadable",
    ),
    "d4rl scalar actions": (
        lambda d: d4rl_file(d / "x.hdf5", actions=np.float64(1.0)),
        LengthMismatchError,
        "actions: a scalar",
    ),
    "d4rl 2-d rewards": (
        lambda d: d4rl_file(d / "x.hdf5", rewards=np.zeros((20, 2))),
        DataError,
        "rewards: shape (20, 2)",
    ),
    "d4rl nan rewards": (
        lambda d: d4rl_file(d / "x.hdf5", rewards=nan_at((20, 1)).ravel()),
        NonFiniteError,
        "rewards",
    ),
    "d4rl complex observations": (
        lambda d: d4rl_file(d / "x.hdf5", observations=np.zeros((20, 3), dtype=complex)),
        DataError,
        "observations: dtype complex128",
    ),
    "d4rl compound actions": (
        lambda d: d4rl_file(d / "x.hdf5", actions=compound((20,))),
        DataError,
        "actions: dtype",
    ),
    "native version not a number": (
        lambda d: native_with(d / "x.hdf5", lambda f: f.attrs.__setitem__("format_version", "x")),
        UnknownFormatError,
        "format_version 'x'",
    ),
    "native version too new": (
        lambda d: native_with(d / "x.hdf5", lambda f: f.attrs.__setitem__("format_version", 99)),
        UnknownFormatError,
        "format_version 99",
    ),
    "native task ids of the wrong length": (
        lambda d: native_with(
            d / "x.hdf5", lambda f: replace_dataset(f, "task_ids", np.zeros(5, dtype=np.int64))
        ),
        LengthMismatchError,
        "task_ids: shape (5,)",
    ),
    "native task ids out of range": (
        lambda d: native_with(
            d / "x.hdf5", lambda f: replace_dataset(f, "task_ids", np.full(13, 4, dtype=np.int64))
        ),
        DataError,
        "task_ids: values must lie in [0, 1)",
    ),
    "native duplicate task names": (
        lambda d: native_with(
            d / "x.hdf5",
            lambda f: replace_dataset(f, "tasks/names", np.array([b"same", b"same"], dtype=object)),
            tasks=2,
        ),
        DataError,
        "'same' appears more than once",
    ),
    "native nan rewards": (
        lambda d: native_with(
            d / "x.hdf5", lambda f: replace_dataset(f, "rewards", np.full(13, np.nan, "f4"))
        ),
        NonFiniteError,
        "rewards",
    ),
    "npz holding a scalar": (
        lambda d: (
            np.savez(
                d / "x.npz",
                observations=np.float64(3),
                actions=np.zeros((4, 1)),
                terminals=np.ones(4),
            )
            or d / "x.npz"
        ),
        LengthMismatchError,
        "observations: a scalar",
    ),
    "npz holding a pickled object array": (
        lambda d: (
            np.savez(
                d / "x.npz",
                observations=np.array([{"a": 1}] * 4, dtype=object),
                actions=np.zeros((4, 1)),
                terminals=np.ones(4),
            )
            or d / "x.npz"
        ),
        DataError,
        "observations: an object array (pickled)",
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


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_a_format_that_cannot_read_the_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = npz_without_terminals(tmp_path / "x.npz")
    with pytest.raises(UnknownFormatError, match="format d4rl reads HDF5 files"):
        load(source, format="d4rl")
    assert main(["info", str(source), "--format", "d4rl"]) == 2
    assert "--format d4rl reads HDF5 files" in one_line(capsys.readouterr().err)


def test_outputs_that_cannot_be_written_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = native_file(tmp_path / "in.hdf5")
    directory = tmp_path / "a-directory"
    directory.mkdir()
    for command in (["convert"], ["relabel", "--strategy", "future"]):
        args = [command[0], str(source), str(directory), *command[1:]]
        assert main(args) == 2
        assert "is not a regular file" in one_line(capsys.readouterr().err)
        assert main([*args, "--force"]) == 2
        assert "is not a regular file" in one_line(capsys.readouterr().err)
    assert directory.is_dir() and not any(directory.iterdir())


def as_nobody(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``gcrl ARGS`` as an unprivileged user (root reads and writes everything)."""
    command = [str(Path(sys.executable).with_name("gcrl")), *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop privileges")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_unreadable_inputs_and_read_only_directories() -> None:
    # Not under pytest's tmp_path: its parent is private to the user running the tests.
    with tempfile.TemporaryDirectory() as name:
        check_unreadable_and_read_only(Path(name))


def check_unreadable_and_read_only(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    source = native_file(tmp_path / "in.hdf5")
    source.chmod(0o644)
    locked = tmp_path / "locked.hdf5"
    locked.write_bytes(source.read_bytes())
    locked.chmod(0)
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    read_only.chmod(0o555)
    result = as_nobody(["info", str(locked)])
    assert result.returncode == 2
    assert f"{locked}: permission denied" in one_line(result.stderr)
    result = as_nobody(["convert", str(source), str(read_only / "out.hdf5")])
    assert result.returncode == 2
    assert f"cannot write in {read_only}" in one_line(result.stderr)
    assert list(read_only.iterdir()) == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-step BC checkpoint on 3-d array observations, and its data."""
    from gcrl.algorithms import BC
    from gcrl.training import TrajectoryDataModule

    from .training_data import fit

    directory = tmp_path_factory.mktemp("trained")
    data = native_file(directory / "data.hdf5")
    dm = TrajectoryDataModule(str(data), batch_size=4, relabel="none")
    trainer = fit(BC(spec=dm.spec, hidden_dims=[8]), dm, 2, default_root_dir=directory)
    trainer.save_checkpoint(directory / "bc.ckpt")
    wider = save(make_trajectories([6, 7], obs_dim=4), directory / "wider.hdf5")
    dm = TrajectoryDataModule(str(wider), batch_size=4, relabel="none")
    trainer = fit(BC(spec=dm.spec, hidden_dims=[8]), dm, 1, default_root_dir=directory)
    trainer.save_checkpoint(directory / "wider.ckpt")
    return directory / "bc.ckpt", data


def broken_checkpoints(good: Path, directory: Path) -> dict[str, tuple[Path, str]]:
    import torch

    raw = torch.load(good, map_location="cpu", weights_only=True)
    truncated_ckpt = directory / "truncated.ckpt"
    truncated_ckpt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = directory / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 0}, foreign)
    weightless = directory / "weightless.ckpt"
    torch.save({k: v for k, v in raw.items() if k != "state_dict"}, weightless)
    return {
        "missing": (directory / "missing.ckpt", "no such checkpoint"),
        "truncated": (truncated_ckpt, "not a readable checkpoint"),
        "foreign": (foreign, "not a gcrl checkpoint"),
        "weightless": (weightless, "holds no weights"),
    }


def test_resuming_from_a_bad_checkpoint_is_one_line(
    trained: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good, data = trained
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--model", "gcrl.algorithms.BC", "--model.hidden_dims", "[8]"]
    args += ["--data.path", str(data), "--data.relabel", "none", "--data.batch_size", "4"]
    args += ["--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false"]
    cases = broken_checkpoints(good, tmp_path)
    wider = good.with_name("wider.ckpt")
    cases["other shapes"] = (wider, "trained with observation_dim 4, but the data gives 3")
    for name, (path, message) in cases.items():
        assert main([*args, "--ckpt_path", str(path)]) == 2, name
        line = one_line(capsys.readouterr().err)
        assert f"--ckpt_path {path}: " in line and message in line, (name, line)


def test_evaluating_a_bad_checkpoint_is_one_line(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, _ = trained
    for name, (path, message) in broken_checkpoints(good, tmp_path).items():
        assert main(["evaluate", str(path), "--env", "pointmaze-medium"]) == 2, name
        line = one_line(capsys.readouterr().err)
        assert str(path) in line and message in line, (name, line)
    # Trained on 3-d array observations: the maze's dict observations do not fit.
    assert main(["evaluate", str(good), "--env", "pointmaze-medium", "--episodes", "1"]) == 2
    assert "--env pointmaze-medium" in one_line(capsys.readouterr().err)


def test_fit_on_a_damaged_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a fresh process (so that Lightning's own log lines are seen too), then in-process
    for the other damages."""
    damaged = truncated(tmp_path / "truncated.hdf5")
    args = ["fit", "--model", "gcrl.algorithms.BC", "--data.batch_size", "4"]
    command = [str(Path(sys.executable).with_name("gcrl")), *args, "--data.path", str(damaged)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2
    assert f"{damaged}: an unreadable HDF5 file" in one_line(done.stderr)
    for make in (overwritten_metadata, lambda p: d4rl_file(p, rewards=nan_at((20, 1)).ravel())):
        path = make(tmp_path / "x.hdf5")
        assert main([*args, "--data.path", str(path)]) == 2
        assert str(path) in one_line(capsys.readouterr().err)
        path.unlink()
