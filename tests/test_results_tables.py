"""docs/results.md's generated tables are what the committed run summaries say."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
