"""gcrl.plots and the GIFs of gcrl.evaluation: readable as a person sees them (titles, axis
labels, 0 % and 100 % lines clear of the frame, curves with markers; frames of at least
256 x 256 with the task, step and success drawn in)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from gcrl.datasets import Task
from gcrl.envs.base import Step
from gcrl.evaluation import (
    MIN_VIDEO_SIZE,
    EvaluationReport,
    TaskResult,
    caption_frame,
    evaluate,
    upscale,
    write_videos,
)
from gcrl.plots import (
    STEP_LABEL,
    SUCCESS_YLIM,
    learning_curves_figure,
    plot_learning_curves,
    plot_task_success,
    task_success_figure,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _report(rates: Sequence[float], seen: Sequence[bool | None] | None = None) -> EvaluationReport:
    flags = seen if seen is not None else [None] * len(rates)
    tasks = tuple(
        TaskResult(f"task{i + 1}", "t", 4, r, r, 10.0, s)
        for i, (r, s) in enumerate(zip(rates, flags, strict=True))
    )
    return EvaluationReport("toy-suite", 3, tasks)


def _assert_success_axis(axes: object) -> None:
    low, high = axes.get_ylim()  # type: ignore[attr-defined]
    assert (low, high) == SUCCESS_YLIM
    assert low <= -2 and high >= 102  # 0 % and 100 % lines clear of the frame
    assert "%" in axes.get_ylabel()  # type: ignore[attr-defined]


def test_task_success_plot_has_title_labels_padded_limits_and_distinct_summary_lines(
    tmp_path: Path,
) -> None:
    figure = task_success_figure(_report([0.0, 0.0, 0.5, 1.0], [True, True, True, False]))
    try:
        (axes,) = figure.axes
        assert "toy-suite" in axes.get_title() and "4 episodes" in axes.get_title()
        assert axes.get_xlabel() == "task"
        _assert_success_axis(axes)
        lines = {line.get_label().split()[0]: line for line in axes.get_lines()}
        assert set(lines) == {"mean", "median", "worst"}
        assert lines["worst"].get_ydata()[0] == 0.0 and lines["mean"].get_ydata()[0] == 37.5
        looks = {(str(line.get_color()), line.get_linestyle()) for line in lines.values()}
        assert len({c for c, _ in looks}) == 3 and len({s for _, s in looks}) == 3
        legend = [t.get_text() for t in axes.get_legend().get_texts()]
        assert legend[:3] == ["mean 38%", "median 25%", "worst 0%"]
        assert "unseen task" in legend
        # Every bar's rate is written on it, the 0 % ones too.
        assert [t.get_text() for t in axes.texts] == ["0%", "0%", "50%", "100%"]
    finally:
        plt.close(figure)
    out = plot_task_success(_report([0.0, 1.0]), tmp_path / "s.png")
    assert out.read_bytes()[:8] == PNG
    width, height = Image.open(out).size
    assert width >= 500 and height >= 350


def _write_metrics(path: Path) -> Path:
    lines = ["actor/loss,epoch,eval/success/task3,eval/success_mean,eval/success_worst,step,"
             "val/actor/loss"]  # fmt: skip
    lines += [f"{1 / (1 + s):.4f},0,,,,{s}," for s in range(10)]
    lines += [",0,0.0,0.5,0.0,9,", ",0,,,,9,0.7"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_learning_curves_have_titles_labels_and_visible_single_points(tmp_path: Path) -> None:
    metrics = _write_metrics(tmp_path / "metrics.csv")
    figure = learning_curves_figure(metrics)
    try:
        assert figure._suptitle is not None and "Learning curves" in figure._suptitle.get_text()
        panels = [ax for ax in figure.axes if ax.get_visible()]
        # Per-task success left out; validation shares its metric's panel.
        assert [ax.get_title() for ax in panels] == ["actor/loss", "eval success"]
        loss, success = panels
        for ax in panels:
            assert ax.get_xlabel() == STEP_LABEL and ax.get_ylabel()
        assert loss.get_ylabel() == "loss"
        _assert_success_axis(success)
        for ax in panels:
            for line in ax.get_lines():  # markers and lines, so one point shows, many join
                assert line.get_marker() not in ("None", "", None, " ")
                assert line.get_linestyle() not in ("None", "", " ")
        curves = {line.get_label(): line for line in loss.get_lines()}
        assert len(curves["validation"].get_xdata()) == 1  # the lone point, as a marker
        assert len(curves["train"].get_xdata()) == 10
        stats = {line.get_label(): line for line in success.get_lines()}
        assert set(stats) == {"mean", "worst"}
        assert list(stats["mean"].get_ydata()) == [50.0]  # drawn in percent
        assert [t.get_text() for t in success.get_legend().get_texts()] == ["mean", "worst"]
    finally:
        plt.close(figure)
    figure = learning_curves_figure(metrics, keys=["eval/success/task3"])
    try:
        (ax,) = [ax for ax in figure.axes if ax.get_visible()]
        _assert_success_axis(ax)
    finally:
        plt.close(figure)
    out = plot_learning_curves(metrics, tmp_path / "c.png")
    assert out.read_bytes()[:8] == PNG


def test_upscale_is_an_integer_nearest_neighbour_enlargement() -> None:
    frame = np.arange(128 * 128 * 3, dtype=np.uint32).reshape(128, 128, 3).astype(np.uint8)
    big = upscale(frame)
    assert big.shape == (256, 256, 3) and big.dtype == np.uint8
    np.testing.assert_array_equal(big[::2, ::2], frame)
    np.testing.assert_array_equal(big[1::2, 1::2], frame)
    assert upscale(np.zeros((480, 480, 3), np.uint8)).shape == (480, 480, 3)
    assert upscale(np.zeros((40, 60, 4), np.uint8)).shape == (280, 420, 3)  # x7, alpha dropped
    assert upscale(np.zeros((100, 30), np.uint8)).shape == (900, 270, 3)


def _band(image: np.ndarray) -> np.ndarray:
    return image[:20, :200]


def test_caption_is_drawn_in_the_top_band_with_a_status_colour() -> None:
    frame = np.full((128, 128, 3), 200, np.uint8)
    plain = upscale(frame)
    success = caption_frame(frame, "task3", 41, "success")
    running = caption_frame(frame, "task3", 41, "running")
    assert success.shape == plain.shape == (256, 256, 3)
    assert (_band(success) != _band(plain)).any(axis=2).mean() > 0.5  # band and text drawn
    np.testing.assert_array_equal(success[-100:], plain[-100:])  # the scene below untouched
    # Text: bright pixels on the darkened band; the status word in green or yellow.
    assert (_band(success).min(axis=2) > 220).sum() > 30
    green = (success[..., 1] > 180) & (success[..., 0] < 160) & (success[..., 2] < 160)
    yellow = (running[..., 0] > 200) & (running[..., 1] > 160) & (running[..., 2] < 130)
    assert green[:20].sum() > 10 and not green[20:].any()
    assert yellow[:20].sum() > 10 and not (_band(success) == _band(running)).all()
    later = caption_frame(frame, "task3", 42, "success")
    assert not (_band(later) == _band(success)).all()  # the step number is drawn

    def band_rows(image: np.ndarray) -> int:  # column 0 is padding: dark only in the band
        return int((image[:, 0, 0] < 100).sum())

    long = caption_frame(frame, "pick up the red ball behind you then open the door", 1)
    short = caption_frame(frame, "t", 1)
    assert band_rows(long) >= 2 * band_rows(short) > 10  # wrapped onto several lines


@dataclass
class _CountingEnv:
    """Succeeds at step 3 of task 0's episodes, never in task 1; 64 x 64 frames."""

    task: int = 0
    steps: int = 0
    renders: list[int] = field(default_factory=list)

    def reset(self, task: int, seed: int) -> np.ndarray:
        self.task, self.steps = task, 0
        return np.zeros(2, np.float32)

    def step(self, action: np.ndarray) -> Step:
        self.steps += 1
        hit = self.task == 0 and self.steps == 3
        return Step(np.full(2, self.steps, np.float32), float(hit), self.steps >= 5, hit)

    def render(self) -> np.ndarray:
        self.renders.append(self.steps)
        return np.full((64, 64, 3), 40 * self.steps, np.uint8)

    def close(self) -> None:
        pass


