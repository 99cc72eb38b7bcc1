"""``gcrl fit|validate|test``: every bundled config runs (fast_dev_run), runs leave logs and
checkpoints, and mistakes in a config give an error and a non-zero exit."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml  # type: ignore[import-untyped]

from gcrl.cli.main import main
from gcrl.datasets import Task, concatenate, load, save
from gcrl.policy import load_policy
from gcrl.spec import CHECKPOINT_KEY

from .training_data import chain_mdp, goal_reaching, image_goal_reaching, multitask_goal_reaching

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
torch.set_num_threads(1)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GCRL_CACHE_DIR", str(tmp_path / "cache"))
    goal_reaching(tmp_path / "data.hdf5", episodes=12, length=10)
    image_goal_reaching(tmp_path / "visual.hdf5", episodes=4, length=10, size=64)
    multitask_goal_reaching(tmp_path / "multitask.hdf5")
    chain_mdp(tmp_path / "discrete.hdf5", episodes=20)
    chain_mdp(tmp_path / "other.hdf5", episodes=20, seed=1)
    two = concatenate(
        [load(tmp_path / "discrete.hdf5"), load(tmp_path / "other.hdf5")],
        [Task("left", "go left"), Task("right", "go right")],
    )
    save(two, tmp_path / "discrete-tasks.hdf5")
    tasks = load(tmp_path / "multitask.hdf5")
    rewards = np.random.default_rng(0).integers(0, 2, (tasks.num_transitions, 3))
    infos = {**tasks.infos, "task_rewards": rewards.astype(np.float32)}
    save(dataclasses.replace(tasks, infos=infos), tmp_path / "sharing.hdf5")  # every task's
    return tmp_path


def test_configs_exist() -> None:
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_runs_fast_dev_run(config: Path, workdir: Path) -> None:
    # Configs with a task signal (one-hot, embedding, text) need several tasks.
    multitask = re.search(r"task_signal: (onehot|embedding|text)", config.read_text())
    data = "discrete" if config.stem.startswith("babyai") else "data"
    if config.stem.startswith("visual-"):
        data = "visual"
    if multitask:
        data = "discrete-tasks" if data == "discrete" else "multitask"
    data += ".hdf5"
    args = ["fit", "--config", str(config), "--data.path", data]
    args += ["--data.batch_size", "32", "--trainer.fast_dev_run", "true"]
    assert main(args) == 0


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_a_config_without_its_data_names_the_command_that_makes_it(
    config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = yaml.safe_load(config.read_text())["data"]
    if str(data["path"]).startswith("bundled:"):
        assert "data_command" not in data  # always there
        return
    command = data["data_command"]
    assert command.split()[:2] in (["gcrl", "collect"], ["gcrl", "relabel"]), command
    assert data["path"] in command.split(), command
    script = {"quickstart": "quickstart.sh"}.get(config.stem, "results_data.sh")
    if config.stem.startswith("visual-"):
        script = "visual_data.sh"
    text = re.sub(r"\\\n\s*", "", (ROOT / "scripts" / script).read_text())
    assert command in text.replace(" --force", ""), f"{command} is not what {script} runs"
    monkeypatch.chdir(tmp_path)  # no data here
    assert main(["fit", "--config", str(config), "--trainer.fast_dev_run", "true"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"make it with `{command}`" in error[0], error


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


def test_fit_prints_only_gcrl_lines_unless_verbose(workdir: Path) -> None:
    """By default no device lines, no model-summary table and no "stopped" line of
    Lightning's; ``--verbose`` shows them (so the filter is what hides them). Run as the
    command runs, in a fresh process: pytest would capture the log lines itself."""
    config = next(c for c in CONFIGS if c.stem == "pointmaze-gcbc")
    args = [sys.executable, "-m", "gcrl", "fit", "--config", str(config)]
    args += ["--data.path", "data.hdf5", "--data.batch_size", "16"]
    args += ["--model.init_args.hidden_dims", "[8]", "--trainer.max_steps", "2"]
    lightning_lines = ("GPU available", "Total params", "`Trainer.fit` stopped")
    quiet = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "data: data.hdf5" in quiet.stderr and "checkpoint: " in quiet.stdout
    assert not any(line in quiet.stdout + quiet.stderr for line in lightning_lines)
    verbose = subprocess.run([*args, "--verbose"], capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert all(line in verbose.stdout + verbose.stderr for line in lightning_lines)


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


#: The resume cases: (model options, data file, data options) by name. Every algorithm, the
#: compiled step, both multi-task optimisers and the task-sharing modes whose batches do not
#: depend on the weights being trained (conservative sharing scores each batch with the live
#: critic when Lightning draws it, one batch ahead: docs/training.md#resuming).
SMALL = ["--model.hidden_dims", "[16, 16]"]
TASKS = ["--model.task_signal", "onehot"]
RESUME_CASES: dict[str, tuple[list[str], str, list[str]]] = {
    "bc": (["--model", "gcrl.algorithms.BC", *SMALL], "data.hdf5", []),
    "iql": (["--model", "gcrl.algorithms.IQL", *SMALL], "data.hdf5", []),
    "bc-compiled": (
        ["--model", "gcrl.algorithms.BC", *SMALL, "--model.compile_step", "true"],
        "data.hdf5",
        [],
    ),
    "bc-pcgrad": (
        ["--model", "gcrl.algorithms.BC", *SMALL, *TASKS, "--model.optim", "pcgrad"],
        "multitask.hdf5",
        ["--data.relabel", "none"],
    ),
    "iql-gradnorm": (
        ["--model", "gcrl.algorithms.IQL", *SMALL, *TASKS, "--model.optim", "gradnorm"],
        "multitask.hdf5",
        ["--data.relabel", "none"],
    ),
    "gcivl": (["--model", "gcrl.algorithms.GCIVL", *SMALL], "data.hdf5", []),
    "hiql": (
        [
            "--model",
            "gcrl.algorithms.HIQL",
            *SMALL,
            "--model.rep_dim",
            "4",
            "--model.subgoal_steps",
            "3",
        ],
        "data.hdf5",
        [],
    ),
    "qrl": (["--model", "gcrl.algorithms.QRL", *SMALL, "--model.latent_dim", "8"], "data.hdf5", []),
    "crl": (["--model", "gcrl.algorithms.CRL", *SMALL], "data.hdf5", []),
    "td3bc": (["--model", "gcrl.algorithms.TD3BC", *SMALL], "data.hdf5", []),
    "dqn": (["--model", "gcrl.algorithms.DQN", *SMALL], "discrete.hdf5", []),
    "distral": (
        ["--model", "gcrl.algorithms.Distral", *SMALL],
        "multitask.hdf5",
        ["--data.relabel", "none"],
    ),
    "distral-iql": (
        ["--model", "gcrl.algorithms.DistralIQL", *SMALL],
        "multitask.hdf5",
        ["--data.relabel", "none"],
    ),
    "iql-random-sharing": (
        ["--model", "gcrl.algorithms.IQL", *SMALL, *TASKS],
        "sharing.hdf5",
        ["--data.relabel", "none", "--data.task_sharing", "random"],
    ),
    "iql-high-reward-sharing": (
        ["--model", "gcrl.algorithms.IQL", *SMALL, *TASKS],
        "sharing.hdf5",
        [
            "--data.relabel",
            "none",
            "--data.task_sharing",
            "high-reward",
            "--data.sharing_percentile",
            "50",
        ],
    ),
    "bc-zero-reward-sharing": (
        ["--model", "gcrl.algorithms.BC", *SMALL, *TASKS],
        "sharing.hdf5",
        ["--data.relabel", "none", "--data.task_sharing", "zero-reward"],
    ),
    # Thresholds refreshed at steps 3, 6, 9 and 12, around the checkpoint at step 7.
    "iql-conservative-sharing": (
        ["--model", "gcrl.algorithms.IQL", *SMALL, *TASKS],
        "sharing.hdf5",
        [
            "--data.relabel",
            "none",
            "--data.task_sharing",
            "conservative",
            "--data.conservative_refresh",
            "3",
        ],
    ),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_mid_epoch_continues_exactly(workdir: Path, case: str) -> None:
    """A run resumed from a checkpoint taken mid-epoch ends with the weights of the
    uninterrupted run: the batch stream's random state, PCGrad's generator and GradNorm's
    task weights are in the checkpoint, and target networks are updated before the
    checkpoint callback runs."""
    model, data, data_options = RESUME_CASES[case]
    optim = next((model[i + 1] for i, a in enumerate(model) if a == "--model.optim"), "none")
    common = [*model, "--data.path", data, *data_options]
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
