"""The cost of recording data: each ``gcrl collect`` recipe beside its bare environment.

    taskset -c 1 .venv/bin/python benchmarks/collect.py                # ~3 minutes
    .venv/bin/python benchmarks/collect.py --recipes cube-single --steps 200

For each recipe of --recipes, in a fresh process (one torch / BLAS thread) after its imports:

* ``bare env``: the recipe's environment stepped with uniformly random actions (OGBench's
  manipulation environments in their data-collection mode; for ``visual-*`` ones, every step
  renders the 64 x 64 observation), --steps steps after a reset, in environment steps per
  second;
* ``recipe``: ``recipe(name).collect(...)`` playing one episode of --steps transitions (the
  oracle, its noise, the recorded columns), in transitions per second, and the seconds one
  OGBench-length episode (1000 transitions) takes at that rate.

The table ends with each recipe's rate over its bare environment's, measured in the same run.
``visual-*`` recipes take --visual-steps instead (rendering is slow on a software or shared
GPU path; MUJOCO_GL is egl unless set). Results go to --json when given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_RECIPES = ("pointmaze", "cube-single", "puzzle-3x3", "scene", "visual-cube-single")
#: OGBench's episode length, the unit of the "s per episode" column.
EPISODE = 1000


def bare_env(name: str, steps: int) -> float:
    """Environment steps per second of recipe ``name``'s environment under random actions."""
    from gcrl.envs import manipspace

    if name in manipspace.ENVS:
        env = manipspace.make_collection_env(manipspace.ENVS[name], steps)
    elif name == "pointmaze":
        from gcrl.envs.pointmaze import make_ogbench_env

        env = make_ogbench_env("medium")
    else:
        raise SystemExit(f"{name}: no bare environment known (pointmaze or a manipulation one)")
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(env.action_space.sample())
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def recipe_rate(name: str, steps: int) -> float:
    """Transitions per second of ``gcrl collect name`` playing one episode of ``steps``."""
    from gcrl.envs import recipe

    found = recipe(name)
    options = found.options(episodes=1, max_steps=steps, seed=0)  # type: ignore[call-arg]
    start = time.perf_counter()
    transitions = sum(part.num_transitions for part in found.collect(options))
    return transitions / (time.perf_counter() - start)


def measure(name: str, steps: int) -> dict[str, float]:
    """Both rates of recipe ``name`` (run in a fresh process)."""
    return {"bare_env": bare_env(name, steps), "recipe": recipe_rate(name, steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES))
    parser.add_argument("--steps", type=int, default=1000, help="steps per state recipe")
    parser.add_argument("--visual-steps", type=int, default=100, help="steps per visual recipe")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.steps)))
        return
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rows: dict[str, dict[str, Any]] = {}
    for name in args.recipes:
        steps = args.visual_steps if name.startswith("visual-") else args.steps
        command = [sys.executable, __file__, "--measure", name, "--steps", str(steps)]
        out = subprocess.run(command, capture_output=True, text=True, env=environment)
        if out.returncode != 0:
            raise SystemExit(f"{name}: the measurement failed:\n{out.stderr}")
        rows[name] = {"steps": steps, **json.loads(out.stdout.strip().splitlines()[-1])}
    header = f"{'recipe':<22} {'steps':>6} {'bare env steps/s':>17} {'recipe steps/s':>15}"
    header += f" {'s per 1000-step episode':>24} {'recipe / bare env':>18}"
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        print(
            f"{name:<22} {row['steps']:>6} {row['bare_env']:>17,.1f} {row['recipe']:>15,.1f} "
            f"{EPISODE / row['recipe']:>24,.1f} {row['recipe'] / row['bare_env']:>18.2f}"
        )
    print(f"\n(one process per recipe, pinned by the caller; numpy {np.__version__})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
