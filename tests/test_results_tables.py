"""docs/results.md's generated tables are what the committed run summaries say."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "results.py"


def results(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "table", *args], capture_output=True, text=True, cwd=ROOT
    )


def marker_names() -> list[str]:
    """The names of the tables the real page has markers for, in its order."""
    return re.findall(r"<!-- table:([\w-]+) -->", (ROOT / "docs" / "results.md").read_text())


def test_the_results_page_matches_the_committed_summaries() -> None:
    done = results("--check")
    assert done.returncode == 0, done.stderr


def test_a_table_is_rebuilt_from_summaries_and_a_stale_page_fails_the_check(
    tmp_path: Path,
) -> None:
    summaries = tmp_path / "summaries"
    summaries.mkdir()
    for seed, (mean, worst) in enumerate([(0.8, 0.2), (0.9, 0.4)]):
        record = {
            "commit": "abc1234",
            "summary": {"success_mean": mean, "success_median": 1.0, "success_worst": worst},
            "tasks": {"reach": worst, "push": 1.0},
        }
        (summaries / f"mt10-iql-heads-s{seed}.json").write_text(json.dumps(record))
    page = tmp_path / "results.md"
    # Every table's markers, as the real page has them; the IQL layouts' table stale.
    names = marker_names()
    assert "mt10-iql-layouts" in names and len(names) >= 4
    page.write_text(
        "# R\n\n"
        + "".join(
            f"<!-- table:{n} -->\n{'old' if n == 'mt10-iql-layouts' else ''}\n<!-- /table:{n} -->\n"
            for n in names
        )
    )
    args = ("--page", str(page), "--summaries", str(summaries))
    stale = results("--check", *args)
    assert stale.returncode == 1 and "mt10-iql-layouts" in stale.stderr
    assert "old" in page.read_text()  # --check writes nothing
    assert results(*args).returncode == 0
    text = page.read_text()
    # The summary over tasks, then each task's mean over the seeds.
    assert "| IQL | heads | one-hot | 2 | 85 ± 5 | 100 ± 0 | 30 ± 10 | 30 / 100 | abc1234 |" in text
    assert "`mt10-iql-independent`" in text  # a run without summaries is named as missing
    # A built table: the parameters of the agents the script constructs, not of summaries.
    assert "| shared | one-hot | 145,412 | 294,402 | 146,177 | 585,991 |" in text
    assert results("--check", *args).returncode == 0
    page.write_text(text.replace("85 ± 5", "86 ± 5"))
    assert results("--check", *args).returncode == 1
    page.write_text(text.replace("<!-- table:mt10-iql-layouts -->", ""))  # a marker gone
    missing = results("--check", *args)
    assert (
        missing.returncode == 2 and "no markers <!-- table:mt10-iql-layouts -->" in missing.stderr
    )


def _empty_page(tmp_path: Path) -> Path:
    """A page with every table marker of the real page and nothing between them."""
    page = tmp_path / "results.md"
    page.write_text("".join(f"<!-- table:{n} -->\n<!-- /table:{n} -->\n" for n in marker_names()))
    return page


def test_a_table_with_a_column_per_task_reads_each_tasks_rate(tmp_path: Path) -> None:
    summaries = tmp_path / "summaries"
    summaries.mkdir()
    for seed, first in enumerate([1.0, 0.5]):
        record = {
            "commit": "abc1234",
            "summary": {"success_mean": 0.3, "success_median": 0.0, "success_worst": 0.0},
            "tasks": {"task1": first, "task2": 0.5, "task3": 0.0, "task4": 0.0, "task5": 0.0},
        }
        (summaries / f"pmt-iql-none-s{seed}.json").write_text(json.dumps(record))
    page = _empty_page(tmp_path)
    assert results("--page", str(page), "--summaries", str(summaries)).returncode == 0
    row = "| IQL | none | 2 | 30 ± 0 | 0 ± 0 | 0 ± 0 | 75 ± 25 | 50 ± 0 | 0 ± 0 | 0 ± 0 | 0 ± 0 |"
    assert row + " abc1234 |" in page.read_text()
    # A summary with another number of tasks than the table's columns is an error.
    record["tasks"] = {"task1": 1.0}
    (summaries / "pmt-iql-none-s1.json").write_text(json.dumps(record))
    wrong = results("--page", str(page), "--summaries", str(summaries))
    assert wrong.returncode != 0 and "pmt-iql-none name different tasks" in wrong.stderr
    (summaries / "pmt-iql-none-s0.json").write_text(json.dumps(record))
    wrong = results("--page", str(page), "--summaries", str(summaries))
    assert wrong.returncode != 0 and "pmt-iql-none has 1 tasks" in wrong.stderr


def test_a_budget_table_gives_the_mean_at_each_budget_and_the_rest_at_the_last(
    tmp_path: Path,
) -> None:
    summaries = tmp_path / "summaries"
    summaries.mkdir()
    tasks = {"task1": 1.0, "task2": 0.5, "task3": 0.0, "task4": 0.0, "task5": 0.0}
    for seed, early in enumerate([0.1, 0.3]):
        final = {"success_mean": 0.3, "success_median": 0.0, "success_worst": 0.0}
        budgets = {str(s): {"summary": {**final, "success_mean": early}, "tasks": tasks} for s in
                   (10_000, 20_000, 30_000)}  # fmt: skip
        budgets["40000"] = {"summary": final, "tasks": tasks}
        record = {"commit": "abc1234", "summary": final, "tasks": tasks, "budgets": budgets}
        (summaries / f"pm-gciql-40k-s{seed}.json").write_text(json.dumps(record))
    page = _empty_page(tmp_path)
    args = ("--page", str(page), "--summaries", str(summaries))
    assert results(*args).returncode == 0
    # seeds, the mean at 10k ... 40k, then the 40k median, worst task and tasks.
    row = "| 2 | 20 ± 10 | 20 ± 10 | 20 ± 10 | 30 ± 0 | 0 ± 0 | 0 ± 0 | 100 / 50 / 0 / 0 / 0 |"
    assert row in page.read_text()
    del budgets["20000"]
    (summaries / "pm-gciql-40k-s1.json").write_text(json.dumps(record))
    wrong = results(*args)
    assert wrong.returncode != 0 and "pm-gciql-40k has no 20000-step budget" in wrong.stderr


def test_a_table_of_seen_and_held_out_missions_reads_them_from_the_summaries(
    tmp_path: Path,
) -> None:
    summaries = tmp_path / "summaries"
    summaries.mkdir()
    for seed, unseen in enumerate([0.6, 0.4]):
        summary = {"success_mean": 0.5, "success_median": 0.5, "success_worst": 0.1}
        summary |= {"success_seen": 0.5, "success_unseen": unseen}
        record = {"commit": "abc1234", "summary": summary, "tasks": {"go to the red ball": unseen}}
        (summaries / f"bai-bc-hindsight-s{seed}.json").write_text(json.dumps(record))
    page = _empty_page(tmp_path)
    args = ("--page", str(page), "--summaries", str(summaries))
    assert results(*args).returncode == 0
    row = "| BC, text | yes | 2 | 50 ± 0 | 50 ± 0 | 10 ± 0 | 50 ± 0 | 50 ± 10 | abc1234 |"
    assert row in page.read_text()
    # A run evaluated without its training missions has no seen / unseen split: an error.
    del summary["success_unseen"]
    (summaries / "bai-bc-hindsight-s1.json").write_text(json.dumps(record))
    wrong = results(*args)
    assert wrong.returncode != 0 and "bai-bc-hindsight has no success_unseen" in wrong.stderr


def _recorded_tables():  # scripts/ is not a package: import the module by path
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "recorded_tables", ROOT / "scripts" / "recorded_tables.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_speed_table_reads_every_round_and_divides_by_ogbench_in_the_same_run(
    tmp_path: Path,
) -> None:
    rates = {
        "plain loop, pre-drawn batches": [90.0, 100.0],
        "plain loop, pre-drawn, compiled update": [150.0, 120.0],
        "gcrl via Lightning, dict observations": [80.0, 70.0],
        "OGBench impls, update": [200.0, 190.0],
        "OGBench impls, sample + update": [160.0, 100.0],
    }
    record = {
        "commit": "abc1234",
        "date": "2026-12-07",
        "rows": [{"algorithm": "GCIQL", "batch": 256, "hidden": "256,256", "rates": rates}],
    }
    (tmp_path / "train.json").write_text(json.dumps(record))
    table = _recorded_tables().training_speed(tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| GCIQL"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "256, 2 x 256"
    assert cells[2] == "100 (90–100)" and cells[3] == "150 (120–150)"
    # compiled 150 / OGBench's update 200; best fit 80 / OGBench's loop 160.
    assert cells[-2:] == ["0.75", "0.50"]
    assert "abc1234" in table


def test_the_side_by_side_table_gives_each_implementations_spread_over_seeds(
    tmp_path: Path,
) -> None:
    for side, seed, means in [
        ("gcrl", 0, [0.2, 0.4]),
        ("gcrl", 1, [0.4, 0.6]),
        ("ogbench", 0, [0.1, 0.3]),
    ]:
        curve = {
            "algorithm": "gcivl",
            "side": side,
            "seed": seed,
            "steps": [10_000, 20_000],
            "mean": means,
            "success": {"task1": [means[0], means[1]], "task2": [0.0, 0.2]},
            "steps_per_second": 50.0,
            "wall_seconds": 600.0,
            "episodes": 20,
            "commit": "abc1234",
        }
        (tmp_path / f"{side}-gcivl-s{seed}.json").write_text(json.dumps(curve))
    table = _recorded_tables().side_by_side(tmp_path)
    rows = [line for line in table.splitlines() if line.startswith("| GCIVL")]
    gcrl = [c.strip() for c in rows[0].strip("|").split("|")]
    assert gcrl[1:5] == ["gcrl", "2", "30 ± 10", "50 ± 10"]
    assert gcrl[5] == "50 / 20"  # per task at the last step, mean over the seeds
    assert rows[1].split("|")[2].strip() == "OGBench (impls)"
    assert "GCBC (gcrl, ogbench)" in table  # what has not run is named


def test_the_cross_evaluation_table_sets_each_policy_beside_its_own_evaluation(
    tmp_path: Path,
) -> None:
    own = {
        "algorithm": "gcivl",
        "side": "ogbench",
        "seed": 1,
        "steps": [10_000, 40_000],
        "mean": [0.1, 0.5],
        "success": {"task1": [0.2, 1.0], "task2": [0.0, 0.0]},
    }
    (tmp_path / "ogbench-gcivl-s1.json").write_text(json.dumps(own))
    (tmp_path / "cross").mkdir()
    cross = {
        "run": "ogbench-gcivl-s1",
        "evaluator": "gcrl",
        "episodes": 20,
        "success": {"task2": 0.05, "task1": 0.95},
        "mean": 0.5,
    }
    (tmp_path / "cross" / "ogbench-gcivl-s1-gcrl-evaluator.json").write_text(json.dumps(cross))
    table = _recorded_tables().cross_evaluation(tmp_path)
    row = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    # tasks in the run's order, whatever the cross record's order; the own column at 40k
    assert row == ["OGBench GCIVL seed 1, 40k steps", "gcrl", "20", "95 / 5", "50", "100 / 0", "50"]
    cross["success"] = {"task1": 1.0}
    (tmp_path / "cross" / "ogbench-gcivl-s1-gcrl-evaluator.json").write_text(json.dumps(cross))
    with pytest.raises(SystemExit, match="tasks"):
        _recorded_tables().cross_evaluation(tmp_path)


def test_the_cross_evaluators_pipe_carries_arrays_exactly() -> None:
    import importlib.util
    import os

    import numpy as np

    path = Path(__file__).parents[1] / "scripts" / "cross_evaluate.py"
    spec = importlib.util.spec_from_file_location("cross_evaluate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    read_end, write_end = os.pipe()  # a real pipe: it cannot seek, as np.save's tofile needs
    with os.fdopen(write_end, "wb") as out, os.fdopen(read_end, "rb") as inp:
        observations = np.arange(6, dtype=np.float32).reshape(3, 2) / 7
        goals = np.array([[1e-8, -2.5]], dtype=np.float32)
        module._write(out, observations, goals)
        np.testing.assert_array_equal(module._read(inp), observations)
        back = module._read(inp)
        assert back.dtype == np.float32 and back.shape == (1, 2)
        np.testing.assert_array_equal(back, goals)
