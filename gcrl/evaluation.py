"""Roll policies out in real environments and report success per task.

>>> from gcrl.envs import suite                                     # doctest: +SKIP
>>> report = evaluate(policy, suite("pointmaze-medium"), episodes=10)  # doctest: +SKIP
>>> print(report.table())                                           # doctest: +SKIP

``evaluate`` drives ``num_envs`` environment instances in lockstep: every step, one policy call
gets the observations of all running episodes (of any tasks) as one batch. An episode counts
as a success when any of its steps solves the task. The summary is the three numbers a
multi-task paper reports: the mean, median and worst per-task success rate.
:func:`evaluate_checkpoint` is ``gcrl evaluate`` from Python: a checkpoint on a suite.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gcrl.datasets.frames import FrameHistory
from gcrl.datasets.trajectories import DESIRED_GOAL, Task, stack_observations
from gcrl.envs.base import Suite, TaskEnv
from gcrl.errors import ConfigError, GcrlError, MissingGoalsError, option
from gcrl.io import atomic_path


class TaskPolicy(Protocol):
    """What ``evaluate`` calls: a batch of observations (a dict of stacked arrays, or one
    array) and each row's task; returns one action per row."""

    def __call__(
        self, observations: dict[str, np.ndarray] | np.ndarray, tasks: Sequence[Task]
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class TaskResult:
    """One task's evaluation: rates in [0, 1], returns summed per episode, lengths in steps."""

    name: str
    text: str
    episodes: int
    success_rate: float
    mean_return: float
    mean_length: float
    #: Whether the policy was trained on this task (None: unknown, e.g. goal-conditioned).
    seen: bool | None = None


@dataclass(frozen=True)
class EvaluationReport:
    """Per-task results and their summary."""

    suite: str
    seed: int
    tasks: tuple[TaskResult, ...]
    #: Frames of the recorded episodes (``<task>-<episode>``: the frame after the reset, then
    #: one after each step), written by :func:`write_videos` (not in the JSON).
    videos: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False, compare=False)
    #: Per frame of each recorded episode, whether the episode has succeeded by then (the
    #: caption :func:`write_videos` draws); same keys as ``videos``.
    video_success: dict[str, list[bool]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def success_rates(self) -> np.ndarray:
        """Per-task success rates, in task order."""
        return np.array([t.success_rate for t in self.tasks])

    @property
    def mean(self) -> float:
        """Mean per-task success rate."""
        return float(self.success_rates.mean())

    @property
    def median(self) -> float:
        """Median per-task success rate."""
        return float(np.median(self.success_rates))

    @property
    def worst(self) -> float:
        """Success rate of the worst task."""
        return float(self.success_rates.min())

    def summary(self) -> dict[str, float]:
        """``success_mean``, ``success_median``, ``success_worst`` and, when the policy's
        training tasks are known and differ from the suite's, the mean over seen and unseen
        tasks."""
        out = {"success_mean": self.mean, "success_median": self.median}
        out["success_worst"] = self.worst
        for label, flag in (("seen", True), ("unseen", False)):
            rates = [t.success_rate for t in self.tasks if t.seen is flag]
            if rates and len(rates) < len(self.tasks):
                out[f"success_{label}"] = float(np.mean(rates))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``suite``, ``seed``, ``summary`` and ``tasks`` (one dict per task)."""
        return {
            "suite": self.suite,
            "seed": self.seed,
            "summary": self.summary(),
            "tasks": [asdict(t) for t in self.tasks],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as indented JSON (atomically)."""
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def table(self) -> str:
        """A plain-text table: one row per task, then mean / median / worst."""
        width = max(12, *(len(t.name) for t in self.tasks))
        lines = [
            f"{'task':<{width}}  episodes  success  return  length",
        ]
        for t in self.tasks:
            mark = " (unseen)" if t.seen is False else ""
            lines.append(
                f"{t.name:<{width}}  {t.episodes:>8}  {t.success_rate:>6.0%}  "
                f"{t.mean_return:>6.1f}  {t.mean_length:>6.0f}{mark}"
            )
        lines.append("-" * len(lines[0]))
        for key, value in self.summary().items():
            label = key.removeprefix("success_")
            lines.append(f"{label:<{width}}  {'':>8}  {value:>6.0%}")
        return "\n".join(lines)


@dataclass
class _Slot:
    """One environment instance and the episode it is running."""

    env: TaskEnv
    job: tuple[int, int] | None = None  # (task index, episode index)
    observation: Any = None
    steps: int = 0
    total: float = 0.0
    success: bool = False
    frames: list[np.ndarray] | None = None  # recorded episodes only, as frame_success
    frame_success: list[bool] | None = None
    history: FrameHistory = field(default_factory=lambda: FrameHistory(1))


def episode_seed(seed: int, task: int, episode: int) -> int:
    """The environment seed of one evaluation episode: a function of all three, so adding
    tasks or episodes leaves the others' episodes unchanged."""
    return int(np.random.default_rng([seed, task, episode]).integers(2**31 - 1))


def evaluate(
    policy: TaskPolicy,
    suite: Suite,
    episodes: int = 10,
    tasks: Sequence[str] | None = None,
    seed: int = 0,
    num_envs: int = 8,
    record: int = 0,
    seen_tasks: Sequence[str] | None = None,
    progress: bool = False,
    frame_stack: int = 1,
) -> EvaluationReport:
    """Run ``episodes`` episodes of each task (all of the suite's, or those named in ``tasks``)
    and return the per-task report.

    With ``frame_stack`` above 1 the policy sees each environment's last ``frame_stack``
    observations stacked along channels and its goal tiled as often
    (:class:`gcrl.datasets.frames.FrameHistory`: what a policy trained on stacked frames reads).

    ``record`` episodes of each task (the first ones) keep their frames for
    :func:`write_videos`. ``seen_tasks`` names the policy's training tasks, so the report can
    tell seen from unseen ones.
    """
    if episodes < 1:
        raise ConfigError(f"{option('episodes')}: must be at least 1, got {episodes}")
    if num_envs < 1:
        raise ConfigError(f"{option('num_envs')}: must be at least 1, got {num_envs}")
    chosen = _choose_tasks(suite, tasks)
    jobs = [(task, k) for task in chosen for k in range(episodes)]
    results: dict[int, list[tuple[bool, float, int]]] = {task: [] for task in chosen}
    videos: dict[str, list[np.ndarray]] = {}
    video_success: dict[str, list[bool]] = {}
    slots = [
        _Slot(suite.make_env(render=record > 0), history=FrameHistory(frame_stack))
        for _ in range(min(num_envs, len(jobs)))
    ]
    bar = _progress_bar(len(jobs), suite.name) if progress else None
    queue = iter(jobs)

    def start(slot: _Slot) -> None:
        slot.job = next(queue, None)
        if slot.job is None:
            return
        task, k = slot.job
        slot.observation = slot.history.reset(slot.env.reset(task, episode_seed(seed, task, k)))
        slot.steps, slot.total, slot.success = 0, 0.0, False
        slot.frames = [slot.env.render()] if k < record else None
        slot.frame_success = [False] if k < record else None

    try:
        for slot in slots:
            start(slot)
        while any(slot.job is not None for slot in slots):
            active = [slot for slot in slots if slot.job is not None]
            batch = stack_observations([slot.observation for slot in active])
            actions = policy(batch, [suite.tasks[slot.job[0]] for slot in active])  # type: ignore[index]
            for slot, action in zip(active, actions, strict=True):
                step = slot.env.step(action)
                slot.observation = slot.history.push(step.observation)
                slot.steps += 1
                slot.total += step.reward
                slot.success = slot.success or step.success
                if slot.frames is not None and slot.frame_success is not None:
                    slot.frames.append(slot.env.render())
                    slot.frame_success.append(slot.success)
                if step.done or slot.steps >= suite.max_steps:
                    task, k = slot.job  # type: ignore[misc]
                    results[task].append((slot.success, slot.total, slot.steps))
                    if slot.frames is not None and slot.frame_success is not None:
                        videos[f"{suite.tasks[task].name}-{k}"] = slot.frames
                        video_success[f"{suite.tasks[task].name}-{k}"] = slot.frame_success
                    if bar is not None:
                        bar.update(1)
                    start(slot)
    finally:
        for slot in slots:
            slot.env.close()
        if bar is not None:
            bar.close()
    seen = set(seen_tasks) if seen_tasks is not None else None
    return EvaluationReport(
        suite=suite.name,
        seed=seed,
        tasks=tuple(
            _task_result(suite.tasks[task], results[task], seen) for task in sorted(results)
        ),
        videos=videos,
        video_success=video_success,
    )


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    env: str,
    *,
    episodes: int = 10,
    tasks: Sequence[str] | None = None,
    seed: int = 0,
    num_envs: int = 8,
    goal: Sequence[float] | None = None,
    max_steps: int | None = None,
    policy: str | None = None,
    record: int = 0,
    progress: bool = False,
) -> EvaluationReport:
    """What ``gcrl evaluate`` does, from Python: load ``checkpoint`` (:func:`gcrl.load_policy`;
    ``policy`` names another policy it holds, Distral's ``prior``), build the suite ``env``
    (:func:`gcrl.envs.suite`, with ``goal`` and ``max_steps`` for gymnasium environments),
    play one step to check that the two fit (one-line errors naming ``env``), then
    :func:`evaluate`. The report tells the policy's training tasks from unseen ones when its
    task names are among the suite's.

    Returns the report: success rates are fractions in [0, 1], returns in the environment's
    reward units, lengths in steps.
    """
    from gcrl.envs import suite as make_suite
    from gcrl.policy import load_policy

    loaded = load_policy(checkpoint, policy=policy)
    chosen = make_suite(env, goal=goal, max_steps=max_steps)
    act = task_policy(loaded, env)
    stack = loaded.spec.frame_stack
    check_fit(act, chosen, tasks, seed, render=record > 0, frame_stack=stack)  # before any bar
    trained = list(loaded.task_names)
    seen = trained if set(trained) & {t.name for t in chosen.tasks} else None
    return evaluate(
        act,
        chosen,
        episodes=episodes,
        tasks=tasks,
        seed=seed,
        num_envs=num_envs,
        record=record,
        seen_tasks=seen,
        progress=progress,
        frame_stack=stack,
    )


