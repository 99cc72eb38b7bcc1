"""Training speed on camera images: gcrl's visual GCBC beside OGBench's own (its unmodified
``impls/agents/gcbc.py`` with ``encoder=impala_small``), same encoder, batch and MLP.

    taskset -c 1 .venv/bin/python benchmarks/visual.py \\
        --jax-python /tmp/jax/bin/python --impls /tmp/ogbench/impls
    .venv/bin/python benchmarks/visual.py --seconds 5          # gcrl's rows only

Builds (once, under --workdir) --episodes episodes of 100 steps of 64 x 64 x 3 uint8 images
(a moving dot, ``tests/training_data.py``'s layout: goals are whole observations) as a
native file and in OGBench's npz layout. Every method runs in a fresh process with one
thread, OGBench's visual GCBC settings (``impala_small``, 512 features, 3 x 512 MLP, batch
--batch-size, shifts on half the batches: ``p_aug`` 0.5), steps per second after --warmup
untimed steps, timed for about --seconds:

* ``gcrl, update``: the agent's loss, backward and Adam on pre-drawn batches (the model's
  cost alone; shifts drawn with the batches);
* ``gcrl fit``: ``Trainer.fit`` with the data module sampling, shifting and moving each
  batch, as a user trains;
* ``OGBench impls, update`` and ``sample + update`` (with --impls and --jax-python,
  ``benchmarks/ogbench_impls.py``): its jitted update on pre-drawn batches, and its sampler
  (which crops on the CPU in numpy and JAX) then update, as ``impls/main.py`` trains.

The table ends with gcrl's rates over OGBench's, measured in the same run. Results go to
--json when given.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: train.py's loops
ENCODER, FEATURES, HIDDEN, P_AUG = "impala_small", 512, [512, 512, 512], 0.5


def make_data(workdir: Path, episodes: int) -> tuple[Path, Path]:
    """The native file and its OGBench npz copy (made once)."""
    sys.path.insert(0, str(ROOT))
    from gcrl.datasets import load, write_ogbench
    from tests.training_data import image_goal_reaching

    native = workdir / f"visual-{episodes}.hdf5"
    npz = native.with_suffix(".npz")
    if not native.exists():
        image_goal_reaching(native, episodes=episodes, length=100, size=64)
    if not npz.exists():
        write_ogbench(load(native), npz)
    return native, npz


def measure(args: argparse.Namespace) -> dict[str, float]:
    """gcrl's two rates (in a fresh process)."""
    import torch
    from train import lightning_rate, plain_step, timed  # benchmarks/train.py's loops

    from gcrl.algorithms import BC
    from gcrl.learner import AgentModule
    from gcrl.training import TrajectoryDataModule

    warnings.simplefilter("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(1)

    def module() -> tuple[AgentModule, TrajectoryDataModule]:
        torch.manual_seed(0)
        dm = TrajectoryDataModule(
            str(args.data),
            batch_size=args.batch_size,
            relabel="ogbench",
            image_shift_probability=P_AUG,
            steps_per_epoch=16,
            seed=0,
        )
        agent = BC(
            spec=dm.spec,
            task_signal="goal",
            hidden_dims=HIDDEN,
            image_encoder=ENCODER,
            image_features=FEATURES,
        )
        return AgentModule(agent), dm

    model, dm = module()
    step = plain_step(model, itertools.cycle(list(dm.train_dataloader())))
    update = timed(step, args.warmup, args.seconds)
    model, dm = module()
    steps = max(10, int(update * args.seconds))
    return {"gcrl, update": update, "gcrl fit": lightning_rate(model, dm, args.warmup, steps)}


def measure_ogbench(args: argparse.Namespace, npz: Path) -> dict[str, float]:
    """OGBench's visual GCBC (``ogbench_impls.py``), best round of each rate."""
    command = [args.jax_python, str(Path(__file__).with_name("ogbench_impls.py"))]
    command += ["--impls", str(args.impls), "--data", str(npz), "--agent", "gcbc"]
    command += ["--batch-size", str(args.batch_size), "--hidden-dims", *map(str, HIDDEN)]
    command += ["--encoder", ENCODER, "--p-aug", str(P_AUG), "--warmup", str(args.warmup)]
    command += ["--seconds", str(args.seconds), "--repeats", "1"]
    env = {**os.environ, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"OGBench's GCBC failed:\n{out.stderr[-2000:]}")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "OGBench impls, update": max(record["update"]),
        "OGBench impls, sample + update": max(record["loop"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gcrl-bench-visual"))
    parser.add_argument("--jax-python", help="an interpreter with jax, flax and ogbench")
    parser.add_argument("--impls", type=Path, help="OGBench's impls/ (with --jax-python)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    if bool(args.impls) != bool(args.jax_python):
        parser.error("--impls and --jax-python go together")
    args.workdir.mkdir(parents=True, exist_ok=True)
    native, npz = make_data(args.workdir, args.episodes)
    command = [sys.executable, __file__, "--measure", "--data", str(native)]
    command += ["--batch-size", str(args.batch_size), "--warmup", str(args.warmup)]
    command += ["--seconds", str(args.seconds)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"gcrl's measurement failed:\n{out.stderr[-2000:]}")
    rates: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if args.impls:
        rates.update(measure_ogbench(args, npz))
    print(
        f"visual GCBC: {ENCODER} ({FEATURES} features), 3 x 512 MLP, batch {args.batch_size}, "
        f"64 x 64 x 3 images, p_aug {P_AUG}, one thread"
    )
    for name, rate in rates.items():
        print(f"{name:<34} {rate:>8.2f} steps/s")
    if args.impls:
        update = rates["gcrl, update"] / rates["OGBench impls, update"]
        loop = rates["gcrl fit"] / rates["OGBench impls, sample + update"]
        print(f"\ngcrl update / OGBench update: {update:.2f}")
        print(f"gcrl fit / OGBench sample + update: {loop:.2f}")
    if args.json:
        record = {"batch_size": args.batch_size, "episodes": args.episodes, "rates": rates}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
