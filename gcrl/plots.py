"""PNG plots: per-task success of an evaluation, and learning curves of a training run.

Uses matplotlib's non-interactive Agg backend (no display needed); install with the ``eval``
extra. Success is drawn in percent on a y-axis padded to :data:`SUCCESS_YLIM`, so lines at
0 % and 100 % stay visible above the axis; the mean, median and worst task each have their
own colour, line style and legend entry, and every curve is drawn with markers and lines, so
a single logged point shows as a marker and several as a line.

:func:`task_success_figure` and :func:`learning_curves_figure` return the matplotlib figure
(for notebooks and tests; close it with ``matplotlib.pyplot.close``); :func:`plot_task_success`
and :func:`plot_learning_curves` write it as a PNG.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gcrl.errors import ConfigError, DatasetNotFoundError
from gcrl.evaluation import EvaluationReport
from gcrl.io import atomic_path

#: Y-limits of every success axis, in percent: padded so 0 % and 100 % lines are visible.
SUCCESS_YLIM = (-3.0, 103.0)
#: The x-axis of learning curves.
STEP_LABEL = "optimiser step"
SUCCESS_LABEL = "success (%)"

#: One look per summary statistic, shared by both plots. Drawn widest first, so coinciding
#: lines (all tasks at 0 %) still show as nested stripes of each colour.
_SUMMARY_STYLES: dict[str, dict[str, Any]] = {
    "worst": {"color": "#d62728", "linestyle": ":", "linewidth": 4.0, "marker": "v"},
    "median": {"color": "#2ca02c", "linestyle": "--", "linewidth": 2.6, "marker": "s"},
    "mean": {"color": "black", "linestyle": "-", "linewidth": 1.2, "marker": "o"},
    "seen": {"color": "#4c78a8", "linestyle": "-.", "linewidth": 1.5, "marker": "^"},
    "unseen": {"color": "#f58518", "linestyle": "-.", "linewidth": 1.5, "marker": "D"},
}
_SUMMARY = re.compile(r"^(?P<prefix>.*)success_(?P<stat>mean|median|worst|seen|unseen)$")
_SPLITS = {"": "train", "val/": "validation", "test/": "test"}
#: Legend order (drawing order is widest line first).
_LEGEND = ("mean", "median", "worst", "seen", "unseen", "train", "validation", "test")
_SPLIT_STYLES = {
    "train": {"color": "#4c78a8", "linestyle": "-", "marker": "o"},
    "validation": {"color": "#f58518", "linestyle": "--", "marker": "s"},
    "test": {"color": "#54a24b", "linestyle": ":", "marker": "^"},
}


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


def _success_axis(axes: Any) -> None:
    """Percent y-axis with 0 % and 100 % clear of the frame, and a light grid."""
    axes.set_ylim(*SUCCESS_YLIM)
    axes.set_yticks(range(0, 101, 20))
    axes.set_ylabel(SUCCESS_LABEL)
    axes.grid(axis="y", color="0.88", linewidth=0.8)
    axes.set_axisbelow(True)


def task_success_figure(report: EvaluationReport) -> Any:
    """The figure of :func:`plot_task_success` (the caller closes it)."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    names = [t.name for t in report.tasks]
    rates = report.success_rates * 100
    figure, axes = plt.subplots(figsize=(max(5.0, 0.55 * len(names) + 3.0), 3.8))
    bars = axes.bar(range(len(names)), rates, width=0.7, color="#9ecae9", edgecolor="#4c78a8")
    for bar, task, rate in zip(bars, report.tasks, rates, strict=True):
        if task.seen is False:
            bar.set_hatch("//")
            bar.set_facecolor("#fdd0a2")
            bar.set_edgecolor("#f58518")
        # The rate on each bar, so a 0 % bar (no bar at all) still reads as 0 %.
        inside = rate > 88
        axes.text(
            bar.get_x() + bar.get_width() / 2,
            rate - 2 if inside else rate + 1.5,
            f"{rate:.0f}%",
            ha="center",
            va="top" if inside else "bottom",
            fontsize="x-small",
            color="0.25",
        )
    lines = []
    for stat, value in (("worst", report.worst), ("median", report.median), ("mean", report.mean)):
        style = {k: v for k, v in _SUMMARY_STYLES[stat].items() if k != "marker"}
        lines.append(axes.axhline(value * 100, label=f"{stat} {value:.0%}", zorder=3, **style))
    handles = lines[::-1]  # mean, median, worst
    if any(t.seen is False for t in report.tasks):
        handles.append(Patch(facecolor="#9ecae9", edgecolor="#4c78a8", label="seen task"))
        handles.append(
            Patch(facecolor="#fdd0a2", edgecolor="#f58518", hatch="//", label="unseen task")
        )
    rotate = len(names) > 5 or max(len(n) for n in names) > 10
    axes.set_xticks(range(len(names)), names, rotation=45 if rotate else 0)
    if rotate:
        for label in axes.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    axes.set_xlim(-0.6, len(names) - 0.4)
    _success_axis(axes)
    axes.set_ylabel("success rate (%)")
    axes.set_xlabel("task")
    counts = sorted({t.episodes for t in report.tasks})
    each = f"{counts[0]} episodes each" if len(counts) == 1 else "episodes per task vary"
    axes.set_title(f"{report.suite}: success per task ({each}, seed {report.seed})")
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return figure


