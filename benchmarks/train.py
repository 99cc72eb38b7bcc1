"""Training speed: gcrl's GCBC and GCIQL through Lightning, beside a plain PyTorch loop over the
same module and beside OGBench's JAX implementations.

    .venv/bin/python benchmarks/train.py                       # a few minutes on 2 CPU cores
    .venv/bin/python benchmarks/train.py --steps 30 --iql-steps 10 --repeats 1 --skip-threads
    # with the JAX reference measured in the same run (jax, flax, optax in another venv):
    python -m venv /tmp/jax && /tmp/jax/bin/pip install jax flax optax
    .venv/bin/python benchmarks/train.py --jax-python /tmp/jax/bin/python

Builds (once, cached under --workdir) a native gcrl file of PointMaze-like transitions with
``benchmarks/relabel.py``'s ``make_data``: dict observations ``observation`` (4,),
``achieved_goal`` (2,) and ``desired_goal`` (2,), float32 actions (2,), episodes of
--episode-length steps ending in a timeout. Batches of --batch-size come from
``TrajectoryDataModule(relabel="ogbench")``; the networks have OGBench's sizes (3 x 512):

* GCBC: ``BC(task_signal="goal", hidden_dims=[512, 512, 512], loss="nll")``;
* GCIQL: ``IQL(task_signal="goal")`` with its defaults (OGBench GCIQL's).

Each algorithm runs in a fresh process with ``torch.set_num_threads(--threads)``, and each
method is timed over --steps steps after --warmup untimed ones (best of --repeats, the methods
interleaved):

* gcrl via Lightning: ``Trainer(max_steps=..., logger=False, ...)`` fitting the module on the
  data module; a callback reads ``time.perf_counter()`` at ``on_train_batch_start``, and the
  rate counts whole steps from the start of step --warmup (data, logging, hooks included);
* plain loop, pre-drawn batches: the same module class and Adam (``configure_optimizers()``),
  ``loss = module.training_step(batch, i)`` (its ``self.log`` calls are no-ops without a
  Trainer), ``zero_grad``, ``backward``, ``step``, and ``on_train_batch_end`` (IQL's target
  update), cycling over 16 batches drawn beforehand from the same data module: the model's
  cost alone;
* bare PyTorch MLP, no gcrl (GCBC only): the floor for any PyTorch implementation, a
  hand-written ``nn.Sequential`` of the same sizes (exact GELU), fused Adam and the
  unit-variance Gaussian's negative log-likelihood (up to its constant), on the same
  pre-drawn batches: no gcrl code at all;
* plain loop, fresh batches: the same loop drawing each batch from the data module's
  ``train_dataloader()`` (the numpy goal sampler for rows, goals and rewards, then the
  observations and actions gathered from the tensors the data module holds on the device):
  model + data.

With --compile every method uses ``compile_losses=True`` (the loss computation compiled by
``torch.compile`` during the warm-up steps); by default all run eagerly.

The reference rows: with --jax-python, OGBench's updates in JAX (``benchmarks/ogbench_jax.py``:
same sizes and losses, pre-drawn batches, so the model's cost alone), each run in its own
process right after the algorithm's torch process, with the same steps and rounds. Without it,
the figures the issue quotes (:data:`OGBENCH_JAX`, measured earlier on this machine type).
A second table gives the Lightning GCBC rate at 1 and 2 threads (--threads defaults to the
faster one). The script ends with the ratios the targets are stated in.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

#: OGBench's JAX GCBC and GCIQL (``impls/main.py``, the same sizes and batch), training steps
#: per second quoted by the issue, measured earlier on this machine type; used without
#: --jax-python.
OGBENCH_JAX: dict[str, float] = {"GCBC": 48.0, "GCIQL": 6.0}
ALGORITHMS = ("GCBC", "GCIQL")
BARE = "bare PyTorch MLP, no gcrl"
PLAIN = "plain loop, pre-drawn batches"
FRESH = "plain loop, fresh batches"
LIGHTNING = "gcrl via Lightning"
REFERENCE = "OGBench JAX (reference)"
METHODS = (BARE, PLAIN, FRESH, LIGHTNING)
#: Batches drawn beforehand for the plain loop, reused cyclically.
PREDRAWN = 16
#: Targets: Lightning / plain loop, and Lightning / OGBench JAX.
OVERHEAD_TARGET = 0.9
REFERENCE_TARGET = 1.0


# --------------------------------------------------------------------------- building
def data_module(path: Path, batch_size: int, steps: int) -> Any:
    """The benchmark's data module: OGBench relabeling, one epoch of ``steps`` batches."""
    from gcrl.training import TrajectoryDataModule

    dm = TrajectoryDataModule(
        str(path), batch_size=batch_size, relabel="ogbench", steps_per_epoch=steps, seed=0
    )
    dm.setup("fit")
    return dm


