"""Loading speed and peak memory: gcrl's loaders beside a raw h5py read of the same arrays
and beside Minari's own ``iterate_episodes`` + concatenate.

    python benchmarks/load.py                  # 1M transitions each (about 1 GB of scratch)
    python benchmarks/load.py --transitions 100000 --repeats 1

Builds (once, cached under --workdir) a Minari dataset (HDF5 storage, PointMaze-like Dict
observations) and a D4RL-format file (AntMaze-like: 29-D observations, 8-D actions,
``infos/goal`` and ``infos/qpos``), each with the given number of transitions. Every method
runs in a fresh subprocess, so its peak memory is its own: the growth of the maximum
resident set size during the load, in MB. Seconds are the best of --repeats runs. The table
ends with the ratios the targets are stated in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _measure import peak_mb, reset_peak, run_isolated

MINARI_ID = "bench/pointmaze-v0"


# --------------------------------------------------------------------------- data
def make_minari(root: Path, transitions: int, episode_length: int) -> None:
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    if (root / MINARI_ID).exists():
        return
    rng = np.random.default_rng(0)
    buffers = []
    for episode in range(transitions // episode_length):
        t = episode_length
        buffers.append(
            EpisodeBuffer(
                id=episode,
                observations={
                    "achieved_goal": rng.normal(size=(t + 1, 2)),
                    "desired_goal": rng.normal(size=(t + 1, 2)),
                    "observation": rng.normal(size=(t + 1, 4)),
                },
                actions=rng.uniform(-1, 1, size=(t, 2)).astype(np.float32),
                rewards=list(rng.random(t)),
                terminations=[False] * t,
                truncations=[False] * (t - 1) + [True],
                infos={"success": rng.random(t + 1) < 0.05},
            )
        )
    space = gym.spaces.Dict(
        {
            "achieved_goal": gym.spaces.Box(-np.inf, np.inf, (2,), np.float64),
            "desired_goal": gym.spaces.Box(-np.inf, np.inf, (2,), np.float64),
            "observation": gym.spaces.Box(-np.inf, np.inf, (4,), np.float64),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            MINARI_ID,
            buffers,
            observation_space=space,
            action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
            algorithm_name="benchmark",
        )


def make_d4rl(path: Path, transitions: int, episode_length: int) -> None:
    import h5py

    if path.exists():
        return
    rng = np.random.default_rng(0)
    n = transitions
    timeouts = np.arange(n) % episode_length == episode_length - 1
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 29)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(n, 8)).astype(np.float32)
        f["rewards"] = (rng.random(n) < 0.01).astype(np.float32)
        f["terminals"] = np.zeros(n, dtype=bool)
        f["timeouts"] = timeouts
        f["infos/goal"] = np.repeat(
            rng.normal(size=(n // episode_length + 1, 2)), episode_length, 0
        )[:n].astype(np.float32)
        f["infos/qpos"] = rng.normal(size=(n, 15)).astype(np.float32)


# --------------------------------------------------------------------------- methods
def minari_raw_h5py(root: Path) -> dict[str, np.ndarray]:
    """Every array of every episode group read with h5py, concatenated per key."""
    import h5py

    parts: dict[str, list[np.ndarray]] = {}
    with h5py.File(root / MINARI_ID / "data" / "main_data.hdf5", "r") as f:
        for name in f:
            group = f[name]

            def visit(key: str, obj: object, group: h5py.Group = group) -> None:
                if isinstance(obj, h5py.Dataset):
                    parts.setdefault(key, []).append(obj[()])

            group.visititems(visit)
    return {k: np.concatenate(v) for k, v in parts.items()}


def minari_iterate(root: Path) -> dict[str, np.ndarray]:
    """minari's own API: iterate_episodes, then concatenate the T-step transitions."""
    import minari

    dataset = minari.load_dataset(MINARI_ID)
    obs: dict[str, list[np.ndarray]] = {}
    nxt: dict[str, list[np.ndarray]] = {}
    rest: dict[str, list[np.ndarray]] = {
        "actions": [],
        "rewards": [],
        "terminations": [],
        "truncations": [],
    }
    for episode in dataset.iterate_episodes():
        for k, v in episode.observations.items():
            obs.setdefault(k, []).append(v[:-1])
            nxt.setdefault(k, []).append(v[1:])
        for k in rest:
            rest[k].append(getattr(episode, k))
    out = {f"observations/{k}": np.concatenate(v) for k, v in obs.items()}
    out.update({f"next_observations/{k}": np.concatenate(v) for k, v in nxt.items()})
    out.update({k: np.concatenate(v) for k, v in rest.items()})
    return out


def gcrl_minari(root: Path) -> dict[str, np.ndarray]:
    from gcrl.datasets import load

    return load(root / MINARI_ID, progress=False).columns()


