"""Training on a file larger than memory: memory-mapped batches beside the in-memory path.

    taskset -c 1 .venv/bin/python benchmarks/large_data.py       # 2M rows of 256-d: ~4 GB
    .venv/bin/python benchmarks/large_data.py --transitions 200000 --obs-dim 64  # quick

Builds (once, cached under --workdir) a native file of --transitions rows: dict observations
``observation`` (--obs-dim float32: a smooth random walk in its first two dimensions, noise in
the rest) and ``achieved_goal`` (the first two), float32 actions (2,), 1000-step episodes
ending in timeouts. Each method runs in a fresh process with one torch thread and measures,
after its imports: setup seconds (load, or for the mapped path its cache, written on the first
mapped run only and timed as its own row), the sampling rate of
``TrajectoryDataModule(relabel="ogbench", batch_size=256)`` (transitions per second over
--batches batches), the training rate of GCBC (``BC(task_signal="goal", hidden_dims=[256,
256])``, Lightning, --steps steps after 20 untimed ones), and the growth of the peak resident
set (``VmHWM``, file-backed pages of a mapping included: the kernel drops those under
memory pressure) and of the anonymous resident memory at the end (``RssAnon``: what the
process cannot give back) over all of it, MB. A cgroup bound counts the whole process
(interpreter, torch and Lightning: about 400 MB) and its page cache.

Methods:

* ``in-memory``: ``TrajectoryDataModule(path)``, the whole file loaded.
* ``mapped``: ``TrajectoryDataModule(path, memory_map=True)``; batches read their rows from
  the mapped cache.
* ``mapped, bounded`` and ``in-memory, bounded``: the same, run inside a memory cgroup (v1 or
  v2, when this machine lets us make one) of --memory-bound-mb; the mapped path should run
  there at a file several times that size, the in-memory one should be killed.

The table ends with the file's size over the bound and the mapped rates over the in-memory
ones. Results go to --json when given (the rows by method, and ``data``: the file's size);
``scripts/results.py table`` renders docs/results.md's table from that record.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _measure import peak_mb, reset_peak, status_kb

EPISODE = 1000
CGROUP_ROOTS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup"))


# --------------------------------------------------------------------------- data
def make_data(path: Path, transitions: int, obs_dim: int) -> None:
    """The benchmark file, written episode chunk by episode chunk (bounded memory)."""
    from gcrl.datasets import NativeWriter, Trajectories

    if path.exists():
        return
    rng = np.random.default_rng(0)
    with NativeWriter(path, compression="lzf") as writer:
        for start in range(0, transitions, 100 * EPISODE):
            rows = min(100 * EPISODE, transitions - start)
            episodes = rows // EPISODE
            steps = rng.normal(0, 0.05, (episodes, EPISODE + 1, 2)).astype(np.float32)
            xy = np.cumsum(steps, axis=1)
            noise = rng.normal(0, 1, (episodes, EPISODE + 1, obs_dim - 2)).astype(np.float32)
            state = np.concatenate([xy, noise], axis=2)

            def obs(part: slice, state: np.ndarray = state, n: int = episodes) -> dict[str, Any]:
                s = state[:, part].reshape(n * EPISODE, obs_dim)
                return {"observation": s, "achieved_goal": np.ascontiguousarray(s[:, :2])}

            ends = np.zeros(episodes * EPISODE, dtype=bool)
            ends[EPISODE - 1 :: EPISODE] = True
            writer.append(
                Trajectories(
                    observations=obs(slice(0, EPISODE)),
                    next_observations=obs(slice(1, EPISODE + 1)),
                    actions=rng.uniform(-1, 1, (episodes * EPISODE, 2)).astype(np.float32),
                    rewards=np.zeros(episodes * EPISODE, dtype=np.float32),
                    terminals=np.zeros(episodes * EPISODE, dtype=bool),
                    timeouts=ends,
                    episode_starts=np.arange(0, episodes * EPISODE, EPISODE),
                )
            )


# --------------------------------------------------------------------------- one method
def measure(args: argparse.Namespace) -> dict[str, Any]:
    import lightning as L
    import torch

    from gcrl.algorithms import BC
    from gcrl.learner import AgentModule
    from gcrl.training import TrajectoryDataModule

    torch.set_num_threads(1)
    rss0 = reset_peak()
    anon0 = status_kb("RssAnon")
    start = time.perf_counter()
    mapped = args.measure.startswith("mapped")
    options: dict[str, Any] = {"memory_map": True, "memory_map_dir": str(args.cache)}
    dm = TrajectoryDataModule(
        str(args.data),
        batch_size=256,
        relabel="ogbench",
        steps_per_epoch=args.batches,
        **(options if mapped else {}),
    )
    setup = time.perf_counter() - start
    stream = iter(dm.train_dataloader())
    next(stream)
    start = time.perf_counter()
    drawn = sum(len(batch) for batch in stream)
    sampling = drawn / (time.perf_counter() - start)

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.started = 0.0

        def on_train_batch_start(self, trainer: Any, *_: Any) -> None:
            if trainer.global_step == 20:
                self.started = time.perf_counter()

    timer = Timer()
    dm.steps_per_epoch = args.steps + 20
    trainer = L.Trainer(
        max_steps=args.steps + 20,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    model = BC(spec=dm.spec, task_signal="goal", hidden_dims=[256, 256])
    trainer.fit(AgentModule(model), dm)
    training = args.steps / (time.perf_counter() - timer.started)
    return {
        "setup_s": setup,
        "sampling": sampling,
        "steps_per_s": training,
        "peak_mb": peak_mb(rss0),
        "anon_mb": (status_kb("RssAnon") - anon0) / 1024,
    }


# --------------------------------------------------------------------------- cgroups
def make_cgroup(bound_mb: int) -> Path | None:
    """A memory cgroup of ``bound_mb`` (v1 ``memory.limit_in_bytes`` or v2 ``memory.max``),
    or None when this machine does not let us make one."""
    for root in CGROUP_ROOTS:
        group = root / f"gcrl-bench-{os.getpid()}"
        try:
            group.mkdir()
        except OSError:
            continue
        for name in ("memory.limit_in_bytes", "memory.max"):
            limit = group / name
            if limit.exists():
                try:
                    limit.write_text(str(bound_mb << 20))
                    swap = group / "memory.memsw.limit_in_bytes"
                    if swap.exists():  # no swapping around the bound
                        swap.write_text(str(bound_mb << 20))
                    return group
                except OSError:
                    break
        group.rmdir()
    return None


def run(args: argparse.Namespace, name: str, cgroup: Path | None) -> dict[str, Any]:
    """``name`` in a fresh process (inside ``cgroup`` when given); its measurement, or
    ``{"failed": reason}``."""
    argv = [sys.executable, __file__, "--measure", name, "--data", str(args.data)]
    argv += ["--cache", str(args.cache), "--batches", str(args.batches)]
    argv += ["--steps", str(args.steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if cgroup is not None:  # join the group, then become the measured process
        argv = ["sh", "-c", f'echo $$ > {cgroup / "cgroup.procs"} && exec "$@"', "sh", *argv]
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        killed = out.returncode in (-9, 137)
        reason = "killed (out of memory)" if killed else f"exit {out.returncode}"
        return {"failed": reason, "seconds": time.perf_counter() - start}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transitions", type=int, default=2_000_000)
    parser.add_argument("--obs-dim", type=int, default=256)
    parser.add_argument("--memory-bound-mb", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gcrl-bench-large"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.data = args.workdir / f"large-{args.transitions}-{args.obs_dim}.hdf5"
    args.cache = args.workdir / "cache"
    make_data(args.data, args.transitions, args.obs_dim)
    shutil.rmtree(args.cache, ignore_errors=True)  # the first mapped run writes the cache
    file_mb = args.data.stat().st_size / 2**20

    rows: list[tuple[str, dict[str, Any]]] = [("in-memory", run(args, "in-memory", None))]
    rows.append(("mapped (first run: writes the cache)", run(args, "mapped", None)))
    rows.append(("mapped", run(args, "mapped", None)))
    cache_mb = sum(p.stat().st_size for p in args.cache.rglob("*.npy")) / 2**20
    cgroup = make_cgroup(args.memory_bound_mb)
    if cgroup is None:
        print("(no memory cgroup could be made: the bounded rows are left out)")
    else:
        try:
            bound = f"bounded to {args.memory_bound_mb} MB"
            rows.append((f"mapped, {bound}", run(args, "mapped", cgroup)))
            rows.append((f"in-memory, {bound}", run(args, "in-memory", cgroup)))
        finally:
            cgroup.rmdir()

    print(
        f"data: {args.transitions:,} transitions, {args.obs_dim}-d observations: native file "
        f"{file_mb:,.0f} MB (lzf), mapped cache {cache_mb:,.0f} MB; one torch thread"
    )
    header = f"{'method':<40} {'setup s':>8} {'sampled rows/s':>15} {'train steps/s':>14}"
    header += f" {'peak RSS MB':>12} {'anon MB':>8}"
    print(header)
    print("-" * len(header))
    for name, result in rows:
        if "failed" in result:
            print(f"{name:<40} {result['failed']} after {result['seconds']:.0f} s")
            continue
        print(
            f"{name:<40} {result['setup_s']:>8.1f} {result['sampling']:>15,.0f} "
            f"{result['steps_per_s']:>14.0f} {result['peak_mb']:>12,.0f} "
            f"{result['anon_mb']:>8,.0f}"
        )
    memory, mapped = rows[0][1], rows[2][1]
    print(f"\ncache over the memory bound: {cache_mb / args.memory_bound_mb:.1f}x")
    if "failed" not in memory and "failed" not in mapped:
        print(
            f"mapped / in-memory: sampling {mapped['sampling'] / memory['sampling']:.2f}x, "
            f"training {mapped['steps_per_s'] / memory['steps_per_s']:.2f}x, peak RSS "
            f"{mapped['peak_mb'] / memory['peak_mb']:.2f}x"
        )
    if args.json:
        data = {
            "transitions": args.transitions,
            "obs_dim": args.obs_dim,
            "file_mb": file_mb,
            "cache_mb": cache_mb,
            "memory_bound_mb": args.memory_bound_mb,
        }
        record = {"data": data, **{name: result for name, result in rows}}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
