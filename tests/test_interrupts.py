"""Long commands stop on SIGINT and SIGTERM (exit 130 / 143) leaving no temporary file and the
old output untouched; racing writers never both succeed; ``--force`` replaces only regular
files; temporaries of killed writers are cleaned up by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gcrl.datasets import Trajectories, save
from gcrl.errors import OutputExistsError
from gcrl.io import atomic_path, remove_stale_temporaries

GCRL = [str(Path(sys.executable).with_name("gcrl"))]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 episodes of 1000 goal-reaching steps (400,000 rows): relabeling them with k = 8
    takes several seconds."""
    rng = np.random.default_rng(0)
    episodes, length = 400, 1000
    n = episodes * length
    states = np.cumsum(rng.normal(0, 0.1, (episodes, length + 1, 2)), axis=1).astype(np.float32)
    goals = np.repeat(rng.normal(0, 3, (episodes, 1, 2)), length, axis=1).reshape(n, 2)

    def observations(part: slice) -> dict[str, np.ndarray]:
        xy = states[:, part].reshape(n, 2)
        return {"observation": xy, "achieved_goal": xy, "desired_goal": goals.astype(np.float32)}

    ends = np.zeros(n, dtype=bool)
    ends[length - 1 :: length] = True
    data = Trajectories(
        observations=observations(slice(0, length)),
        actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rewards=np.zeros(n, dtype=np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=ends,
        next_observations=observations(slice(1, length + 1)),
        episode_starts=np.arange(0, n, length),
    )
    return save(data, tmp_path_factory.mktemp("big") / "big.hdf5")


def temporaries(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.tmp"))


def long_command(command: str, big: Path, out: Path) -> list[str]:
    """A ``gcrl relabel`` or ``gcrl convert`` of ``big`` into ``out`` that runs for several
    seconds (6 s for the conversion of six copies with gzip on this machine)."""
    if command == "relabel":
        options = ["--strategy", "future", "--k", "8", "--chunk-rows", "20000"]
        return [*GCRL, "relabel", str(big), str(out), *options, "--force"]
    return [*GCRL, "convert", *[str(big)] * 6, str(out), "--compression", "gzip", "--force"]


@pytest.mark.parametrize("command", ["relabel", "convert"])
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_long_command_promptly_and_leaves_the_old_output(
    big: Path, tmp_path: Path, command: str, signum: int, code: int
) -> None:
    out = tmp_path / "out.hdf5"
    out.write_bytes(b"the old output")
    process = subprocess.Popen(
        long_command(command, big, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not temporaries(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)  # the temporary output exists once writing has begun
    assert temporaries(tmp_path), "the command never started writing"
    time.sleep(0.5)
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10, "it did not stop promptly"
    assert process.returncode == code, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
    assert temporaries(tmp_path) == []
    assert out.read_bytes() == b"the old output"


def test_two_writers_racing_for_one_output_never_both_succeed(big: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.hdf5"
    args = [*GCRL, "relabel", str(big), str(out), "--strategy", "final", "--k", "1"]
    racers = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in racers]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "output" in loser and "Traceback" not in loser
    assert temporaries(tmp_path) == []


def test_force_replaces_only_regular_files(tmp_path: Path) -> None:
    target = tmp_path / "real.hdf5"
    target.write_text("x")
    link = tmp_path / "link.hdf5"
    link.symlink_to(target)
    for path in (link, tmp_path / "a-directory"):
        if path.name == "a-directory":
            path.mkdir()
        with (
            pytest.raises(OutputExistsError, match="not a regular file"),
            atomic_path(path, overwrite=True) as tmp,
        ):
            tmp.write_text("new")
    assert target.read_text() == "x" and link.is_symlink()


def test_temporaries_of_killed_writers_are_removed_by_the_next_run(tmp_path: Path) -> None:
    target = tmp_path / "out.hdf5"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.hdf5.{dead.pid}-0123abcd.tmp"
    live = tmp_path / f".out.hdf5.{os.getpid()}-0123abcd.tmp"
    other = tmp_path / f".other.hdf5.{dead.pid}-0123abcd.tmp"
    for path in (stale, live, other):
        path.write_text("partial")
    assert remove_stale_temporaries(target) == [stale]
    assert live.exists() and other.exists() and not stale.exists()
    live.unlink()
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert temporaries(tmp_path) == [other]


def test_umask_decides_the_permissions_of_outputs(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "shared.hdf5") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.hdf5").stat().st_mode & 0o777 == 0o644


def test_a_closed_pipe_ends_a_command_quietly() -> None:
    """``gcrl info X | head``: the reader leaves early; no BrokenPipeError traceback."""
    process = subprocess.Popen(
        [*GCRL, "info", "bundled:pointmaze-medium-navigate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before it writes anything
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_fit_prints_no_lightning_tips_nor_known_harmless_warnings(tmp_path: Path) -> None:
    from .training_data import goal_reaching

    data = goal_reaching(tmp_path / "g.hdf5", episodes=4, length=6)
    config = Path(__file__).resolve().parents[1] / "configs" / "pointmaze-gcbc.yaml"
    args = [*GCRL, "fit", "--config", str(config), "--data.path", str(data)]
    args += ["--data.batch_size", "8", "--trainer.fast_dev_run", "true"]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    for noise in ("💡 Tip", "LeafSpec", "Total length of `FixedBatches`", "Seed set to"):
        assert noise not in output, noise
    startup = [line for line in output.splitlines() if f"data: {data}: " in line]
    assert len(startup) == 1, output  # one start-up line: what was loaded, which relabel mode
    assert "24 transitions in 4 episodes; relabel ogbench" in startup[0], startup


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)]
)
def test_an_interrupted_fit_saves_a_checkpoint_that_resumes_exactly(
    tmp_path: Path, signum: int
) -> None:
    """A signal during `gcrl fit` stops at the end of the step with `interrupted.ckpt`
    (exit 128 + signal, no temporary left); `--ckpt_path` then ends with the weights of an
    uninterrupted run of the same budget."""
    import torch

    from .training_data import goal_reaching

    data = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=10)
    common = ["fit", "--model", "gcrl.algorithms.IQL", "--model.hidden_dims", "[8]"]
    common += ["--data.path", str(data), "--data.batch_size", "16", "--data.seed", "3"]
    common += ["--trainer.max_steps", "600", "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*GCRL, *common], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    started = tmp_path / "runs" / "csv" / "version_0" / "hparams.yaml"  # written as fit starts
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signum)
    assert process.stderr is not None
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 128 + signum, err
    checkpoints = tmp_path / "runs" / "csv" / "version_0" / "checkpoints"
    names = sorted(p.name for p in checkpoints.iterdir())  # and the run's own last one
    assert names[-1] == "interrupted.ckpt" and len(names) == 2, names
    assert (
        f"resume with --ckpt_path {checkpoints / 'interrupted.ckpt'}".replace(
            str(tmp_path) + "/", ""
        )
        in err
    )
    stopped = torch.load(checkpoints / "interrupted.ckpt", weights_only=True)["global_step"]
    assert 0 < stopped < 600
    resume = [*common, "--ckpt_path", str(checkpoints / "interrupted.ckpt")]
    for args in (resume, common):
        done = subprocess.run([*GCRL, *args], cwd=tmp_path, env=env, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    finals = [
        torch.load(next((tmp_path / f"runs/csv/version_{v}/checkpoints").glob("epoch=*.ckpt")))
        for v in (1, 2)
    ]
    assert [f["global_step"] for f in finals] == [600, 600]
    for name, value in finals[1]["state_dict"].items():
        torch.testing.assert_close(finals[0]["state_dict"][name], value, rtol=0, atol=0)


def test_a_fit_killed_mid_run_resumes_from_its_last_checkpoint_exactly(tmp_path: Path) -> None:
    """SIGKILL (no handler, nothing saved on the way out) after a periodic checkpoint was
    written: `--ckpt_path` on that checkpoint ends with the weights of an uninterrupted run."""
    import torch

    from .training_data import goal_reaching

    data = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=10)
    common = ["fit", "--model", "gcrl.algorithms.IQL", "--model.hidden_dims", "[8]"]
    common += ["--data.path", str(data), "--data.batch_size", "16", "--data.seed", "3"]
    common += ["--trainer.max_steps", "1000", "--trainer.enable_progress_bar", "false"]
    common += ["--trainer.logger", "false"]
    every = ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.save_top_k=-1"]
    every += ["--trainer.callbacks.every_n_train_steps=50"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = [*common, *every, "--trainer.callbacks.dirpath=killed"]
    process = subprocess.Popen([*GCRL, *killed], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    saved = tmp_path / "killed"
    deadline = time.monotonic() + 180
    while len(list(saved.glob("*.ckpt"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=60)
    # The newest checkpoint may be half written; the one before it is complete.
    steps = sorted(int(p.stem.split("step=")[1]) for p in saved.glob("*.ckpt"))
    assert 0 < steps[0] < 1000, steps
    (last,) = saved.glob(f"*step={steps[0]}.ckpt")
    resumed = [*common, "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.dirpath=a"]
    uninterrupted = [*common, "--trainer.callbacks+=ModelCheckpoint"]
    uninterrupted += ["--trainer.callbacks.dirpath=b"]
    for args in ([*resumed, "--ckpt_path", str(last)], uninterrupted):
        done = subprocess.run([*GCRL, *args], cwd=tmp_path, env=env, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    (a,), (b,) = (list((tmp_path / d).glob("*.ckpt")) for d in ("a", "b"))
    finals = [torch.load(p, weights_only=True) for p in (a, b)]
    assert [f["global_step"] for f in finals] == [1000, 1000]
    for name, value in finals[1]["state_dict"].items():
        torch.testing.assert_close(finals[0]["state_dict"][name], value, rtol=0, atol=0)
