"""PNG plots: per-task success of an evaluation, and learning curves of a training run.

Uses matplotlib's non-interactive Agg backend (no display needed); install with the ``eval``
extra.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gcrl.errors import ConfigError, DatasetNotFoundError
from gcrl.evaluation import EvaluationReport
from gcrl.io import atomic_path


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'gcrl[eval]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    with atomic_path(out, overwrite=True) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return out


def plot_task_success(report: EvaluationReport, path: str | os.PathLike[str]) -> Path:
    """A bar per task (success rate, %), with the mean, median and worst task as lines;
    unseen tasks hatched. Returns the path written."""
    plt = _pyplot()
    names = [t.name for t in report.tasks]
    rates = report.success_rates * 100
    figure, axes = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.5))
    bars = axes.bar(range(len(names)), rates, color="#4c78a8")
    for bar, task in zip(bars, report.tasks, strict=True):
        if task.seen is False:
            bar.set_hatch("//")
            bar.set_facecolor("#f58518")
    for value, style, label in (
        (report.mean, "-", "mean"),
        (report.median, "--", "median"),
        (report.worst, ":", "worst"),
    ):
        axes.axhline(value * 100, color="black", linestyle=style, linewidth=1, label=label)
    axes.set_xticks(range(len(names)), names, rotation=45 if len(names) > 5 else 0, ha="right")
    axes.set_ylim(0, 100)
    axes.set_ylabel("success (%)")
    axes.set_title(f"{report.suite}: {report.tasks[0].episodes} episodes per task")
    axes.legend(loc="upper right", fontsize="small")
    try:
        return _save(figure, path)
    finally:
        plt.close(figure)


def find_metrics(checkpoint: str | os.PathLike[str]) -> Path:
    """The ``metrics.csv`` of the run a checkpoint belongs to (``<run>/checkpoints/x.ckpt`` ->
    ``<run>/metrics.csv``)."""
    run = Path(checkpoint).resolve().parent
    for directory in (run, run.parent):
        if (directory / "metrics.csv").is_file():
            return directory / "metrics.csv"
    raise DatasetNotFoundError(f"{checkpoint}: no metrics.csv beside it or its run directory")


def read_metrics(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each logged metric of a Lightning CSV log as ``(steps, values)``, in step order."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        step = row.get("step")
        if not step:
            continue
        for key, value in row.items():
            if key in ("step", "epoch") or value in ("", None):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(float(step))
            ys.append(float(value))
    return {k: (np.array(xs), np.array(ys)) for k, (xs, ys) in series.items()}


def plot_learning_curves(
    metrics: str | os.PathLike[str],
    path: str | os.PathLike[str],
    keys: Sequence[str] | None = None,
) -> Path:
    """One panel per metric (all losses and evaluation successes by default; per-task
    metrics ``name/task/<task>`` left out) against the training step. Returns the path."""
    plt = _pyplot()
    series = read_metrics(metrics)
    if keys is None:
        keys = sorted(k for k in series if "/task/" not in k and not k.startswith("lr"))
    missing = [k for k in keys if k not in series]
    if missing or not keys:
        raise ConfigError(f"{metrics}: no metric {missing[0] if missing else 'logged'!r}")
    columns = min(3, len(keys))
    rows = -(-len(keys) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        steps, values = series[key]
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_title(key, fontsize="small")
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    figure.tight_layout()
    try:
        return _save(figure, path)
    finally:
        plt.close(figure)
