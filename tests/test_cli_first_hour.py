"""The first hour with the command line: every command listed, a fast and complete
``gcrl fit --help``, options that are refused rather than ignored, shared options kept when
the algorithm changes, a readable progress bar, and one tolerance default."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from gcrl.algorithms import BC
from gcrl.algorithms.agent import Agent
from gcrl.cli import help_cache
from gcrl.cli.main import main
from gcrl.errors import ConfigError, DatasetNotFoundError
from gcrl.relabel.rewards import recorded_tolerance
from gcrl.training import TrajectoryDataModule

from .training_data import fit, goal_reaching

torch.set_num_threads(1)


def test_gcrl_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    for command in ("info", "convert", "relabel", "collect", "evaluate", "fit", "validate", "test"):
        assert f"    {command} " in listed, command


def run_help(cache: Path, columns: int) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from gcrl.cli.main import main; code = main(['fit', '--help']); "
        "print('LIGHTNING' if 'lightning' in sys.modules else 'NO-LIGHTNING', file=sys.stderr); "
        "sys.exit(code)"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )


def test_fit_help_describes_every_data_option_and_is_cached(tmp_path: Path) -> None:
    # A terminal narrower than the shipped text's: the help is built, then cached.
    first = run_help(tmp_path, help_cache.SHIPPED_COLUMNS - 1)
    assert first.returncode == 0, first.stderr
    assert "LIGHTNING" in first.stderr.split()  # built by LightningCLI
    text = first.stdout
    assert "--model.help gcrl.algorithms.BC" in text  # where the algorithm's options are
    assert ",predict" not in text  # refused by gcrl, so not offered as a subcommand
    assert "--optimizer" not in text  # the algorithms configure their own
    assert ":data:" not in text and "``her``" in text  # the values, not a reference
    for option in ("her_k", "tolerance", "steps_per_epoch", "val_batches", "sharing_top_k"):
        block = text.split(f"--data.{option} ")[-1].split("--data.")[0]
        assert "(type:" in block and len(block.split("(type:")[0].split()) > 3, option
    second = run_help(tmp_path, help_cache.SHIPPED_COLUMNS - 1)
    assert second.returncode == 0 and second.stdout == text
    assert "NO-LIGHTNING" in second.stderr.split()  # printed from the cache


def test_the_shipped_help_is_what_lightning_cli_writes(tmp_path: Path) -> None:
    """The help shipped in gcrl/cli/help/ (the first `gcrl fit --help` on a wide terminal
    prints it without importing Lightning) is current: rebuild it with
    `python -m gcrl.cli.help_cache` when this fails."""
    built = help_cache.build_help()
    header = help_cache.shipped_path("fit").read_text().splitlines()[0]
    same_versions = json.loads(header.split(" with ", 1)[1]) == help_cache.shipped_versions()
    fresh = run_help(tmp_path, help_cache.SHIPPED_COLUMNS)
    assert fresh.returncode == 0 and fresh.stdout == built["fit"]
    if not same_versions:  # other Lightning or jsonargparse: the shipped text is not used
        assert all(help_cache.shipped_help(command) is None for command in built)
        assert "LIGHTNING" in fresh.stderr.split()
        return
    for command, text in built.items():
        assert help_cache.shipped_help(command) == text, f"{command}: the shipped help is stale"
    assert "NO-LIGHTNING" in fresh.stderr.split()


def test_the_help_lists_every_algorithm_gcrl_exports() -> None:
    """``gcrl fit --help`` names the registered algorithms, and the registry holds every
    agent class gcrl.algorithms exports: a new algorithm left out of it fails here."""
    import gcrl.algorithms as algorithms

    exported = {
        name
        for name in algorithms.__all__
        if isinstance(getattr(algorithms, name), type)
        and issubclass(getattr(algorithms, name), Agent)
        and getattr(algorithms, name) is not Agent
    }
    assert {cls.__name__ for cls in algorithms.ALGORITHMS} == exported
    shipped = help_cache.shipped_path("fit").read_text()
    listed = shipped.split("Algorithms (model.class_path gcrl.algorithms.NAME):")[1]
    listed = " ".join(listed.split())
    for name in ("HIQL", "QRL", "Distral", "TD3BC"):
        assert f"{name}," in listed or f"{name}." in listed, name


def test_a_changed_terminal_or_command_builds_the_help_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    narrow = help_cache.cache_path(["fit", "--help"])
    monkeypatch.setenv("COLUMNS", "120")
    wide = help_cache.cache_path(["fit", "--help"])
    assert narrow != wide
    assert help_cache.cache_path(["test", "--help"]) != help_cache.cache_path(["fit", "--help"])
    assert help_cache.is_plain_help(["fit", "-h"])
    assert not help_cache.is_plain_help(["fit", "--config", "x.yaml", "--help"])


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    goal_reaching(tmp_path / "data.hdf5", episodes=8, length=10)
    (tmp_path / "bc.yaml").write_text(
        "model:\n  class_path: gcrl.algorithms.BC\n  init_args:\n    hidden_dims: [12, 12]\n"
        "data:\n  path: data.hdf5\n  batch_size: 16\n"
        "trainer:\n  max_steps: 2\n  enable_progress_bar: false\n"
    )
    return tmp_path


def test_switching_the_algorithm_keeps_the_shared_options(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for algorithm in ("gcrl.algorithms.IQL", "gcrl.algorithms.GCIVL", "gcrl.algorithms.CRL"):
        args = ["fit", "--config", "bc.yaml", "--model", algorithm, "--print_config"]
        assert main(args) == 0, algorithm
        printed = capsys.readouterr().out
        assert f"class_path: {algorithm}" in printed
        assert "hidden_dims:\n    - 12\n    - 12" in printed, printed
    from gcrl.algorithms import CRL, GCIVL, IQL

    spec = TrajectoryDataModule("data.hdf5", batch_size=8).spec
    for cls in (IQL, GCIVL, CRL):
        model = cls(spec=spec, hidden_dims=[12, 12])
        widths = [m.out_features for m in model.actor.modules() if isinstance(m, torch.nn.Linear)]
        assert widths[:2] == [12, 12], cls.__name__


def test_options_that_would_be_ignored_are_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fit", "--config", "bc.yaml", "--optimizer", "AdamW"]) == 2
    assert "--optimizer" in capsys.readouterr().err
    # One gradient_clip_val: the trainer's. The model's old option only loads old checkpoints.
    assert "gradient_clip_val" not in inspect.signature(Agent.__init__).parameters
    spec = TrajectoryDataModule("data.hdf5", batch_size=8).spec
    assert BC(spec=spec, gradient_clip_val=1.0).gradient_clip_val == 1.0
    with pytest.raises(ConfigError, match="learning_rat: not an option of BC"):
        BC(spec=spec, learning_rat=1.0)


def test_validate_prints_and_makes_no_new_run_directory(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fit", "--config", "bc.yaml"]) == 0
    ckpt = next((workdir / "runs/csv/version_0/checkpoints").glob("*.ckpt"))
    capsys.readouterr()
    assert main(["validate", "--config", "bc.yaml", "--ckpt_path", str(ckpt)]) == 0
    assert sorted(p.name for p in (workdir / "runs/csv").iterdir()) == ["version_0"]
    assert not (workdir / "runs/config.yaml").exists()


def test_progress_bar_counts_steps_and_shows_the_loss(workdir: Path) -> None:
    from gcrl.callbacks import StepProgressBar

    dm = TrajectoryDataModule("data.hdf5", batch_size=16, steps_per_epoch=3)
    model = BC(spec=dm.spec, hidden_dims=[8])
    bar = StepProgressBar()
    trainer = fit(model, dm, 4, enable_progress_bar=True, callbacks=[bar], log_every_n_steps=1)
    description = bar._get_train_description(1)
    assert description.strip() == "Epoch 1, 4 steps" and "-2" not in description
    shown = bar.get_metrics(trainer, model)
    assert "actor/loss" in shown and "v_num" not in shown


def test_tolerance_defaults_to_what_the_dataset_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert recorded_tolerance({"success_radius": 0.45}) == (0.45, "the dataset's success_radius")
    assert recorded_tolerance({"tolerance": 2}) == (2.0, "the dataset's tolerance")
    assert recorded_tolerance({"success_radius": "wide"})[0] == 0.5
    path = goal_reaching(tmp_path / "g.hdf5", episodes=4, length=6)
    with h5py.File(path, "a") as f:
        f.attrs["success_radius"] = 0.25
    out = tmp_path / "her.hdf5"
    assert main(["relabel", str(path), str(out), "--strategy", "future"]) == 0
    assert "within 0.25 on s', the dataset's success_radius" in capsys.readouterr().out
    with h5py.File(out) as f:  # the relabeled file records it too
        assert f.attrs["success_radius"] == 0.25 and f.attrs["tolerance"] == 0.25
    forced = ["relabel", str(path), str(out), "--strategy", "future", "--force"]
    assert main([*forced, "--tolerance", "0.1"]) == 0
    assert "within 0.1 on s', --tolerance" in capsys.readouterr().out
    dm = TrajectoryDataModule(str(out), batch_size=8, relabel="her")
    assert dm.tolerance == 0.25
    assert TrajectoryDataModule(str(path), batch_size=8, tolerance=0.3).tolerance == 0.3
    bundled = TrajectoryDataModule("bundled:pointmaze-medium-navigate", batch_size=8)
    assert bundled.tolerance == 1.0  # the bundled maze's success radius


def test_a_missing_minari_dataset_says_how_to_fetch_it(
    minari_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gcrl.datasets import load

    with pytest.raises(DatasetNotFoundError, match="minari download D4RL/nothing/here-v0"):
        load("D4RL/nothing/here-v0")
    assert main(["info", "D4RL/nothing/here-v0"]) == 2
    err = capsys.readouterr().err
    assert "download=True" not in err and str(minari_root) in err
