"""Task sharing cost: on-the-fly sharing inside training batches, and offline task expansion.

    .venv/bin/python benchmarks/sharing.py                      # 1M transitions, 5 tasks
    .venv/bin/python benchmarks/sharing.py --transitions 200000 --rounds 2

Builds (once, cached under --workdir) a native file of 5-task PointMaze-like transitions (dict
observations ``observation`` (4,), ``achieved_goal`` (2,), ``desired_goal`` (2,); float32
actions; episodes of --episode-length steps; the tasks' episode counts uneven, 40/30/15/10/5
%) with an ``infos/task_rewards`` column ``[N, 5]``, and a file of its first half.

On the fly, per batch of --batch rows (milliseconds, median over --rounds interleaved rounds of
--batches batches each): the data module's batch (numpy draw and the typed ``Batch``) without
sharing, and with each sharing mode (``conservative`` scoring the batch's shared rows with an
IQL critic of 2 x 256, its thresholds refreshed beforehand); then one IQL training step on such
a batch (2 x 256 networks, one torch thread), so the overhead can be stated as a share of a
whole training batch (batch + step). The conservative refresh (the critic over up to 4096 own
rows per task) is timed too: it is paid once per ``conservative_refresh`` steps.

Offline: ``gcrl relabel --strategy random-task --k 4`` (every episode shared with the 4 other
tasks) on the whole file and on its half, each in its own process: seconds and whole-process
peak resident set; the peak should not grow with the file (the driver streams chunks).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _measure import run_command

TASKS = 5
MODES = ("random", "high-reward", "zero-reward", "conservative")


def make_data(path: Path, half: Path, transitions: int, episode_length: int) -> None:
    """The benchmark's file and its first half, once."""
    from gcrl.datasets import Task, Trajectories, save

    if path.exists() and half.exists():
        return
    rng = np.random.default_rng(0)
    episodes = transitions // episode_length
    n = episodes * episode_length
    shares = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    episode_tasks = np.sort(rng.choice(TASKS, size=episodes, p=shares))
    walk = np.cumsum(rng.normal(0, 0.1, size=(episodes, episode_length + 1, 2)), axis=1)
    position = walk.astype(np.float32)
    velocity = np.diff(position, axis=1, prepend=position[:, :1])
    states = np.concatenate([position, velocity], axis=2)
    goals = np.repeat(rng.normal(0, 3, size=(episodes, 1, 2)), episode_length, axis=1)
    goals = goals.reshape(n, 2).astype(np.float32)

    def observations(part: slice) -> dict[str, np.ndarray]:
        flat = states[:, part].reshape(n, 4)
        return {"observation": flat, "achieved_goal": flat[:, :2].copy(), "desired_goal": goals}

    task_goals = rng.normal(0, 3, size=(TASKS, 2))
    next_xy = position[:, 1:].reshape(n, 2)
    distance = np.linalg.norm(next_xy[:, None] - task_goals[None], axis=2)
    task_rewards = (distance < 1.0).astype(np.float32)
    task_ids = np.repeat(episode_tasks, episode_length)
    ends = np.zeros(n, dtype=bool)
    ends[episode_length - 1 :: episode_length] = True
    data = Trajectories(
        observations=observations(slice(0, episode_length)),
        actions=rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        rewards=task_rewards[np.arange(n), task_ids],
        terminals=np.zeros(n, dtype=bool),
        timeouts=ends,
        next_observations=observations(slice(1, episode_length + 1)),
        episode_starts=np.arange(0, n, episode_length),
        task_ids=task_ids,
        tasks=tuple(Task(f"task{m + 1}", f"go to goal {m + 1}") for m in range(TASKS)),
        infos={"task_rewards": task_rewards},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save(data, path, overwrite=True)
    save(data.select_episodes(np.arange(episodes // 2)), half, overwrite=True)


def iql(spec: object) -> object:
    from gcrl.algorithms import IQL

    return IQL(
        spec=spec,
        task_signal="onehot",
        actor_hidden_dims=[256, 256],
        value_hidden_dims=[256, 256],
        actor_loss="awr",
    )


def batch_times(path: Path, batch: int, batches: int, rounds: int) -> tuple[dict, float]:
    """Median milliseconds per data-module batch, for no sharing and each mode, interleaved;
    and the seconds of one conservative threshold refresh."""
    from gcrl.training.datamodule import BatchStream, TrajectoryDataModule

    refresh = 0.0

    def module(mode: str) -> TrajectoryDataModule:
        options: dict[str, object] = {"task_sharing": mode}
        if mode == "high-reward":
            options["sharing_percentile"] = 90.0
        dm = TrajectoryDataModule(str(path), batch_size=batch, relabel="none", **options)  # type: ignore[arg-type]
        if mode == "conservative":  # between two refreshes: thresholds in place
            nonlocal refresh
            scores = dm.task_scores_of(dm.train_data)  # no trainer: never refreshed again
            start = time.perf_counter()
            scores.refresh(iql(dm.spec))
            refresh = time.perf_counter() - start
        return dm

    streams = {}
    for mode in ("none", *MODES):
        dm = module(mode)
        store = dm.on_device(dm.train_data)
        streams[mode] = BatchStream(dm, dm.train_data, batches, np.random.default_rng(1), store)
    times: dict[str, list[float]] = {mode: [] for mode in streams}
    for _ in range(rounds):
        for mode, stream in streams.items():
            start = time.perf_counter()
            for _ in stream:
                pass
            times[mode].append(1e3 * (time.perf_counter() - start) / batches)
    return {mode: statistics.median(values) for mode, values in times.items()}, refresh


def step_time(path: Path, batch: int, steps: int) -> float:
    """Milliseconds of one IQL training step (2 x 256, batch ``batch``)."""
    from gcrl.training.datamodule import TrajectoryDataModule

    dm = TrajectoryDataModule(str(path), batch_size=batch, relabel="none")
    model: Any = iql(dm.spec)
    optimizer = model.configure_optimizers()
    sampler = dm.sampler(dm.train_data, np.random.default_rng(0))
    made = [dm.to_batch(dm.train_data, sampler.sample(batch)) for _ in range(steps)]

    def step(b: object) -> None:
        losses = model.losses(b)  # type: ignore[arg-type]
        loss = model.objective_value(losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(made[0])  # warm-up
    start = time.perf_counter()
    for b in made[1:]:
        step(b)
    return 1e3 * (time.perf_counter() - start) / (steps - 1)


def offline(source: Path, out: Path) -> dict[str, float]:
    """``gcrl relabel --strategy random-task --k 4`` on ``source`` in its own process."""
    gcrl = Path(sys.executable).with_name("gcrl")
    argv = [str(gcrl), "relabel", str(source), str(out), "--strategy", "random-task"]
    result = run_command([*argv, "--k", str(TASKS - 1), "--force", "--seed", "0"])
    out.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--episode-length", type=int, default=500)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=50, help="batches per round and mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gcrl-bench-sharing"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    path = args.workdir / f"tasks-{args.transitions}.hdf5"
    half = args.workdir / f"tasks-{args.transitions}-half.hdf5"
    make_data(path, half, args.transitions, args.episode_length)

    times, refresh_s = batch_times(path, args.batch, args.batches, args.rounds)
    step_ms = step_time(path, args.batch, 20)
    plain = times["none"]
    print(f"On the fly: {args.transitions:,} transitions, {TASKS} tasks, batch {args.batch}")
    print(f"(median of {args.rounds} interleaved rounds of {args.batches} batches)\n")
    print("| sharing | batch ms | + vs no sharing | share of batch + IQL step |")
    print("|---|---:|---:|---:|")
    for mode, ms in times.items():
        extra = ms - plain
        whole = extra / (plain + step_ms)
        print(f"| {mode} | {ms:.2f} | {extra:+.2f} ms | {whole:+.1%} |")
    print(f"\nIQL step (2 x 256, batch {args.batch}, 1 thread): {step_ms:.1f} ms")
    print(f"conservative refresh (critic over <= 4096 own rows per task): {refresh_s:.2f} s,")
    print(f"  {refresh_s:.2f} ms per step at conservative_refresh = 1000\n")

    full = offline(path, args.workdir / "expanded.hdf5")
    part = offline(half, args.workdir / "expanded-half.hdf5")
    print("Offline: gcrl relabel --strategy random-task --k 4\n")
    print("| source | seconds | peak MB |")
    print("|---|---:|---:|")
    print(f"| {args.transitions:,} rows | {full['seconds']:.1f} | {full['peak_mb']:.0f} |")
    print(f"| {args.transitions // 2:,} rows | {part['seconds']:.1f} | {part['peak_mb']:.0f} |")
    print(f"\npeak ratio full / half: {full['peak_mb'] / part['peak_mb']:.2f} (flat: ~1)")


if __name__ == "__main__":
    main()
