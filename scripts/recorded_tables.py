"""The tables of docs/results.md written from measurement records rather than run summaries:
the speed tables (``benchmarks/train.py --json`` writes ``results/benchmarks/*.json``) and
the side-by-side with OGBench's own code (``scripts/ogbench_side_by_side.py`` writes
``results/side/*.json``). ``scripts/results.py table`` calls these by marker name.

Each function returns the markdown of one table, or raises ``SystemExit`` naming the record
that is missing or incomplete.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "results"
BENCHMARKS = RESULTS / "benchmarks"
SIDE = RESULTS / "side"

#: benchmarks/train.py's method names -> the speed table's columns, in order.
TRAIN_COLUMNS = {
    "bare PyTorch MLP": "bare PyTorch (GCBC)",
    "plain loop, pre-drawn batches": "plain loop, eager",
    "plain loop, pre-drawn, compiled update": "compiled update",
    "gcrl via Lightning, dict observations": "`gcrl fit`, eager",
    "gcrl via Lightning, array observations": "`gcrl fit`, eager, array observations",
    "gcrl via Lightning, dict, compile_step": "`gcrl fit`, `compile_step`",
    "gcrl via Lightning, dict, compile_step, updates_per_batch 8": (
        "`gcrl fit`, `compile_step`, `updates_per_batch 8`"
    ),
    "OGBench impls, update": "OGBench update",
    "OGBench impls, sample + update": "OGBench sample + update",
}
OGBENCH_UPDATE, OGBENCH_LOOP = "OGBench impls, update", "OGBench impls, sample + update"
COMPILED = "plain loop, pre-drawn, compiled update"
#: The order of the algorithm family in every table.
ALGORITHMS = ("GCBC", "GCIVL", "GCIQL", "HIQL", "QRL", "CRL")


def _record(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SystemExit(f"{path}: no such record (run the command above its table)")
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def _rate(rounds: list[float]) -> str:
    """The best round, with the range of the rounds: steps per second, 3 significant figures."""
    best, low = max(rounds), min(rounds)
    return f"{best:.3g}" if len(rounds) == 1 else f"{best:.3g} ({low:.3g}–{best:.3g})"


def _size(batch: int, hidden: str) -> str:
    widths = hidden.split(",")
    return f"{batch}, {len(widths)} x {widths[0]}"


def training_speed(records: Path = BENCHMARKS) -> str:
    """Steps per second of each algorithm, size and method of ``results/benchmarks/train.json``,
    and the ratios to OGBench's own agents measured in the same run."""
    record = _record(records / "train.json")
    rows = sorted(
        record["rows"],
        key=lambda r: (r["batch"], len(r["hidden"]), ALGORITHMS.index(r["algorithm"])),
    )
    methods = [m for m in TRAIN_COLUMNS if any(m in r["rates"] for r in rows)]
    header = ["algorithm", "batch, networks", *(TRAIN_COLUMNS[m] for m in methods)]
    header += ["compiled / OGBench update", "best `gcrl fit` / OGBench sample + update"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for row in rows:
        rates = row["rates"]
        cells = [_rate(rates[m]) if m in rates else "" for m in methods]
        best = {m: max(v) for m, v in rates.items()}
        fits = [v for m, v in best.items() if m.startswith("gcrl via Lightning")]
        update = (
            f"{best[COMPILED] / best[OGBENCH_UPDATE]:.2f}"
            if COMPILED in best and OGBENCH_UPDATE in best
            else ""
        )
        fit = f"{max(fits) / best[OGBENCH_LOOP]:.2f}" if fits and OGBENCH_LOOP in best else ""
        size = _size(row["batch"], row["hidden"])
        lines.append("| " + " | ".join([row["algorithm"], size, *cells, update, fit]) + " |")
    lines += ["", f"Measured at commit {record['commit']} on {record['date']}."]
    return "\n".join(lines)


def ddp_speed(records: Path = BENCHMARKS) -> str:
    """GCBC through ``gcrl fit`` on one and two CPU processes (``results/benchmarks/ddp.json``)."""
    record = _record(records / "ddp.json")
    if not record.get("ddp"):
        raise SystemExit(f"{records / 'ddp.json'}: no ddp measurements (--ddp)")
    lines = ["| batch, networks | 1 process | 2 processes | ratio |", "|---|---:|---:|---:|"]
    for size in record["ddp"]:
        one, two = size["rates"]["1"], size["rates"]["2"]
        batch = _size(size["batch"], size["hidden"])
        lines.append(f"| {batch} | {one:.3g} | {two:.3g} | {two / one:.2f} |")
    lines += ["", f"Measured at commit {record['commit']} on {record['date']}."]
    return "\n".join(lines)


def layouts_speed(records: Path = BENCHMARKS) -> str:
    """Each multi-task layout's plain-loop rate against the shared MLP's
    (``results/benchmarks/layouts.json``)."""
    record = _record(records / "layouts.json")
    lines = [
        "| algorithm | hidden | layout | steps/s | vs shared (mean of rounds) | range |",
        "|---|---|---|---:|---:|---|",
    ]
    for row in record["layouts"]:
        low, high = row["ratio_spread"]
        lines.append(
            f"| {row['algorithm']} | {row['hidden']} | {row['layout']} | {row['rate']:.3g} | "
            f"{row['ratio']:.2f} | {low:.2f}–{high:.2f} |"
        )
    lines += ["", f"Measured at commit {record['commit']} on {record['date']}."]
    return "\n".join(lines)


def _cell(values: np.ndarray) -> str:
    """Percent of fractions: the mean, with the standard deviation over seeds if several."""
    if len(values) == 1:
        return f"{100 * values[0]:.0f}"
    return f"{100 * values.mean():.0f} ± {100 * values.std():.0f}"


def side_by_side(records: Path = SIDE, missing: bool = True) -> str:
    """Mean success over OGBench's five tasks at each evaluation, per algorithm and
    implementation, over the seeds of ``results/side/*.json``; then the per-task success at
    the last evaluation, the training rate and the wall time; with ``missing``, a line
    naming the runs not yet made."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in sorted(records.glob("*-s*.json")):
        curve = json.loads(path.read_text())
        runs.setdefault((curve["algorithm"], curve["side"]), []).append(curve)
    if not runs:
        raise SystemExit(f"{records}: no side-by-side records")
    steps = next(iter(runs.values()))[0]["steps"]
    budgets = [f"{s // 1000}k" for s in steps]
    header = ["algorithm", "implementation", "seeds", *budgets, f"per task at {budgets[-1]}"]
    header += ["steps/s", "minutes per run", "episodes per task", "commit"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 3) + "---|"]
    order = {a.lower(): i for i, a in enumerate(ALGORITHMS)}
    for (algorithm, side), curves in sorted(
        runs.items(), key=lambda item: (order[item[0][0]], item[0][1] != "gcrl")
    ):
        if any(c["steps"] != steps for c in curves):
            raise SystemExit(f"{records}: {side} {algorithm} has other evaluation steps")
        means = np.array([c["mean"] for c in curves])
        cells = [_cell(means[:, i]) for i in range(len(steps))]
        tasks = curves[0]["success"]
        per_task = " / ".join(
            f"{100 * np.mean([c['success'][t][-1] for c in curves]):.0f}" for t in tasks
        )
        rate = np.mean([c["steps_per_second"] for c in curves])
        wall = np.mean([c["wall_seconds"] for c in curves]) / 60
        episodes = ", ".join(sorted({str(c["episodes"]) for c in curves}))
        commits = ", ".join(sorted({c.get("commit", "not recorded") for c in curves}))
        name = "gcrl" if side == "gcrl" else "OGBench (impls)"
        row = [algorithm.upper(), name, str(len(curves)), *cells, per_task]
        row += [f"{rate:.3g}", f"{wall:.0f}", episodes, commits]
        lines.append("| " + " | ".join(row) + " |")
    absent = [
        f"{a} ({', '.join(s for s in ('gcrl', 'ogbench') if (a.lower(), s) not in runs)})"
        for a in ALGORITHMS
        if any((a.lower(), s) not in runs for s in ("gcrl", "ogbench"))
    ]
    if missing and absent:
        lines += ["", "Not yet run at this release: " + ", ".join(absent) + "."]
    return "\n".join(lines)


def cross_evaluation(records: Path = SIDE) -> str:
    """Each framework's policy through the other's evaluator (``results/side/cross/*.json``,
    ``scripts/cross_evaluate.py``) beside the same policy's last evaluation by its own
    framework (``results/side/<run>.json``): success in percent, per task and their mean."""
    paths = sorted((records / "cross").glob("*.json"))
    if not paths:
        raise SystemExit(f"{records / 'cross'}: no cross-evaluation records")
    header = ["policy", "evaluator", "episodes per task", "per task", "mean"]
    header += ["own evaluator: per task", "mean"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---:|---:|---:|---:|---:|"]
    names = {"gcrl": "gcrl", "ogbench": "OGBench"}
    for path in paths:
        cross = json.loads(path.read_text())
        own = json.loads((records / f"{cross['run']}.json").read_text())
        tasks = list(own["success"])
        if sorted(cross["success"]) != sorted(tasks):
            raise SystemExit(f"{path}: tasks {sorted(cross['success'])} are not {cross['run']}'s")
        policy = f"{names[own['side']]} {own['algorithm'].upper()} seed {own['seed']}"
        policy += f", {own['steps'][-1] // 1000}k steps"
        row = [policy, names[cross["evaluator"]], str(cross["episodes"])]
        row += [" / ".join(f"{100 * cross['success'][t]:.0f}" for t in tasks)]
        row += [f"{100 * cross['mean']:.0f}"]
        row += [" / ".join(f"{100 * own['success'][t][-1]:.0f}" for t in tasks)]
        row += [f"{100 * own['mean'][-1]:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def large_data(records: Path = BENCHMARKS) -> str:
    """Training on a file larger than memory (``results/benchmarks/large_data.json``, written by
    ``benchmarks/large_data.py --json``): each method's row, then the mapped path's rates over
    the in-memory ones."""
    path = records / "large_data.json"
    record = _record(path)
    record.pop("data", None)  # the file's size: newer records only
    header = "| method | setup s | sampled rows/s | train steps/s | peak RSS MB | anon MB |"
    lines = [header, "|---|---:|---:|---:|---:|---:|"]
    for name, row in record.items():
        if "failed" in row:
            lines.append(f"| {name} | {row['failed']} after {row['seconds']:.0f} s | | | | |")
            continue
        lines.append(
            f"| {name} | {row['setup_s']:.1f} | {row['sampling']:,.0f} | "
            f"{row['steps_per_s']:.0f} | {row['peak_mb']:,.0f} | {row['anon_mb']:,.0f} |"
        )
    memory, mapped = record.get("in-memory", {}), record.get("mapped", {})
    if "sampling" not in memory or "sampling" not in mapped:
        raise SystemExit(f"{path}: needs an in-memory and a mapped row that both ran")
    lines += [
        "",
        f"Unbounded, mapped / in-memory: sampling {mapped['sampling'] / memory['sampling']:.2f}x, "
        f"training {mapped['steps_per_s'] / memory['steps_per_s']:.2f}x; anonymous memory "
        f"{mapped['anon_mb']:,.0f} MB against {memory['anon_mb']:,.0f} MB.",
    ]
    return "\n".join(lines)


def collect_speed(records: Path = BENCHMARKS) -> str:
    """Each recipe's recording rate beside its bare environment's
    (``results/benchmarks/collect.json``, written by ``benchmarks/collect.py --json``)."""
    record = _record(records / "collect.json")
    lines = [
        "| recipe | steps timed | bare env steps/s | recipe steps/s | s per 1000-step episode "
        "| recipe / bare env |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in record.items():
        lines.append(
            f"| {name} | {row['steps']} | {row['bare_env']:,.1f} | {row['recipe']:,.1f} | "
            f"{1000 / row['recipe']:,.1f} | {row['recipe'] / row['bare_env']:.2f} |"
        )
    return "\n".join(lines)


def visual_speed(records: Path = BENCHMARKS) -> str:
    """Visual GCBC's steps per second, gcrl beside OGBench's own agent
    (``results/benchmarks/visual.json``, written by ``benchmarks/visual.py --json``)."""
    path = records / "visual.json"
    rates = _record(path)["rates"]
    pairs = (
        ("gcrl, update", "OGBench impls, update"),
        ("gcrl fit", "OGBench impls, sample + update"),
    )
    if any(name not in rates for pair in pairs for name in pair):
        raise SystemExit(f"{path}: needs gcrl's and OGBench's rates (--impls)")
    lines = ["| what is timed | gcrl steps/s | OGBench steps/s | gcrl / OGBench |"]
    lines.append("|---|---:|---:|---:|")
    for label, (ours, theirs) in zip(
        ("update on pre-drawn batches", "sampling + update (`gcrl fit` / OGBench's loop)"),
        pairs,
        strict=True,
    ):
        lines.append(
            f"| {label} | {rates[ours]:.2f} | {rates[theirs]:.2f} | "
            f"{rates[ours] / rates[theirs]:.2f} |"
        )
    return "\n".join(lines)


#: Marker name -> the function writing that table.
RECORDED_TABLES: dict[str, Callable[[], str]] = {
    "speed-train": training_speed,
    "speed-ddp": ddp_speed,
    "speed-layouts": layouts_speed,
    "large-data": large_data,
    "collect-speed": collect_speed,
    "visual-speed": visual_speed,
    "ogbench-side-by-side": side_by_side,
    "ogbench-side-by-side-cube-single": lambda: side_by_side(SIDE / "cube-single"),
    # gcrl's runs with networks version 2 (LayerNorm before the activation), kept beside.
    "ogbench-side-by-side-cube-single-networks-v2": lambda: side_by_side(
        SIDE / "cube-single" / "networks-v2", missing=False
    ),
    "ogbench-cross-evaluation": cross_evaluation,
}
