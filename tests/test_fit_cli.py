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
from gcrl.spec import CHECKPOINT_KEY

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


def test_fit_writes_logs_and_checkpoints_then_validates(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
    printed = capsys.readouterr().out.splitlines()
    assert f"checkpoint: {checkpoints[0].relative_to(workdir)}" in printed
    policy = load_policy(checkpoints[0])
    assert policy(torch.zeros(2).numpy(), goals=torch.ones(2).numpy()).shape == (2,)
    args = ["validate", *common, "--ckpt_path", str(checkpoints[0])]
    assert main([*args, "--trainer.enable_progress_bar", "false"]) == 0


def test_lightning_callbacks_with_enum_defaults_are_accepted(workdir: Path) -> None:
    """``--trainer.callbacks+=...Timer``: its ``interval`` default is an enum, which the saved
    config.yaml now holds as its value (it used to end the run with 'cannot represent')."""
    args = ["fit", "--model", "gcrl.algorithms.BC", "--model.hidden_dims", "[8]"]
    args += ["--data.path", "data.hdf5", "--data.batch_size", "8", "--trainer.max_steps", "2"]
    args += ["--trainer.enable_progress_bar", "false"]
    args += ["--trainer.callbacks+=lightning.pytorch.callbacks.Timer"]
    assert main(args) == 0
    saved = (workdir / "runs/csv/version_0/config.yaml").read_text()
    assert "class_path: lightning.pytorch.callbacks.Timer" in saved and "interval: step" in saved


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


def test_updates_per_batch_count_and_label_optimiser_steps(workdir: Path) -> None:
    import csv

    args = ["fit", "--model", "gcrl.algorithms.BC", "--model.hidden_dims", "[16]"]
    args += ["--data.path", "data.hdf5", "--data.batch_size", "8", "--data.updates_per_batch", "4"]
    args += ["--trainer.max_steps", "10", "--trainer.log_every_n_steps", "1"]
    args += ["--trainer.enable_progress_bar", "false"]
    assert main(args) == 0
    (checkpoint,) = workdir.glob("runs/csv/version_0/checkpoints/*.ckpt")
    assert checkpoint.name == "epoch=0-step=10.ckpt"
    with open(workdir / "runs/csv/version_0/metrics.csv") as f:
        table = list(csv.DictReader(f))
    rows = [r for r in table if r.get("actor/loss")]
    assert [int(r["step"]) for r in rows] == [3, 7, 9]  # the index of each batch's last step
    # StepRate, added by gcrl fit: a rate after each batch, labelled by the steps done so far.
    rates = [r for r in table if r.get("time/steps_per_second")]
    assert [int(r["step"]) for r in rates] == [4, 8, 10]
    assert all(float(r["time/steps_per_second"]) > 0 for r in rates)


DDP_CASES = [("BC", "none"), ("BC", "pcgrad"), ("IQL", "none"), ("IQL", "gradnorm")]


@pytest.mark.parametrize(("algorithm", "optim"), DDP_CASES, ids=lambda v: str(v))
def test_fit_under_ddp_on_two_cpu_processes(workdir: Path, algorithm: str, optim: str) -> None:
    """``gcrl fit --trainer.strategy ddp --trainer.devices 2`` (gloo): Lightning re-launches
    ``gcrl fit`` for rank 1; the ranks draw different batches, end with equal parameters, and
    one checkpoint and one log are written."""
    import os
    import subprocess
    import sys

    probe = workdir / "probe"
    args = [sys.executable, "-m", "gcrl", "fit", "--model", f"gcrl.algorithms.{algorithm}"]
    args += ["--model.task_signal", "onehot", "--model.optim", optim]
    if algorithm == "BC":
        args += ["--model.hidden_dims", "[16, 16]"]
    else:
        args += ["--model.actor_hidden_dims", "[16, 16]", "--model.value_hidden_dims", "[16]"]
    args += ["--data.path", "multitask.hdf5"]
    args += ["--data.batch_size", "16", "--data.relabel", "none", "--data.steps_per_epoch", "3"]
    args += ["--trainer.max_steps", "6", "--trainer.log_every_n_steps", "2"]
    args += ["--trainer.accelerator", "cpu"]
    args += ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    args += ["--trainer.callbacks+=tests.rank_probe.RankProbe"]
    args += [f"--trainer.callbacks.out={probe}"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(probe / f"rank{r}.pt") for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 6
    assert ranks[0]["batches"] != ranks[1]["batches"], "both ranks drew the same batches"
    params = [r["params"] for r in ranks]
    assert params[0].keys() == params[1].keys()
    for name in params[0]:
        torch.testing.assert_close(params[0][name], params[1][name], msg=name, rtol=0, atol=1e-6)
    assert len(list(workdir.glob("runs/**/*.ckpt"))) == 1
    assert [p.name for p in workdir.glob("runs/csv/*")] == ["version_0"]
    assert (workdir / "runs/csv/version_0/metrics.csv").is_file()


@pytest.mark.parametrize(
    ("algorithm", "compile_step", "optim"),
    [
        ("BC", False, "none"),
        ("IQL", False, "none"),
        ("BC", True, "none"),
        ("BC", False, "pcgrad"),
        ("IQL", False, "gradnorm"),
    ],
)
def test_resume_mid_epoch_continues_exactly(
    workdir: Path, algorithm: str, compile_step: bool, optim: str
) -> None:
    """A run resumed from a checkpoint taken mid-epoch ends with the weights of the
    uninterrupted run: the batch stream's random state, PCGrad's generator and GradNorm's
    task weights are in the checkpoint, and target networks are updated before the
    checkpoint callback runs."""
    data = "data.hdf5" if optim == "none" else "multitask.hdf5"
    common = ["--model", f"gcrl.algorithms.{algorithm}", "--data.path", data]
    common += ["--model.compile_step", str(compile_step).lower(), "--model.optim", optim]
    if optim != "none":
        common += ["--model.task_signal", "onehot", "--data.relabel", "none"]
    if algorithm == "BC":
        common += ["--model.hidden_dims", "[16, 16]"]
    else:
        common += ["--model.actor_hidden_dims", "[16]", "--model.value_hidden_dims", "[16]"]
    common += ["--data.batch_size", "16", "--data.steps_per_epoch", "5", "--data.seed", "3"]
    common += ["--trainer.max_steps", "14", "--trainer.enable_progress_bar", "false"]
    common += ["--trainer.logger", "false"]
    every = ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.save_top_k=-1"]
    every += ["--trainer.callbacks.every_n_train_steps=7", "--trainer.callbacks.dirpath=ckpt"]
    assert main(["fit", *common, *every]) == 0
    steps = sorted(p.name for p in (workdir / "ckpt").glob("*.ckpt"))
    assert steps == ["epoch=1-step=7.ckpt", "epoch=2-step=14.ckpt"], steps
    final = torch.load(workdir / "ckpt/epoch=2-step=14.ckpt", weights_only=False)
    resumed_dir = ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.dirpath=again"]
    args = ["fit", *common, *resumed_dir, "--ckpt_path", "ckpt/epoch=1-step=7.ckpt"]
    assert main(args) == 0
    (resumed_path,) = (workdir / "again").glob("*.ckpt")
    resumed = torch.load(resumed_path, weights_only=False)
    assert resumed["global_step"] == 14
    for name, value in final["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=0, msg=name)
    if optim != "none":  # GradNorm's task weights and moments, PCGrad's generator
        state, again = final[CHECKPOINT_KEY]["multitask"], resumed[CHECKPOINT_KEY]["multitask"]
        assert state.keys() == again.keys()
        for key, value in state.items():
            if optim == "gradnorm" and key == "weights":
                assert not torch.equal(value, torch.ones_like(value))  # they moved
            assert torch.equal(torch.as_tensor(again[key]), torch.as_tensor(value)), key