def plot_task_success(report: EvaluationReport, path: str | os.PathLike[str]) -> Path:
    """A bar per task (success rate, %, written on the bar), with the mean, median and worst
    task as lines; unseen tasks hatched. Returns the path written."""
    figure = task_success_figure(report)
    try:
        return _save(figure, path)
    finally:
        _pyplot().close(figure)


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


@dataclass
class _Panel:
    """One axes of the learning curves: its title, whether it shows success (in %), and its
    curves as ``(metric key, legend label or "", style)``."""

    title: str
    success: bool
    curves: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


def _is_success(key: str) -> bool:
    return "success" in key.rsplit("/", 1)[-1] or "/success/" in f"/{key}"


def _panels(keys: Sequence[str]) -> list[_Panel]:
    """Group ``keys``: the success summaries of one prefix (``eval/success_mean``, ``_median``,
    ``_worst``, ...) share a panel, as do a metric and its ``val/`` and ``test/`` versions;
    every other key has its own."""
    panels: dict[str, _Panel] = {}
    chosen = set(keys)
    for key in keys:
        summary = _SUMMARY.match(key)
        if summary:
            prefix, stat = summary["prefix"], summary["stat"]
            title = f"{prefix.rstrip('/') or 'evaluation'} success"
            panel = panels.setdefault(f"summary:{prefix}", _Panel(title, success=True))
            panel.curves.append((key, stat, _SUMMARY_STYLES[stat]))
            continue
        split, base = "", key
        for prefix in ("val/", "test/"):
            if key.startswith(prefix) and key[len(prefix) :] in chosen:
                split, base = prefix, key[len(prefix) :]
        label = _SPLITS[split]
        panel = panels.setdefault(base, _Panel(base, success=_is_success(base)))
        panel.curves.append((key, label, _SPLIT_STYLES[label]))
    order = [*_SUMMARY_STYLES, *_SPLIT_STYLES]
    for panel in panels.values():
        panel.curves.sort(key=lambda curve: order.index(curve[1]))
        if len(panel.curves) == 1 and panel.curves[0][1] == "train":
            panel.curves[0] = (panel.curves[0][0], "", panel.curves[0][2])  # no legend needed
    return list(panels.values())


def _ylabel(panel: _Panel) -> str:
    if panel.success:
        return SUCCESS_LABEL
    name = panel.title.rsplit("/", 1)[-1]
    return "loss" if name.endswith("loss") else name


def learning_curves_figure(
    metrics: str | os.PathLike[str], keys: Sequence[str] | None = None
) -> Any:
    """The figure of :func:`plot_learning_curves` (the caller closes it)."""
    plt = _pyplot()
    series = read_metrics(metrics)
    if keys is None:
        keys = sorted(
            k
            for k in series
            if "/task/" not in k and not k.startswith("lr") and not k.startswith("eval/success/")
        )
    missing = [k for k in keys if k not in series]
    if missing or not keys:
        raise ConfigError(f"{metrics}: no metric {missing[0] if missing else 'logged'!r}")
    panels = _panels(keys)
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.3 * columns, 3.2 * rows + 0.5), squeeze=False
    )
    for ax, panel in zip(axes.flat, panels, strict=False):
        for key, label, style in panel.curves:
            steps, values = series[key]
            if panel.success:
                values = values * 100
            many = len(steps) > 40
            ax.plot(
                steps,
                values,
                label=label or None,
                markersize=3 if many else 5,
                markevery=max(1, len(steps) // 40),
                linewidth=style.get("linewidth", 1.5),
                **{k: v for k, v in style.items() if k != "linewidth"},
            )
        ax.set_title(panel.title, fontsize="medium")
        ax.set_xlabel(STEP_LABEL)
        if panel.success:
            _success_axis(ax)
        else:
            ax.set_ylabel(_ylabel(panel))
            ax.grid(color="0.9", linewidth=0.8)
            ax.set_axisbelow(True)
        if any(label for _, label, _ in panel.curves):
            handles, labels = ax.get_legend_handles_labels()
            legend = sorted(zip(labels, handles, strict=True), key=lambda h: _LEGEND.index(h[0]))
            ax.legend([h for _, h in legend], [label for label, _ in legend], fontsize="small")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    run = Path(metrics).resolve().parent
    figure.suptitle(f"Learning curves: {run.parent.name}/{run.name}", fontsize="large")
    figure.tight_layout()
    return figure


def plot_learning_curves(
    metrics: str | os.PathLike[str],
    path: str | os.PathLike[str],
    keys: Sequence[str] | None = None,
) -> Path:
    """One panel per metric against the optimiser step, all losses and the evaluation success
    summaries by default (per-task metrics ``name/task/<task>`` and ``eval/success/<task>``
    left out). A metric's ``val/`` and ``test/`` versions share its panel, as the mean, median
    and worst success of one prefix do (in %). Returns the path written."""
    figure = learning_curves_figure(metrics, keys)
    try:
        return _save(figure, path)
    finally:
        _pyplot().close(figure)