def task_policy(policy: Any, env: str) -> TaskPolicy:
    """``policy`` (a :class:`gcrl.policy.LoadedPolicy`) as the ``policy(observations, tasks)``
    :func:`evaluate` calls (:meth:`~gcrl.policy.LoadedPolicy.on_tasks`), its errors naming
    the environment ``env``: a mismatch (a missing key, a wrong width, no goal for a
    goal-conditioned policy) is one :class:`ConfigError` line."""

    def act(observations: Any, tasks: Sequence[Task]) -> np.ndarray:
        try:
            return np.asarray(policy.on_tasks(observations, tasks))
        except MissingGoalsError:  # the environment gives no goal
            raise ConfigError(
                f"{option('env')} {env}: the policy is goal-conditioned "
                f"({policy.spec.goal_dim}-d goals) and {env}'s observations hold no "
                f"{DESIRED_GOAL}; give one with {option('goal')}"
            ) from None
        except GcrlError as err:
            raise ConfigError(f"{option('env')} {env}: {err}") from None

    return act


def check_fit(
    act: TaskPolicy,
    chosen: Suite,
    tasks: Sequence[str] | None,
    seed: int,
    render: bool = False,
    frame_stack: int = 1,
) -> None:
    """Play one step of the first task (of ``tasks``, else of the suite) with ``act`` (and
    draw a frame when ``render``), so that observations or actions that do not fit the
    policy, or an environment that cannot render, fail before the rollout, as one-line
    errors; returns nothing. Unknown ``tasks`` are left to :func:`evaluate`."""
    index = {t.name: i for i, t in enumerate(chosen.tasks)}
    task = index.get(tasks[0]) if tasks else 0
    if task is None:
        return
    env = chosen.make_env(render=render)
    try:
        observation = FrameHistory(frame_stack).reset(env.reset(task, episode_seed(seed, task, 0)))
        if render:
            env.render()
        actions = act(stack_observations([observation]), [chosen.tasks[task]])
        env.step(actions[0])
    finally:
        env.close()


