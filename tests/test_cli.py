from __future__ import annotations

import json
from pathlib import Path

import pytest

from gcrl.cli.main import main
from gcrl.datasets import Task, load, save

from .conftest import make_trajectories


def test_info_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = save(make_trajectories([3, 5, 4], goal=True), tmp_path / "t.hdf5")
    assert main(["info", str(path)]) == 0
    table = capsys.readouterr().out
    assert "transitions   12" in table and "length min 3 / mean 4.0 / max 5" in table
    assert "desired_goal" in table
    assert main(["info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "gcrl"
    assert summary["transitions"] == 12 and summary["episodes"] == 3
    assert summary["episode_length"] == {"min": 3, "mean": 4.0, "max": 5}
    assert summary["observations"]["desired_goal"] == {"shape": [2], "dtype": "float64"}
    assert summary["actions"] == {"shape": [2], "dtype": "float32"}
    t = load(path)
    returns = [float(e.rewards.astype(float).sum()) for e in t.episodes()]
    assert summary["returns"]["max"] == pytest.approx(max(returns))
    assert summary["timeouts"] == 3 and summary["terminals"] == 0


def test_info_counts_a_relabeled_file_in_source_episodes_and_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gcrl relabel` stores each relabeled row as a one-step episode; `gcrl info` says how
    many source episodes and copies that is, not 3 + 36 "episodes"."""
    source = save(make_trajectories([3, 5, 4], goal=True), tmp_path / "t.hdf5")
    out = tmp_path / "r.hdf5"
    assert main(["relabel", str(source), str(out), "--strategy", "future", "--k", "3"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["transitions"] == 12 + 36 and summary["episodes"] == 3 + 36
    assert summary["relabeled"] == {
        "source_episodes": 3,
        "source_transitions": 12,
        "relabeled_transitions": 36,
        "copies": 3,
    }
    assert main(["info", str(out)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("episodes"))
    assert "3 source episodes (12 transitions) + 36 relabeled (k = 3" in line
    assert main(["info", str(source), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["relabeled"] is None


def test_convert_several_sources_into_one_multitask_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = save(make_trajectories([3, 2]), tmp_path / "a.hdf5")
    b = save(make_trajectories([4], seed=1), tmp_path / "b.hdf5")
    out = tmp_path / "multi.hdf5"
    args = ["convert", str(a), str(b), str(out), "--task", "reach", "--task", "push"]
    args += ["--task-text", "reach the goal", "--task-text", "push the block"]
    assert main(args) == 0
    assert "9 transitions" in capsys.readouterr().out
    t = load(out)
    assert t.tasks == (Task("reach", "reach the goal"), Task("push", "push the block"))
    assert t.task_ids.tolist() == [0] * 5 + [1] * 4
    assert main(["info", str(out), "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)["tasks"]
    assert [(x["name"], x["transitions"], x["episodes"]) for x in tasks] == [
        ("reach", 5, 2),
        ("push", 4, 1),
    ]


@pytest.mark.parametrize(
    ("extra", "option"),
    [(["--task", "only-one"], "--task"), (["--task-text", "text"], "--task-text")],
)
def test_convert_task_options_must_match_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], option: str
) -> None:
    a = save(make_trajectories([3]), tmp_path / "a.hdf5")
    out = tmp_path / "out.hdf5"
    assert main(["convert", str(a), str(a), str(out), *extra]) == 2
    assert option in capsys.readouterr().err
    assert not out.exists()


def test_convert_refuses_output_that_is_an_input(tmp_path: Path) -> None:
    a = save(make_trajectories([3]), tmp_path / "a.hdf5")
    before = a.read_bytes()
    assert main(["convert", str(a), str(a), "--force"]) == 2
    assert a.read_bytes() == before


def test_version_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert "gcrl" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2
    assert main(["info"]) == 2