def make_module(algorithm: str, spec: Any, compile_losses: bool) -> Any:
    """GCBC or GCIQL with OGBench's network sizes, freshly initialised (seed 0);
    ``compile_losses`` compiles their loss computation (``torch.compile``)."""
    import torch

    from gcrl.algorithms import BC, IQL

    torch.manual_seed(0)
    if algorithm == "GCBC":
        return BC(
            spec=spec,
            task_signal="goal",
            hidden_dims=[512, 512, 512],
            loss="nll",
            compile_losses=compile_losses,
        )
    return IQL(spec=spec, task_signal="goal", compile_losses=compile_losses)


# --------------------------------------------------------------------------- measuring
def bare_gcbc(dims: list[int], batches: Iterator[Any], warmup: int, steps: int) -> float:
    """Steps per second of GCBC written directly in PyTorch (no gcrl module): the same
    sizes, exact GELU, fused Adam and a unit-variance Gaussian's log-likelihood."""
    import torch
    from torch import nn

    obs_dim, goal_dim, action_dim = dims
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for width_in in (obs_dim + goal_dim, 512, 512):
        layers += [nn.Linear(width_in, 512), nn.GELU()]
    actor = nn.Sequential(*layers, nn.Linear(512, action_dim))
    optimizer = torch.optim.Adam(actor.parameters(), lr=3e-4, fused=True)
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        batch = next(batches)
        mean = actor(torch.cat([batch.observations, batch.goals["actor"]], -1))
        loss = 0.5 * ((mean - batch.actions) ** 2).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def plain_loop(module: Any, batches: Iterator[Any], warmup: int, steps: int) -> float:
    """Steps per second of a hand-written loop over ``module`` (after ``warmup`` steps)."""
    optimizer = module.configure_optimizers()
    module.train()
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        batch = next(batches)
        loss = module.training_step(batch, i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.on_train_batch_end(None, batch, i)
    return steps / (time.perf_counter() - start)


def lightning_fit(module: Any, dm: Any, warmup: int, steps: int) -> float:
    """Steps per second of ``Trainer.fit``, from the start of step ``warmup`` to the start of
    step ``warmup + steps`` (whole steps: data, training step, logging, hooks)."""
    import lightning as L
    import torch

    threads = torch.get_num_threads()

    class StepClock(L.Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []

        def on_train_batch_start(self, *args: Any) -> None:
            self.starts.append(time.perf_counter())
            if torch.get_num_threads() != threads:
                raise RuntimeError(f"Lightning set {torch.get_num_threads()} torch threads")

    clock = StepClock()
    trainer = L.Trainer(
        max_steps=warmup + steps + 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=dm)
    return steps / (clock.starts[warmup + steps] - clock.starts[warmup])


def cycle(batches: Iterable[Any]) -> Iterator[Any]:
    return itertools.cycle(list(batches))


def measure(
    algorithm: str,
    path: Path,
    methods: list[str],
    batch_size: int,
    threads: int,
    warmup: int,
    steps: int,
    repeats: int,
    compile_losses: bool,
) -> dict[str, Any]:
    """Best rate of each method over ``repeats`` interleaved rounds (in a fresh process)."""
    import lightning  # noqa: F401  (sets its loggers' level: override it after)
    import torch

    warnings.simplefilter("ignore")  # self.log without a Trainer; Lightning's CPU notes
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(threads)
    dm = data_module(path, batch_size, warmup + steps + 1)
    plain_module = make_module(algorithm, dm.spec, compile_losses)
    lightning_module = make_module(algorithm, dm.spec, compile_losses)
    predrawn = cycle(itertools.islice(iter(dm.train_dataloader()), PREDRAWN))
    runs: dict[str, Callable[[], float]] = {
        PLAIN: lambda: plain_loop(plain_module, predrawn, warmup, steps),
        FRESH: lambda: plain_loop(plain_module, iter(dm.train_dataloader()), warmup, steps),
        LIGHTNING: lambda: lightning_fit(lightning_module, dm, warmup, steps),
    }
    dims = [dm.spec.observation_dim, dm.spec.goal_dim, dm.spec.action_dim]
    if algorithm == "GCBC":
        runs[BARE] = lambda: bare_gcbc(dims, predrawn, warmup, steps)
    methods = [m for m in methods if m in runs]
    rates: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(repeats):
        for method in methods:
            rates[method].append(runs[method]())
    stream = iter(dm.train_dataloader())
    next(stream)
    start = time.perf_counter()
    for _ in range(steps):
        next(stream)
    data_ms = (time.perf_counter() - start) / steps * 1000
    return {
        "rates": {m: max(r) for m, r in rates.items()},
        "all": rates,
        "threads": torch.get_num_threads(),
        "data_ms": data_ms,
        "parameters": sum(p.numel() for p in plain_module.parameters()),
        "dims": dims,
    }


# --------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--episode-length", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=100, help="timed GCBC steps per run")
    parser.add_argument("--iql-steps", type=int, default=30, help="timed GCIQL steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the best one counts")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch.set_num_threads (2: faster when quiet)"
    )
    parser.add_argument(
        "--skip-threads", action="store_true", help="skip the 1 vs 2 threads GCBC table"
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="compile_losses=True for every method (compiled during the warm-up steps)",
    )
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument(
        "--jax-python",
        help="a Python with jax, flax and optax: measure the OGBench JAX rows in this run",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gcrl-bench-train"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        result = measure(
            args.measure,
            args.target,
            args.methods,
            args.batch_size,
            args.threads,
            args.warmup,
            args.steps,
            args.repeats,
            args.compile,
        )
        print(json.dumps(result))
        return

    from _measure import run_isolated
    from relabel import make_data

    work = args.workdir / f"n{args.transitions}-L{args.episode_length}"
    work.mkdir(parents=True, exist_ok=True)
    path = work / "data.hdf5"
    print(f"building data in {work} (cached) ...", file=sys.stderr)
    make_data(path, work / "half.hdf5", args.transitions, args.episode_length)

    common = ["--target", str(path), "--batch-size", str(args.batch_size)]
    common += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    common += ["--compile" if args.compile else "--no-compile"]
    gcbc = [*common, "--steps", str(args.steps)]
    steps = {"GCBC": args.steps, "GCIQL": args.iql_steps}
    results: dict[str, dict[str, Any]] = {}
    for algorithm in args.algorithms:
        child = [*common, "--steps", str(steps[algorithm]), "--threads", str(args.threads)]
        results[algorithm] = run_isolated(__file__, algorithm, child)
        print(f"  {algorithm}: {results[algorithm]['all']}", file=sys.stderr)
        results[algorithm]["reference"] = OGBENCH_JAX[algorithm]
        if args.jax_python:
            rate = measure_jax(args, algorithm, results[algorithm]["dims"], steps[algorithm])
            results[algorithm]["reference"] = rate
            print(f"  {algorithm}, OGBench in JAX: {rate:.1f}/s", file=sys.stderr)

    threads: dict[int, float] = {}
    if not args.skip_threads:
        for n in (1, 2):
            if n == args.threads and "GCBC" in results:
                threads[n] = results["GCBC"]["rates"][LIGHTNING]
                continue
            child = [*gcbc, "--threads", str(n), "--methods", LIGHTNING]
            threads[n] = run_isolated(__file__, "GCBC", child)["rates"][LIGHTNING]
            print(f"  GCBC via Lightning, {n} thread(s): {threads[n]:.1f}/s", file=sys.stderr)
    report(args, results, threads)
    print_matmul_bound(args.batch_size, args.threads)


def measure_jax(args: argparse.Namespace, algorithm: str, dims: list[int], steps: int) -> float:
    """Steps per second of OGBench's update in JAX (``ogbench_jax.py``), in ``--jax-python``."""
    import subprocess

    obs, goal, action = (str(d) for d in dims)
    command = [args.jax_python, str(Path(__file__).with_name("ogbench_jax.py"))]
    command += ["--algorithm", algorithm, "--obs-dim", obs, "--goal-dim", goal]
    command += ["--action-dim", action, "--batch-size", str(args.batch_size)]
    command += ["--warmup", str(args.warmup), "--steps", str(steps)]
    command += ["--repeats", str(args.repeats)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["steps_per_second"])


def print_matmul_bound(batch: int, threads: int) -> None:
    """How fast this machine multiplies GCBC's hidden-layer matrices: the bound on its step.

    A GCBC step multiplies ``batch x 512`` by ``512 x 512`` six times (two hidden layers,
    forward and two backward products each); at the measured rate that alone takes the time
    printed, whatever the framework.
    """
    import torch

    torch.set_num_threads(threads)
    a, w = torch.randn(batch, 512), torch.randn(512, 512)
    for _ in range(10):
        a @ w
    calls = 200
    start = time.perf_counter()
    for _ in range(calls):
        a @ w
    seconds = (time.perf_counter() - start) / calls
    gflops = 2 * batch * 512 * 512 / seconds / 1e9
    print(
        f"\na {batch} x 512 by 512 x 512 fp32 matmul runs at {gflops:.0f} GFLOPS here "
        f"({threads} thread(s)); GCBC's six per step take {6 * seconds * 1000:.1f} ms at that "
        f"rate, {1 / (6 * seconds):.0f} steps/s at most"
    )


def report(
    args: argparse.Namespace, results: dict[str, dict[str, Any]], threads: dict[int, float]
) -> None:
    print(
        f"\n{args.transitions:,} transitions, batch {args.batch_size}, 3 x 512 MLPs, "
        f"{args.threads} torch thread(s); steps/s over {args.steps} (GCBC) or {args.iql_steps} "
        f"(GCIQL) steps after {args.warmup} warm-up steps, best of {args.repeats} interleaved "
        "rounds, each algorithm in a fresh process\n"
    )
    print("| algorithm | method | steps/s | vs plain loop | vs OGBench JAX reference |")
    print("|---|---|---:|---:|---:|")
    for algorithm, result in results.items():
        rates = result["rates"]
        base, ref = rates.get(PLAIN), result["reference"]
        for method in (*METHODS, REFERENCE):
            rate = ref if method == REFERENCE else rates.get(method)
            if rate is None:
                continue
            vs_plain = f"{rate / base:.2f}" if base else "n/a"
            print(f"| {algorithm} | {method} | {rate:.1f} | {vs_plain} | {rate / ref:.2f} |")
    if args.jax_python:
        print(
            "\nOGBench JAX rows: measured in this run (benchmarks/ogbench_jax.py, pre-drawn "
            "batches, in its own process after the algorithm's torch process)."
        )
    else:
        quoted = ", ".join(f"{k} {v:g}" for k, v in OGBENCH_JAX.items())
        print(
            f"\nOGBench JAX rows: the issue's figures ({quoted} steps/s), measured earlier on "
            "this machine type, not by this script (--jax-python measures them)."
        )
    for algorithm, result in results.items():
        print(
            f"{algorithm}: {result['parameters']:,} parameters; one batch from the data module "
            f"(sample + tensors) takes {result['data_ms']:.2f} ms"
        )
    if threads:
        print("\n| torch threads | GCBC via Lightning, steps/s |")
        print("|---:|---:|")
        for n, rate in threads.items():
            print(f"| {n} | {rate:.1f} |")
        best = max(threads, key=threads.__getitem__)
        print(f"faster here: {best} thread(s); this run used --threads {args.threads}")

    rows: list[tuple[str, str, str]] = []
    for algorithm, result in results.items():
        rates = result["rates"]
        lightning, plain = rates.get(LIGHTNING), rates.get(PLAIN)
        overhead = f"{lightning / plain:.2f}" if lightning and plain else "n/a"
        rows.append((f"{algorithm}: Lightning / plain loop", overhead, f">= {OVERHEAD_TARGET}"))
        versus = f"{lightning / result['reference']:.2f}" if lightning else "n/a"
        rows.append((f"{algorithm}: Lightning / OGBench JAX", versus, f">= {REFERENCE_TARGET:g}"))
    print("\nratios (targets in brackets)")
    for label, value, target in rows:
        print(f"{label:<34} {value:>6}  [{target}]")


if __name__ == "__main__":
    main()
