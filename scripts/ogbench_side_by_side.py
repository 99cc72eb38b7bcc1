"""gcrl beside OGBench's own implementation, on the same PointMaze data and budget: learning
curves for ``docs/results.md``.

    python scripts/ogbench_side_by_side.py data       # 1,000 episodes x 1,000 steps, + the npz
    python scripts/ogbench_side_by_side.py run gcrl gcivl --seeds 0 1
    python scripts/ogbench_side_by_side.py run ogbench gcivl --seeds 0 1 \\
        --jax-python /tmp/jax/bin/python --impls OGBENCH/impls
    python scripts/results.py table                   # docs/results.md's table from the runs
    python scripts/ogbench_side_by_side.py data --env cube-single   # OGBench's play data
    python scripts/ogbench_side_by_side.py run gcrl gciql --env cube-single --seeds 0

Both sides get the same file (``results/data/pointmaze-medium-1m.hdf5``, and its copy in
OGBench's npz layout for OGBench; with ``--env cube-single`` or ``puzzle-3x3``, OGBench's
play dataset recorded by its oracles, ``results/data/<env>-play.hdf5``), OGBench's
hyperparameters for that environment (``impls/hyperparameters.sh``) except the sizes given
here (``--hidden``, ``--batch-size``, the same for both), the same number of steps, and an
evaluation on OGBench's five tasks every ``--eval-every`` steps with ``--episodes`` episodes
each. gcrl's side is ``gcrl fit`` with
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
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from results import _commit as results_commit  # scripts/results.py: the same record

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "results" / "data" / "pointmaze-medium-1m.hdf5"
OUT = ROOT / "results" / "side"

#: algorithm -> (gcrl config, OGBench agent, OGBench's pointmaze-medium-navigate overrides)
#: (the gcrl configs hold the same values).
ALGORITHMS = {
    "gcbc": ("pointmaze-gcbc.yaml", "gcbc", []),
    "gciql": ("pointmaze-gciql.yaml", "gciql", ["alpha=0.003"]),
    "gcivl": ("pointmaze-gcivl.yaml", "gcivl", ["alpha=10.0"]),
    "hiql": ("pointmaze-hiql.yaml", "hiql", ["high_alpha=3.0", "low_alpha=3.0"]),
    "qrl": ("pointmaze-qrl.yaml", "qrl", ["alpha=0.0003"]),
    "crl": ("pointmaze-crl.yaml", "crl", ["alpha=0.03"]),
}


@dataclass(frozen=True)
class Environment:
    """One side-by-side environment: its data, how ``gcrl collect`` records it, the
    evaluation environments of both sides, and OGBench's per-environment hyperparameters
    (``impls/hyperparameters.sh``) as options of each side, by algorithm."""

    data: Path
    collect: tuple[str, ...]
    gcrl_env: str
    ogbench_env: str
    gcrl_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ogbench_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def results(self, name: str) -> Path:
        """Where its runs' records go: ``results/side/`` for the maze, a folder otherwise."""
        return OUT if self.data == DATA else OUT / name


def _manipulation(name: str) -> Environment:
    """OGBench's ``<name>-play-v0``: 1000 episodes of 1000 steps played by its oracles, and
    its hyperparameters for the play datasets (the same for cube-single and puzzle-3x3)."""
    alphas = {"gcivl": "10.0", "gciql": "1.0", "qrl": "0.3", "crl": "3.0"}
    gcrl = {a: (f"--model.init_args.alpha={v}",) for a, v in alphas.items()}
    gcrl["hiql"] = ("--model.init_args.subgoal_steps=10",)
    ogbench = {a: (f"alpha={v}",) for a, v in alphas.items()}
    ogbench["hiql"] = ("high_alpha=3.0", "low_alpha=3.0", "subgoal_steps=10")
    return Environment(
        data=ROOT / "results" / "data" / f"{name}-play.hdf5",
        collect=(name, "--episodes", "1000", "--seed", "0", "--workers", "2"),
        gcrl_env=f"{name}-v0",
        ogbench_env=f"{name}-play-v0",
        gcrl_overrides=gcrl,
        ogbench_overrides=ogbench,
    )


