"""``gcrl fit|validate|test``: every bundled config runs (fast_dev_run), runs leave logs and
checkpoints, and mistakes in a config give an error and a non-zero exit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from gcrl.cli.main import main
from gcrl.datasets import Task, concatenate, load, save
from gcrl.policy import load_policy

from .training_data import chain_mdp, goal_reaching, multitask_goal_reaching

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
torch.set_num_threads(1)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GCRL_CACHE_DIR", str(tmp_path / "cache"))
    goal_reaching(tmp_path / "data.hdf5", episodes=12, length=10)
    multitask_goal_reaching(tmp_path / "multitask.hdf5")
    chain_mdp(tmp_path / "discrete.hdf5", episodes=20)
    chain_mdp(tmp_path / "other.hdf5", episodes=20, seed=1)
    two = concatenate(
        [load(tmp_path / "discrete.hdf5"), load(tmp_path / "other.hdf5")],
        [Task("left", "go left"), Task("right", "go right")],
    )
    save(two, tmp_path / "discrete-tasks.hdf5")
    return tmp_path


def test_configs_exist() -> None:
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_runs_fast_dev_run(config: Path, workdir: Path) -> None:
    # Configs with a task signal (one-hot, embedding, text) need several tasks.
    multitask = re.search(r"task_signal: (onehot|embedding|text)", config.read_text())
    data = "discrete" if config.stem.startswith("babyai") else "data"
    if multitask:
        data = "discrete-tasks" if data == "discrete" else "multitask"
    data += ".hdf5"
    args = ["fit", "--config", str(config), "--data.path", data]
    args += ["--data.batch_size", "32", "--trainer.fast_dev_run", "true"]
    assert main(args) == 0


def test_fit_writes_logs_and_checkpoints_then_validates(workdir: Path) -> None:
    config = next(c for c in CONFIGS if c.stem == "pointmaze-gcbc")
    common = ["--config", str(config), "--data.path", "data.hdf5", "--data.batch_size", "32"]
    common += ["--model.init_args.hidden_dims", "[16]"]
    args = ["fit", *common, "--trainer.max_steps", "4", "--data.steps_per_epoch", "2"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"]
    assert main(args) == 0
    run = workdir / "runs" / "csv" / "version_0"
    metrics = (run / "metrics.csv").read_text()
    assert "actor/loss" in metrics and "val/actor/loss" in metrics
    assert (workdir / "runs" / "tensorboard" / "version_0").is_dir()
    checkpoints = list((run / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 1
    policy = load_policy(checkpoints[0])
    assert policy(torch.zeros(2).numpy(), goals=torch.ones(2).numpy()).shape == (2,)
    args = ["validate", *common, "--ckpt_path", str(checkpoints[0])]
    assert main([*args, "--trainer.enable_progress_bar", "false"]) == 0


def test_config_mistakes_exit_non_zero(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(next(c for c in CONFIGS if c.stem == "pointmaze-gcbc"))
    assert (
        main(
            ["fit", "--config", config, "--data.path", "data.hdf5", "--model.init_args.loss", "l1"]
        )
        == 2
    )
    assert "loss: unknown 'l1'" in capsys.readouterr().err
    assert main(["fit", "--config", config, "--data.path", "missing.hdf5"]) == 2
    assert "missing.hdf5" in capsys.readouterr().err
    assert main(["fit", "--config", config, "--data.no_such_option", "1"]) != 0