def _choose_tasks(suite: Suite, names: Sequence[str] | None) -> list[int]:
    if not names:
        return list(range(len(suite.tasks)))
    index = {t.name: i for i, t in enumerate(suite.tasks)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ConfigError(
            f"--tasks: {suite.name} has no task {unknown[0]!r}; its tasks are {', '.join(index)}"
        )
    return [index[n] for n in dict.fromkeys(names)]


def _task_result(
    task: Task, runs: list[tuple[bool, float, int]], seen: set[str] | None
) -> TaskResult:
    success, returns, lengths = (np.array(column) for column in zip(*runs, strict=True))
    return TaskResult(
        name=task.name,
        text=task.text,
        episodes=len(runs),
        success_rate=float(success.mean()),
        mean_return=float(returns.mean()),
        mean_length=float(lengths.mean()),
        seen=None if seen is None else task.name in seen,
    )


def _progress_bar(total: int, name: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"evaluating {name}", unit="episode")


#: GIF frames smaller than this (either side, in pixels) are upscaled by an integer factor.
MIN_VIDEO_SIZE = 256


def upscale(frame: np.ndarray, min_size: int = MIN_VIDEO_SIZE) -> np.ndarray:
    """``frame`` (RGB or RGBA uint8 ``[H, W, C]``, or grey ``[H, W]``) as RGB, enlarged by the
    smallest integer factor that makes both sides at least ``min_size`` (nearest neighbour:
    every pixel becomes a block, so grid worlds stay sharp)."""
    image = np.asarray(frame)
    if image.ndim == 2:
        image = image[..., None]
    image = np.broadcast_to(image, (*image.shape[:2], 3)) if image.shape[2] == 1 else image
    image = image[..., :3].astype(np.uint8, copy=False)
    factor = max(1, -(-min_size // max(1, min(image.shape[:2]))))
    if factor > 1:
        image = image.repeat(factor, axis=0).repeat(factor, axis=1)
    return np.ascontiguousarray(image)


#: Caption colours: text, and the status word of :func:`caption_frame`.
_WHITE = (255, 255, 255)
_STATUS_COLOURS = {"success": (110, 235, 110), "failed": (255, 120, 110), "running": (255, 215, 90)}


def caption_frame(frame: np.ndarray, task: str, step: int, status: str | None = None) -> np.ndarray:
    """``frame`` upscaled (:func:`upscale`), with ``"<task>  step <step>  <status>"`` drawn
    in white (the status word in green, red or yellow) on a darkened band across its top. A
    caption too wide for one line puts the task name on lines of its own. ``status``:
    ``"success"`` (the episode has succeeded by this frame), ``"running"``, ``"failed"`` or
    None (left out). Needs Pillow."""
    from PIL import Image, ImageDraw

    image = upscale(frame).copy()
    height, width = image.shape[:2]
    font = _caption_font(max(11, min(height, width) // 18))
    tail = f"step {step}" + (f"  {status}" if status else "")
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad = max(3, font.size // 4) if hasattr(font, "size") else 3
    fits = draw.textlength(f"{task}  {tail}", font=font) <= width - 2 * pad
    lines = [f"{task}  {tail}"] if fits else [*_wrap(draw, task, font, width - 2 * pad), tail]
    line_height = draw.textbbox((0, 0), "Ag", font=font)[3] + pad // 2
    band = min(height, len(lines) * line_height + 2 * pad)
    image[:band] = image[:band] // 4  # darkened, so the text reads on any scene
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        y = pad + row * line_height
        last = row == len(lines) - 1
        head = line.removesuffix(status) if last and status else line
        draw.text((pad, y), head, fill=_WHITE, font=font)
        if last and status:
            x = pad + draw.textlength(head, font=font)
            draw.text((x, y), status, fill=_STATUS_COLOURS.get(status, _WHITE), font=font)
    return np.asarray(canvas)


def _caption_font(size: int) -> Any:
    """Pillow's bundled default font at ``size`` pixels (its fixed-size bitmap font where
    Pillow has no FreeType or predates ``load_default(size=)``)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def _wrap(draw: Any, text: str, font: Any, width: float) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide (a word wider than
    that gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [text]


def _statuses(success: Sequence[bool] | None, frames: int) -> list[str | None]:
    """Per frame: ``success`` once the episode has succeeded, ``running`` before, ``failed``
    on the last frame of an episode that never did; None throughout when unknown."""
    if success is None or len(success) != frames:
        return [None] * frames
    return [
        "success" if hit else "failed" if k == frames - 1 else "running"
        for k, hit in enumerate(success)
    ]


def write_videos(
    report: EvaluationReport, directory: str | os.PathLike[str], fps: int = 30
) -> list[Path]:
    """Write each recorded episode as an animated GIF ``<task>-<episode>.gif``; returns the
    paths. Frames are upscaled to at least :data:`MIN_VIDEO_SIZE` pixels a side and captioned
    with the task, the step and whether the episode has succeeded yet (:func:`caption_frame`).
    Needs Pillow (installed with the ``eval`` extra)."""
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("--video: needs Pillow (pip install 'gcrl[eval]')") from None
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frames in report.videos.items():
        if not frames:
            continue
        task = name.rpartition("-")[0] or name
        statuses = _statuses(report.video_success.get(name), len(frames))
        images = (
            Image.fromarray(caption_frame(frame, task, step, status))
            for step, (frame, status) in enumerate(zip(frames, statuses, strict=True))
        )
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = out / f"{safe}.gif"
        with atomic_path(path, overwrite=True) as tmp:
            first = next(images)  # the rest are made one at a time while Pillow encodes
            first.save(
                tmp,
                format="GIF",
                save_all=True,
                append_images=images,
                duration=1000 / fps,
                loop=0,
            )
        paths.append(path)
    return paths