ENVIRONMENTS = {
    "pointmaze-medium": Environment(
        data=DATA,
        collect=("pointmaze", "--maze", "medium", "--episodes", "1000", "--seed", "0"),
        gcrl_env="pointmaze-medium",
        ogbench_env="pointmaze-medium-navigate-v0",
        ogbench_overrides={a: tuple(o) for a, (_, _, o) in ALGORITHMS.items()},
    ),
    "cube-single": _manipulation("cube-single"),
    "puzzle-3x3": _manipulation("puzzle-3x3"),
}


def _one_thread() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    }


def data(env: Environment) -> None:
    """Collect the OGBench-sized file of ``env`` (if absent) and write its npz copy."""
    gcrl = str(Path(sys.executable).parent / "gcrl")
    if not env.data.exists():
        env.data.parent.mkdir(parents=True, exist_ok=True)
        name, *options = env.collect
        subprocess.run([gcrl, "collect", name, str(env.data), *options], check=True)
    npz = env.data.with_suffix(".npz")
    if not npz.exists():
        from gcrl.datasets import load, write_ogbench

        write_ogbench(load(env.data), npz)
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


def _joined(earlier: Path, later: dict) -> dict:
    """A chunked gcrl run's curve: the evaluations of its earlier chunks (``earlier``, when
    it exists) and of the last one, by step; the training rate is the chunks' median."""
    if not earlier.exists():
        return later
    before = json.loads(earlier.read_text())
    steps = sorted(set(before["steps"]) | set(later["steps"]))

    def at(curve: dict, values: list[float], step: int) -> float | None:
        return values[curve["steps"].index(step)] if step in curve["steps"] else None

    def pick(name: str | None, step: int) -> float:
        def of(curve: dict) -> list[float]:
            return curve["mean"] if name is None else curve["success"][name]

        found = at(later, of(later), step)
        return found if found is not None else at(before, of(before), step)  # type: ignore[return-value]

    rates = [r for r in (before.get("steps_per_second"), later.get("steps_per_second")) if r]
    return {
        "steps": steps,
        "mean": [pick(None, step) for step in steps],
        "success": {name: [pick(name, step) for step in steps] for name in later["success"]},
        "steps_per_second": float(np.median(rates)) if rates else None,
    }