def d4rl_raw_h5py(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of the file read whole with h5py."""
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda k, o: out.__setitem__(k, o[()]) if isinstance(o, h5py.Dataset) else None
        )
    return out


def gcrl_d4rl(path: Path) -> dict[str, np.ndarray]:
    from gcrl.datasets import load

    return load(path).columns()


def gcrl_qlearning(path: Path) -> dict[str, np.ndarray]:
    from gcrl.datasets import qlearning_dataset

    return qlearning_dataset(path)


def d4rl_qlearning(path: Path) -> dict[str, np.ndarray]:
    """The reference: d4rl.qlearning_dataset's per-row Python loop (after a raw read)."""
    import d4rl

    return d4rl.qlearning_dataset(None, dataset=d4rl_raw_h5py(path))


METHODS = {
    "minari raw h5py read": (minari_raw_h5py, "minari"),
    "minari iterate_episodes": (minari_iterate, "minari"),
    "gcrl load (minari)": (gcrl_minari, "minari"),
    "d4rl-file raw h5py read": (d4rl_raw_h5py, "d4rl"),
    "gcrl load (d4rl)": (gcrl_d4rl, "d4rl"),
    "gcrl qlearning_dataset": (gcrl_qlearning, "d4rl"),
    "d4rl.qlearning_dataset": (d4rl_qlearning, "d4rl"),
}


def measure(name: str, target: str) -> dict[str, float]:
    """Run one method in this process (called in a fresh subprocess)."""
    function, kind = METHODS[name]
    if kind == "minari":
        os.environ["MINARI_DATASETS_PATH"] = target
    import h5py  # noqa: F401  # imports are not part of the load
    import minari  # noqa: F401

    import gcrl.datasets  # noqa: F401

    if "d4rl." in name:
        import d4rl  # noqa: F401
    rss0 = reset_peak()
    start = time.perf_counter()
    arrays = function(Path(target))
    seconds = time.perf_counter() - start
    peak = peak_mb(rss0)
    nbytes = sum(np.asarray(a).nbytes for a in arrays.values())
    return {"seconds": seconds, "peak_mb": peak, "output_mb": nbytes / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--episode-length", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gcrl-bench-load"))
    parser.add_argument("--skip", nargs="*", default=[], help="method names to skip")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.target)))
        return

    work = args.workdir / f"n{args.transitions}-L{args.episode_length}"
    work.mkdir(parents=True, exist_ok=True)
    print(f"building data in {work} (cached) ...", file=sys.stderr)
    make_minari(work / "minari", args.transitions, args.episode_length)
    make_d4rl(work / "d4rl.hdf5", args.transitions, args.episode_length)
    targets = {"minari": work / "minari", "d4rl": work / "d4rl.hdf5"}

    results: dict[str, dict[str, float]] = {}
    for name, (_, kind) in METHODS.items():
        if name in args.skip:
            continue
        runs = [
            run_isolated(__file__, name, ["--target", str(targets[kind])])
            for _ in range(args.repeats)
        ]
        results[name] = {
            "seconds": min(r["seconds"] for r in runs),
            "peak_mb": max(r["peak_mb"] for r in runs),
            "output_mb": runs[0]["output_mb"],
        }
        print(f"  {name}: {results[name]['seconds']:.3f} s", file=sys.stderr)

    print(
        f"\n{args.transitions:,} transitions, episodes of {args.episode_length} steps, "
        f"best of {args.repeats} runs, each in a fresh process\n"
    )
    print(f"{'method':<26} {'seconds':>8} {'peak MB':>8} {'output MB':>10}")
    for name, r in results.items():
        print(f"{name:<26} {r['seconds']:>8.3f} {r['peak_mb']:>8.0f} {r['output_mb']:>10.0f}")

    def ratio(a: str, b: str, key: str = "seconds") -> str:
        if a in results and b in results:
            return f"{results[a][key] / results[b][key]:.2f}"
        return "n/a"

    raw_m, raw_d = "minari raw h5py read", "d4rl-file raw h5py read"
    gcrl_m, gcrl_d = "gcrl load (minari)", "gcrl load (d4rl)"
    rows = [
        ("gcrl minari time / raw h5py read", ratio(gcrl_m, raw_m), "<= 2"),
        ("minari iterate_episodes time / gcrl", ratio("minari iterate_episodes", gcrl_m), ">= 5"),
        ("gcrl d4rl time / raw h5py read", ratio(gcrl_d, raw_d), "<= 2"),
        ("gcrl minari peak / raw arrays", _mem(results, gcrl_m, raw_m), "< 2"),
        ("gcrl minari peak / its output arrays", _mem(results, gcrl_m, gcrl_m), ""),
        ("gcrl d4rl peak / raw arrays", _mem(results, gcrl_d, raw_d), "< 2"),
        ("gcrl d4rl peak / its output arrays", _mem(results, gcrl_d, gcrl_d), ""),
        (
            "d4rl.qlearning_dataset / gcrl qlearning",
            ratio("d4rl.qlearning_dataset", "gcrl qlearning_dataset"),
            "",
        ),
    ]
    print("\nratios (targets in brackets)")
    for label, value, target in rows:
        print(f"{label:<42} {value:>6}  {f'[{target}]' if target else ''}")


def _mem(results: dict[str, dict[str, float]], method: str, raw: str) -> str:
    if method in results and raw in results:
        return f"{results[method]['peak_mb'] / results[raw]['output_mb']:.2f}"
    return "n/a"


if __name__ == "__main__":
    main()