@dataclass
class _Suite:
    name: str = "toy"
    tasks: tuple[Task, ...] = (Task("reach", "reach"), Task("push", "push"))
    max_steps: int = 5
    envs: list[_CountingEnv] = field(default_factory=list)

    def make_env(self, render: bool = False) -> _CountingEnv:
        self.envs.append(_CountingEnv())
        return self.envs[-1]


def _zeros(observations: object, tasks: Sequence[Task]) -> np.ndarray:
    return np.zeros((len(tasks), 1), np.float32)


def test_rollouts_record_per_frame_success_and_gifs_are_large_and_captioned(
    tmp_path: Path,
) -> None:
    toy = _Suite()
    report = evaluate(_zeros, toy, episodes=3, num_envs=2, record=1)
    assert set(report.videos) == set(report.video_success) == {"reach-0", "push-0"}
    # Success once reached (step 3), never before; frame 0 is the reset.
    assert report.video_success["reach-0"] == [False, False, False, True, True, True]
    assert report.video_success["push-0"] == [False] * 6
    assert sum(len(env.renders) for env in toy.envs) == 12  # recorded episodes only
    paths = write_videos(report, tmp_path / "videos", fps=10)
    assert sorted(p.name for p in paths) == ["push-0.gif", "reach-0.gif"]
    raw = report.videos["reach-0"]
    with Image.open(tmp_path / "videos" / "reach-0.gif") as gif:
        assert min(gif.size) >= MIN_VIDEO_SIZE and gif.n_frames == len(raw)
        frames = []
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append(np.asarray(gif.convert("RGB")))
    for frame, plain in zip(frames, raw, strict=True):
        assert frame.shape == (256, 256, 3)
        assert (_band(frame) != _band(upscale(plain))).any()
        np.testing.assert_array_equal(frame[-150:], upscale(plain)[-150:])

    def green(image: np.ndarray) -> int:
        band = image[:20].astype(int)
        return int(((band[..., 1] > 180) & (band[..., 0] < 160) & (band[..., 2] < 160)).sum())

    assert [green(f) > 10 for f in frames] == report.video_success["reach-0"]
    with Image.open(tmp_path / "videos" / "push-0.gif") as gif:
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB"))[:20].astype(int)
    assert ((last[..., 0] > 200) & (last[..., 1] < 160) & (last[..., 2] < 160)).sum() > 10  # red