def run(side: str, algorithm: str, seeds: list[int], options: argparse.Namespace) -> None:
    config, agent, _ = ALGORITHMS[algorithm]
    env = ENVIRONMENTS[options.env]
    ogbench_overrides = env.ogbench_overrides.get(algorithm, ())
    hidden = [int(h) for h in options.hidden.split(",")]
    out = env.results(options.env)
    out.mkdir(parents=True, exist_ok=True)
    if options.stop_at is not None and options.stop_at % options.eval_every:
        raise SystemExit("--stop-at: must be a multiple of --eval-every (checkpoints are there)")
    for seed in seeds:
        result = out / f"{side}-{algorithm}-s{seed}.json"
        if result.exists():
            continue
        work = out / "runs" / f"{side}-{algorithm}-s{seed}"
        work.mkdir(parents=True, exist_ok=True)
        # A run in chunks keeps its checkpoint and curve so far here (committed between
        # sessions; removed once the run is complete).
        partial = (out / "partial" / f"{side}-{algorithm}-s{seed}").resolve()
        stop = options.steps if options.stop_at is None else min(options.stop_at, options.steps)
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
                f"--data.path={env.data}",
                f"--data.batch_size={options.batch_size}",
                "--data.val_fraction=0",
                *sizes,
                *env.gcrl_overrides.get(algorithm, ()),
                f"--trainer.max_steps={stop}",
                "--trainer.enable_progress_bar=false",
                "--trainer.callbacks+=gcrl.callbacks.EvaluationCallback",
                f"--trainer.callbacks.env={env.gcrl_env}",
                f"--trainer.callbacks.every_n_steps={options.eval_every}",
                f"--trainer.callbacks.episodes={options.episodes}",
                f"--trainer.callbacks.seed={100 + seed}",
                f"--seed_everything={seed}",
                f"--data.seed={seed}",
            ]
            if options.stop_at is not None or partial.exists():
                command += [  # a checkpoint at every evaluation, to resume the run from
                    "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                    f"--trainer.callbacks.dirpath={partial}",
                    f"--trainer.callbacks.every_n_train_steps={options.eval_every}",
                    "--trainer.callbacks.save_top_k=1",
                    "--trainer.callbacks.save_last=true",
                    "--trainer.callbacks.enable_version_counter=false",  # one last.ckpt
                ]
                if (partial / "last.ckpt").exists():
                    command.append(f"--ckpt_path={partial / 'last.ckpt'}")
            with open(work / "log.txt", "w") as log:
                subprocess.run(
                    command, cwd=work, env=_one_thread(), stdout=log, stderr=log, check=True
                )
            metrics = max(work.glob("runs/csv/version_*/metrics.csv"), key=os.path.getmtime)
            curve = _joined(partial / "curve.json", _gcrl_curve(metrics))
            if stop < options.steps:
                partial.mkdir(parents=True, exist_ok=True)
                (partial / "curve.json").write_text(json.dumps(curve, indent=1))
                for kept in partial.glob("*.ckpt"):  # only last.ckpt resumes: 5 MB, committed
                    if kept.name != "last.ckpt":
                        kept.unlink()
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
                str(env.data.with_suffix(".npz")),
                "--env",
                env.ogbench_env,
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
            if options.stop_at is not None or partial.exists():
                command += [f"--checkpoint={partial / 'run.pkl'}", f"--stop-at={stop}"]
            with open(work / "log.txt", "a") as log:
                subprocess.run(command, env=_one_thread(), stdout=log, stderr=log, check=True)
            curve = json.loads(raw.read_text()) if stop == options.steps else {}
        # The wall time of every chunk so far, evaluations included.
        wall = partial / "wall_seconds.txt"
        seconds = time.perf_counter() - started + (float(wall.read_text()) if wall.exists() else 0)
        if stop < options.steps:
            partial.mkdir(parents=True, exist_ok=True)
            wall.write_text(f"{seconds}\n")
            print(f"{side} {algorithm} seed {seed}: stopped at step {stop}", flush=True)
            continue
        curve.update(
            commit=results_commit(),
            env=options.env,
            side=side,
            algorithm=algorithm,
            seed=seed,
            wall_seconds=seconds,
            hidden=hidden,
            batch_size=options.batch_size,
            episodes=options.episodes,
        )
        tmp = result.with_name(f".{result.name}.tmp")  # a run that dies leaves no result
        tmp.write_text(json.dumps(curve, indent=1))
        os.replace(tmp, result)
        shutil.rmtree(partial, ignore_errors=True)
        at = dict(zip(curve["steps"], curve["mean"], strict=True))
        print(f"{side} {algorithm} seed {seed}: mean success at each step {at}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="algorithms: " + ", ".join(ALGORITHMS) + " (OGBench's agent of the same name)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    collector = commands.add_parser("data")
    runner = commands.add_parser("run")
    for sub in (collector, runner):
        sub.add_argument(
            "--env",
            choices=sorted(ENVIRONMENTS),
            default="pointmaze-medium",
            help="pointmaze-medium (default; records in results/side/), or OGBench's "
            "cube-single / puzzle-3x3 play data (results/side/<env>/)",
        )
    runner.add_argument("side", choices=("gcrl", "ogbench"))
    runner.add_argument("algorithm", choices=sorted(ALGORITHMS))
    runner.add_argument("--seeds", type=int, nargs="+", default=[0])
    runner.add_argument("--steps", type=int, default=40_000)
    runner.add_argument("--eval-every", type=int, default=10_000)
    runner.add_argument("--episodes", type=int, default=20, help="per task")
    runner.add_argument("--hidden", default="256,256")
    runner.add_argument("--batch-size", type=int, default=256)
    runner.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="run in chunks: stop after this step (a multiple of --eval-every), keeping a "
        "checkpoint and the curve so far under results/side/partial/; the same command "
        "without it (or with a later step) continues from there",
    )
    runner.add_argument("--jax-python", help="interpreter with jax, flax, optax, distrax, ogbench")
    runner.add_argument("--impls", help="the impls/ folder of an OGBench checkout")
    options = parser.parse_args()
    if options.command == "data":
        data(ENVIRONMENTS[options.env])
    else:
        run(options.side, options.algorithm, options.seeds, options)


if __name__ == "__main__":
    main()
