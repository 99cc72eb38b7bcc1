"""gcrl beside OGBench's own implementation, on the same PointMaze data and budget: learning
curves for ``docs/results.md``.

    python scripts/ogbench_side_by_side.py data       # 1,000 episodes x 1,000 steps, + the npz
    python scripts/ogbench_side_by_side.py run gcrl gcivl --seeds 0 1
    python scripts/ogbench_side_by_side.py run ogbench gcivl --seeds 0 1 \\
        --jax-python /tmp/jax/bin/python --impls OGBENCH/impls
    python scripts/results.py table                   # docs/results.md's table from the runs

Both sides get the same file (``results/data/pointmaze-medium-1m.hdf5``, and its copy in
OGBench's npz layout for OGBench), OGBench's hyperparameters for ``pointmaze-medium-navigate``
(``impls/hyperparameters.sh``) except the sizes given here (``--hidden``, ``--batch-size``,
the same for both), the same number of steps, and an evaluation on OGBench's five tasks every
``--eval-every`` steps with ``--episodes`` episodes each. gcrl's side is ``gcrl fit`` with
``gcrl.callbacks.EvaluationCallback``; OGBench's is ``scripts/ogbench_reference.py``, which
runs OGBench's ``impls`` unmodified. Each run writes ``results/side/<side>-<algo>-s<seed>.json``
(skipped when it exists; committed) with the curve, the wall time and the commit it ran at;
its logs stay in ``results/side/runs/``, which is not. Runs are chunked by method and seed,
so that a session can run some and commit them; ``scripts/results.py table`` writes
docs/results.md's side-by-side table from whatever has run (``scripts/recorded_tables.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from results import _commit as results_commit  # scripts/results.py: the same record

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "results" / "data" / "pointmaze-medium-1m.hdf5"
OUT = ROOT / "results" / "side"

#: algorithm -> (gcrl config, OGBench agent, OGBench's pointmaze-medium-navigate overrides)
ALGORITHMS = {
    "gcbc": ("pointmaze-gcbc.yaml", "gcbc", []),
    "gciql": ("pointmaze-gciql.yaml", "gciql", ["alpha=0.003"]),
    "gcivl": ("pointmaze-gcivl.yaml", "gcivl", ["alpha=10.0"]),
    "hiql": ("pointmaze-hiql.yaml", "hiql", ["high_alpha=3.0", "low_alpha=3.0"]),
    "qrl": ("pointmaze-qrl.yaml", "qrl", ["alpha=0.0003"]),
    "crl": ("pointmaze-crl.yaml", "crl", ["alpha=0.03"]),
}


def _one_thread() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    }


def data() -> None:
    """Collect the OGBench-sized file (if absent) and write its npz copy."""
    gcrl = str(Path(sys.executable).parent / "gcrl")
    if not DATA.exists():
        DATA.parent.mkdir(parents=True, exist_ok=True)
        command = [gcrl, "collect", "pointmaze", str(DATA), "--maze", "medium"]
        subprocess.run([*command, "--episodes", "1000", "--seed", "0"], check=True)
    npz = DATA.with_suffix(".npz")
    if not npz.exists():
        from gcrl.datasets import load, write_ogbench

        write_ogbench(load(DATA), npz)
        print(f"wrote {npz}")


def _gcrl_curve(metrics: Path) -> dict:
    """The evaluation rows of a run's metrics.csv as a curve, and the median logged training
    rate (its intervals that held an evaluation are the outliers the median ignores)."""
    from gcrl.plots import read_metrics

    series = read_metrics(metrics)
    steps, means = series["eval/success_mean"]
    prefix = "eval/success/"
    tasks = {
        k.removeprefix(prefix): v.tolist() for k, (_, v) in series.items() if k.startswith(prefix)
    }
    rates = series.get("time/steps_per_second")
    return {
        "steps": [int(step) for step in steps],
        "mean": means.tolist(),
        "success": tasks,
        "steps_per_second": float(np.median(rates[1])) if rates else None,
    }


def run(side: str, algorithm: str, seeds: list[int], options: argparse.Namespace) -> None:
    config, agent, ogbench_overrides = ALGORITHMS[algorithm]
    hidden = [int(h) for h in options.hidden.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        result = OUT / f"{side}-{algorithm}-s{seed}.json"
        if result.exists():
            continue
        work = OUT / "runs" / f"{side}-{algorithm}-s{seed}"
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if side == "gcrl":
            sizes = (
                [f"--model.init_args.hidden_dims={hidden}"]
                if algorithm == "gcbc"
                else [
                    f"--model.init_args.actor_hidden_dims={hidden}",
                    f"--model.init_args.value_hidden_dims={hidden}",
                ]
            )
            command = [
                str(Path(sys.executable).parent / "gcrl"),
                "fit",
                "--config",
                str(ROOT / "configs" / config),
                f"--data.path={DATA}",
                f"--data.batch_size={options.batch_size}",
                "--data.val_fraction=0",
                *sizes,
                f"--trainer.max_steps={options.steps}",
                "--trainer.enable_progress_bar=false",
                "--trainer.callbacks+=gcrl.callbacks.EvaluationCallback",
                "--trainer.callbacks.env=pointmaze-medium",
                f"--trainer.callbacks.every_n_steps={options.eval_every}",
                f"--trainer.callbacks.episodes={options.episodes}",
                f"--trainer.callbacks.seed={100 + seed}",
                f"--seed_everything={seed}",
                f"--data.seed={seed}",
            ]
            with open(work / "log.txt", "w") as log:
                subprocess.run(
                    command, cwd=work, env=_one_thread(), stdout=log, stderr=log, check=True
                )
            metrics = max(work.glob("runs/csv/version_*/metrics.csv"), key=os.path.getmtime)
            curve = _gcrl_curve(metrics)
        else:
            if not options.jax_python or not options.impls:
                raise SystemExit("run ogbench: needs --jax-python and --impls")
            raw = work / "curve.json"
            command = [
                options.jax_python,
                str(ROOT / "scripts" / "ogbench_reference.py"),
                "--impls",
                options.impls,
                "--data",
                str(DATA.with_suffix(".npz")),
                "--agent",
                agent,
                *(f"--set={o}" for o in ogbench_overrides),
                f"--set=batch_size={options.batch_size}",
                *(
                    [f"--set=actor_hidden_dims={tuple(hidden)}"]
                    + ([] if algorithm == "gcbc" else [f"--set=value_hidden_dims={tuple(hidden)}"])
                ),
                f"--steps={options.steps}",
                f"--eval-every={options.eval_every}",
                f"--episodes={options.episodes}",
                f"--seed={seed}",
                f"--out={raw}",
            ]
            with open(work / "log.txt", "w") as log:
                subprocess.run(command, env=_one_thread(), stdout=log, stderr=log, check=True)
            curve = json.loads(raw.read_text())
        curve.update(
            commit=results_commit(),
            side=side,
            algorithm=algorithm,
            seed=seed,
            wall_seconds=time.perf_counter() - started,
            hidden=hidden,
            batch_size=options.batch_size,
            episodes=options.episodes,
        )
        partial = result.with_name(f".{result.name}.tmp")  # a run that dies leaves no result
        partial.write_text(json.dumps(curve, indent=1))
        os.replace(partial, result)
        at = dict(zip(curve["steps"], curve["mean"], strict=True))
        print(f"{side} {algorithm} seed {seed}: mean success at each step {at}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="algorithms: " + ", ".join(ALGORITHMS) + " (OGBench's agent of the same name)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("data")
    runner = commands.add_parser("run")
    runner.add_argument("side", choices=("gcrl", "ogbench"))
    runner.add_argument("algorithm", choices=sorted(ALGORITHMS))
    runner.add_argument("--seeds", type=int, nargs="+", default=[0])
    runner.add_argument("--steps", type=int, default=40_000)
    runner.add_argument("--eval-every", type=int, default=10_000)
    runner.add_argument("--episodes", type=int, default=20, help="per task")
    runner.add_argument("--hidden", default="256,256")
    runner.add_argument("--batch-size", type=int, default=256)
    runner.add_argument("--jax-python", help="interpreter with jax, flax, optax, distrax, ogbench")
    runner.add_argument("--impls", help="the impls/ folder of an OGBench checkout")
    options = parser.parse_args()
    if options.command == "data":
        data()
    else:
        run(options.side, options.algorithm, options.seeds, options)


if __name__ == "__main__":
    main()
