"""Training speed: gcrl's GCBC, GCIQL, GCIVL, HIQL, QRL and CRL through Lightning (eager and
with ``compile_step``),
beside a plain PyTorch loop over the same module, a bare PyTorch MLP, and OGBench's updates in
JAX measured in the same run, at several batch and network sizes.

    taskset -c 1 .venv/bin/python benchmarks/train.py --jax-python /tmp/jax/bin/python
    .venv/bin/python benchmarks/train.py --seconds 1 --repeats 1 --algorithms GCBC  # quick
    # the JAX reference (jax, flax, optax) in a venv of its own:
    python -m venv /tmp/jax && /tmp/jax/bin/pip install jax flax optax

Builds (once, cached under --workdir) a native file of PointMaze-like transitions with
``benchmarks/relabel.py``'s ``make_data`` (dict observations ``observation`` (4,),
``achieved_goal`` (2,), ``desired_goal`` (2,), float32 actions (2,)) and the same data with
flat array observations (the ``observation`` key; the goal is its first two dimensions,
``goal_dims=[0, 1]``, as in D4RL AntMaze files). Batches come from
``TrajectoryDataModule(relabel="ogbench")``. Each (batch size, hidden widths) of the grid
(``--batch-size`` x ``--hidden-dims``) and algorithm runs in a fresh process with
``torch.set_num_threads(--threads)`` (1 by default; pin the run with ``taskset``):

* GCBC: ``BC(task_signal="goal", hidden_dims=H, loss="nll")``;
* GCIQL: ``IQL(task_signal="goal", actor_hidden_dims=H, value_hidden_dims=H)``, otherwise its
  defaults (OGBench GCIQL's); GCIVL, HIQL, QRL and CRL likewise, at their defaults (OGBench's),
  each drawing the goal sets it declares (``data_needs``: HIQL's subgoals 25 steps ahead, QRL's
  random and CRL's geometric value goals), QRL with the achieved goal as its state (QRL's
  goals are states: dict layout ``observation_keys=["achieved_goal"]``, array layout the
  whole observation as the goal).

Methods (steps per second after --warmup untimed steps, each timed for about --seconds, best
of --repeats interleaved rounds):

* bare PyTorch MLP (GCBC only): a hand-written ``nn.Sequential`` with fused Adam on pre-drawn
  batches, no gcrl code: the floor for an eager PyTorch implementation;
* plain loop: the gcrl module's ``training_step``, ``backward``, Adam and ``update_targets``
  on 16 pre-drawn batches: the model's cost alone;
* plain loop, compiled update: the update ``compile_step`` runs (``gcrl.learner.compiled``:
  gradient, Adam and target update in one compiled function) on the same pre-drawn batches:
  the row to set beside OGBench's jitted update, which is timed the same way;
* gcrl via Lightning, dict / array observations: ``Trainer.fit`` on the data module (data,
  logging and hooks included), each layout's own data module;
* gcrl via Lightning, compile_step: the same with ``compile_step=True`` (dict observations);
* gcrl via Lightning, compile_step, updates_per_batch K: the same with ``updates_per_batch=K``
  (--updates-per-batch, 8 by default): K optimiser steps per Lightning step, their batches
  drawn at once; steps/s counts optimiser steps;
* OGBench impls, update / sample + update (--impls, with --jax-python): OGBench's own agents,
  unmodified (``benchmarks/ogbench_impls.py``: the agent's jitted ``update`` on pre-drawn
  batches, and OGBench's sampler then ``update`` as ``impls/main.py`` trains), on the same
  data written in OGBench's npz layout. The compiled update is set beside the first, and
  ``gcrl fit``'s best row beside the second;
* OGBench-style JAX rebuild (--jax-python without --impls, or with --rebuild):
  ``benchmarks/ogbench_jax.py``, the losses written from OGBench's description (pre-drawn
  batches, the whole update under one ``jax.jit``). Without either the table prints the
  figures quoted by the issues where they exist, marked "quoted, not measured", and no
  ratio against JAX.

With --json PATH, the rows (every round of every method), the options and the commit are
also written to PATH, which ``scripts/results.py table`` renders into docs/results.md.

With --layouts, only the multi-task layouts' table instead (``benchmarks/_layouts.py``: each
layout of ``gcrl.models.layouts`` for BC and IQL, 10 tasks, against the shared MLP).

With --ddp, a second table: GCBC through ``gcrl fit`` on 1 process against 2 (``--trainer.
strategy ddp --trainer.devices 2`` on CPU, gloo), the global batch held equal (each of the
two ranks takes half), at each size.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ALGORITHMS = ("GCBC", "GCIQL", "GCIVL", "HIQL", "QRL", "CRL")
BARE = "bare PyTorch MLP"
PLAIN = "plain loop, pre-drawn batches"
PLAIN_COMPILED = "plain loop, pre-drawn, compiled update"
LIGHTNING = "gcrl via Lightning, dict observations"
ARRAY = "gcrl via Lightning, array observations"
COMPILED = "gcrl via Lightning, dict, compile_step"
STEPPED = "gcrl via Lightning, dict, compile_step, updates_per_batch {k}"
JAX = "OGBench-style JAX rebuild"
IMPLS_UPDATE = "OGBench impls, update"
IMPLS_LOOP = "OGBench impls, sample + update"
METHODS = (BARE, PLAIN, PLAIN_COMPILED, LIGHTNING, ARRAY, COMPILED)
#: Batches drawn beforehand for the loops without a data module, reused cyclically.
PREDRAWN = 16
#: Steps/s of OGBench's own training loop (``impls/main.py``, sampling included) quoted by the
#: issues, on this machine type: (algorithm, batch, hidden) -> figure. Shown only without
#: --jax-python, labelled as quoted.
QUOTED_JAX: dict[tuple[str, int, tuple[int, ...]], float] = {
    ("GCBC", 256, (256, 256)): 287.6,
    ("GCIQL", 256, (256, 256)): 57.8,
    ("GCBC", 1024, (512, 512, 512)): 48.0,
    ("GCIQL", 1024, (512, 512, 512)): 6.0,
}
#: XLA on one thread, as torch is (``taskset`` alone leaves XLA's pool sized to the machine).
JAX_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
TARGET = 1.0  # Lightning (best of eager / compiled) / OGBench JAX


# --------------------------------------------------------------------------- data
def array_copy(path: Path, out: Path) -> None:
    """``path`` with flat array observations (its ``observation`` key), once."""
    if out.exists():
        return
    import dataclasses

    from gcrl.datasets import load_native, save

    data = load_native(path)
    flat = dataclasses.replace(
        data,
        observations=data.observations["observation"],
        next_observations=data.next_observations["observation"],
    )
    save(flat, out)


def data_module(
    path: Path, layout: str, batch_size: int, steps: int, updates: int = 1, algorithm: str = ""
) -> Any:
    from gcrl.training import TrajectoryDataModule

    options: dict[str, Any] = {}
    goal_dims: list[int] | None = [0, 1] if layout == "array" else None
    if algorithm == "QRL":  # the goal must be the state
        goal_dims = None
        if layout == "dict":
            options["observation_keys"] = ["achieved_goal"]
    dm = TrajectoryDataModule(
        str(path),
        batch_size=batch_size,
        relabel="ogbench",
        goal_dims=goal_dims,
        updates_per_batch=updates,
        steps_per_epoch=steps,
        seed=0,
        **options,
    )
    if algorithm:  # the algorithm's own goal sets (HIQL's subgoals, CRL's value goals)
        dm.needs = algorithm_class(algorithm).data_needs
    dm.setup("fit")
    return dm


def algorithm_class(algorithm: str) -> Any:
    """The gcrl class of a benchmarked algorithm's name."""
    from gcrl import algorithms

    names = {"GCBC": "BC", "GCIQL": "IQL"}
    return getattr(algorithms, names.get(algorithm, algorithm))


def make_module(algorithm: str, spec: Any, hidden: list[int], compile_step: bool) -> Any:
    """The algorithm's agent of ``hidden`` widths, freshly initialised (seed 0), in the
    Lightning adapter."""
    import torch

    from gcrl import algorithms
    from gcrl.learner import AgentModule

    torch.manual_seed(0)
    if algorithm == "GCBC":
        agent: Any = algorithms.BC(
            spec=spec,
            task_signal="goal",
            hidden_dims=hidden,
            loss="nll",
            compile_step=compile_step,
        )
    else:
        agent = algorithm_class(algorithm)(
            spec=spec,
            task_signal="goal",
            actor_hidden_dims=hidden,
            value_hidden_dims=hidden,
            compile_step=compile_step,
        )
    return AgentModule(agent)


# --------------------------------------------------------------------------- measuring
def timed(step: Callable[[], None], warmup: int, seconds: float) -> float:
    """Steps per second of ``step()`` called for at least ``seconds`` after ``warmup``."""
    for _ in range(warmup):
        step()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        step()
        calls += 1
    return calls / elapsed


def bare_step(dims: list[int], hidden: list[int], batches: Iterator[Any]) -> Callable[[], None]:
    """A GCBC step written directly in PyTorch: exact GELU, fused Adam, unit-variance
    Gaussian log-likelihood (up to its constant)."""
    import torch
    from torch import nn

    obs_dim, goal_dim, action_dim = dims
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    width = obs_dim + goal_dim
    for out in hidden:
        layers += [nn.Linear(width, out), nn.GELU()]
        width = out
    actor = nn.Sequential(*layers, nn.Linear(width, action_dim))
    optimizer = torch.optim.Adam(actor.parameters(), lr=3e-4, fused=True)

    def step() -> None:
        batch = next(batches)
        mean = actor(torch.cat([batch.observations, batch.goals["actor"]], -1))
        loss = 0.5 * ((mean - batch.actions) ** 2).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def plain_step(module: Any, batches: Iterator[Any]) -> Callable[[], None]:
    """A hand-written loop over the gcrl module (its ``self.log`` calls are no-ops)."""
    optimizer = module.configure_optimizers()
    module.train()

    def step() -> None:
        loss = module.training_step(next(batches), 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.update_targets()

    return step


def compiled_plain_step(module: Any, batches: Iterator[Any]) -> Callable[[], None]:
    """The compiled whole update (``gcrl.learner.compiled``, what ``compile_step`` runs)
    on pre-drawn batches: the model's cost alone, compiled, beside OGBench's jitted update."""
    from gcrl.learner.compiled import CompiledAdam, CompiledUpdate

    params = [p for p in module.parameters() if p.requires_grad]
    update = CompiledUpdate(module, CompiledAdam(params, lr=module.learning_rate), None)
    module.train()
    return lambda: update(next(batches)) and None


def lightning_rate(module: Any, dm: Any, warmup: int, steps: int, updates: int = 1) -> float:
    """Lightning steps per second of ``Trainer.fit`` over ``steps`` steps after ``warmup``
    (each of ``updates`` optimiser steps)."""
    import lightning as L
    import torch
    from _clock import StepClock

    threads = torch.get_num_threads()
    clock = StepClock(warmup=warmup)
    trainer = L.Trainer(
        max_steps=(warmup + steps + 1) * updates,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=dm)
    if torch.get_num_threads() != threads:
        raise RuntimeError(f"Lightning set {torch.get_num_threads()} torch threads")
    return clock.rate(steps)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every method at one size for one algorithm (in a fresh process)."""
    import lightning  # noqa: F401  (sets its loggers' level: override it after)
    import torch

    warnings.simplefilter("ignore")  # self.log without a Trainer; Lightning's CPU notes
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    algorithm, hidden, batch = args.measure, args.hidden_dims[0], args.batch_size[0]
    dims_of = hidden_list(hidden)
    dm = data_module(args.target, "dict", batch, PREDRAWN, algorithm=algorithm)
    predrawn = itertools.cycle(list(dm.train_dataloader()))
    dims = [dm.spec.observation_dim, dm.spec.goal_dim, dm.spec.action_dim]
    plain = plain_step(make_module(algorithm, dm.spec, dims_of, False), predrawn)
    # The plain loop's rate sizes the Lightning runs to about --seconds each.
    estimate = timed(plain, args.warmup, min(args.seconds, 1.0))
    steps = max(20, int(estimate * args.seconds))

    def fit(layout: str, compile_step: bool, updates: int = 1) -> Callable[[], float]:
        def run() -> float:
            path = args.target if layout == "dict" else args.array_target
            batches = (args.warmup + steps) // updates + 2
            data = data_module(path, layout, batch, batches, updates, algorithm)
            module = make_module(algorithm, data.spec, dims_of, compile_step)
            # The clock ticks once per batch: rates in optimiser steps per second.
            warmup = max(1, args.warmup // updates)
            rate = lightning_rate(module, data, warmup, batches - warmup - 1, updates)
            return updates * rate

        return run

    compiled = compiled_plain_step(make_module(algorithm, dm.spec, dims_of, True), predrawn)
    runs: dict[str, Callable[[], float]] = {
        PLAIN: lambda: timed(plain, args.warmup, args.seconds),
        PLAIN_COMPILED: lambda: timed(compiled, args.warmup, args.seconds),
        LIGHTNING: fit("dict", False),
        ARRAY: fit("array", False),
        COMPILED: fit("dict", True),
    }
    stepped = STEPPED.format(k=args.updates_per_batch)
    if args.updates_per_batch > 1 and STEPPED in args.methods:
        runs[stepped] = fit("dict", True, args.updates_per_batch)
    if algorithm == "GCBC":
        bare = bare_step(dims, dims_of, predrawn)
        runs[BARE] = lambda: timed(bare, args.warmup, args.seconds)
    chosen = [m for m in (*METHODS, stepped) if m in runs and m in (*args.methods, stepped)]
    rates: dict[str, list[float]] = {m: [] for m in chosen}
    for _ in range(args.repeats):
        for method in chosen:
            rates[method].append(runs[method]())
    return {"rates": rates, "dims": dims, "threads": torch.get_num_threads()}


def hidden_list(spec: str) -> list[int]:
    return [int(w) for w in spec.split(",")]


def measure_jax(
    args: argparse.Namespace, algorithm: str, dims: list[int], batch: int, hidden: str
) -> list[float]:
    """OGBench's update in JAX (``ogbench_jax.py``): the rate of each of --repeats rounds."""
    obs, goal, action = (str(d) for d in dims)
    command = [args.jax_python, str(Path(__file__).with_name("ogbench_jax.py"))]
    command += ["--algorithm", algorithm, "--obs-dim", obs, "--goal-dim", goal]
    command += ["--action-dim", action, "--batch-size", str(batch)]
    command += ["--hidden-dims", *hidden.split(","), "--warmup", str(args.warmup)]
    command += ["--seconds", str(args.seconds), "--repeats", str(args.repeats)]
    env = dict(os.environ, XLA_FLAGS=JAX_ONE_THREAD)
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return [float(r) for r in json.loads(out.strip().splitlines()[-1])["rounds"]]


def measure_impls(
    args: argparse.Namespace, algorithm: str, npz: Path, batch: int, hidden: str
) -> dict[str, list[float]]:
    """OGBench's own agent (``ogbench_impls.py``): each round's rate of its update on
    pre-drawn batches and of its sample-then-update loop."""
    command = [args.jax_python, str(Path(__file__).with_name("ogbench_impls.py"))]
    command += ["--impls", str(args.impls), "--data", str(npz), "--agent", algorithm.lower()]
    command += ["--batch-size", str(batch), "--hidden-dims", *hidden.split(",")]
    command += ["--warmup", str(args.warmup), "--seconds", str(args.seconds)]
    command += ["--repeats", str(args.repeats)]
    env = dict(os.environ, XLA_FLAGS=JAX_ONE_THREAD)
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {IMPLS_UPDATE: result["update"], IMPLS_LOOP: result["loop"]}


def ddp_rates(args: argparse.Namespace, path: Path, batch: int, hidden: str) -> dict[int, float]:
    """GCBC steps/s through ``gcrl fit`` on 1 and on 2 CPU processes, global batch ``batch``."""
    out: dict[int, float] = {}
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    for devices in (1, 2):
        with tempfile.TemporaryDirectory() as work:
            rate = Path(work) / "rate.json"
            command = [sys.executable, "-m", "gcrl", "fit", "--model", "gcrl.algorithms.BC"]
            command += ["--model.task_signal", "goal", "--model.loss", "nll"]
            command += ["--model.hidden_dims", f"[{hidden}]", "--data.path", str(path)]
            command += ["--data.batch_size", str(batch // devices), "--data.relabel", "ogbench"]
            command += ["--trainer.max_steps", str(args.ddp_steps), "--trainer.logger", "false"]
            command += ["--trainer.enable_checkpointing", "false"]
            command += ["--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
            command += ["--trainer.devices", str(devices)]
            if devices > 1:
                command += ["--trainer.strategy", "ddp"]
            command += ["--trainer.callbacks+=_clock.StepClock", f"--trainer.callbacks.out={rate}"]
            subprocess.run(command, check=True, capture_output=True, cwd=work, env=env)
            out[devices] = json.loads(rate.read_text())["steps_per_second"]
    return out


# --------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transitions", type=int, default=200_000)
    parser.add_argument("--episode-length", type=int, default=500)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256, 1024])
    parser.add_argument(
        "--hidden-dims",
        nargs="+",
        default=["256,256", "512,512,512"],
        help="hidden widths, comma-separated, one network size per value",
    )
    parser.add_argument(
        "--grid",
        action="store_true",
        help="every batch size with every network (default: the i-th with the i-th)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; best and spread shown")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument(
        "--methods", nargs="+", default=[*METHODS, STEPPED], choices=[*METHODS, STEPPED]
    )
    parser.add_argument(
        "--updates-per-batch",
        type=int,
        default=8,
        help="the updates_per_batch row (optimiser steps per Lightning step)",
    )
    parser.add_argument(
        "--jax-python", help="a Python with jax, flax and optax: measure OGBench's JAX rows"
    )
    parser.add_argument("--impls", type=Path, help="OGBench's impls/: time its own agents")
    parser.add_argument(
        "--rebuild", action="store_true", help="with --impls, also the OGBench-style rebuild"
    )
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="only the multi-task layouts' table (10 tasks, the last --batch-size; "
        "benchmarks/_layouts.py)",
    )
    parser.add_argument("--ddp", action="store_true", help="add the 1 vs 2 process table")
    parser.add_argument("--ddp-steps", type=int, default=300)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gcrl-bench-train"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--array-target", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.impls and not args.jax_python:
        parser.error("--impls: needs --jax-python (an interpreter with jax and ogbench)")
    if args.measure:
        print(json.dumps(measure(args)))
        return
    if args.layouts:
        from _layouts import measure_layouts, report_layouts

        layouts = measure_layouts(args, timed, plain_step)
        report_layouts(args, layouts)
        if args.json:
            write_json(args, {"layouts": layouts})
        return

    from _measure import run_isolated
    from relabel import make_data

    work = args.workdir / f"n{args.transitions}-L{args.episode_length}"
    work.mkdir(parents=True, exist_ok=True)
    path, array_path = work / "data.hdf5", work / "array.hdf5"
    print(f"building data in {work} (cached) ...", file=sys.stderr)
    make_data(path, work / "half.hdf5", args.transitions, args.episode_length)
    array_copy(path, array_path)
    npz = work / "data.npz"
    if args.impls and not npz.exists():
        from gcrl.datasets import load, write_ogbench

        write_ogbench(load(path), npz)

    if args.grid:
        sizes = list(itertools.product(args.batch_size, args.hidden_dims))
    else:
        sizes = list(zip(args.batch_size, args.hidden_dims, strict=True))
    rows: list[dict[str, Any]] = []
    for (batch, hidden), algorithm in itertools.product(sizes, args.algorithms):
        child = ["--target", str(path), "--array-target", str(array_path)]
        child += ["--batch-size", str(batch), "--hidden-dims", hidden, "--threads"]
        child += [str(args.threads), "--warmup", str(args.warmup), "--seconds"]
        child += [str(args.seconds), "--repeats", str(args.repeats), "--methods", *args.methods]
        child += ["--updates-per-batch", str(args.updates_per_batch)]
        result = run_isolated(__file__, algorithm, child)
        rates = result["rates"]
        if args.jax_python and args.impls:
            rates.update(measure_impls(args, algorithm, npz, batch, hidden))
        if args.jax_python and (args.rebuild or not args.impls):
            rates[JAX] = measure_jax(args, algorithm, result["dims"], batch, hidden)
        rows.append({"algorithm": algorithm, "batch": batch, "hidden": hidden, "rates": rates})
        print(f"  {algorithm} batch {batch} [{hidden}]: {rates}", file=sys.stderr)
    ddp = [
        {"batch": batch, "hidden": hidden, "rates": ddp_rates(args, path, batch, hidden)}
        for batch, hidden in (sizes if args.ddp else [])
    ]
    report(args, rows, ddp)
    if args.json:
        write_json(args, {"rows": rows, "ddp": ddp})


def write_json(args: argparse.Namespace, measurements: dict[str, Any]) -> None:
    """``measurements`` with the run's options, commit and machine, written to ``args.json``
    (atomically)."""
    import platform

    here = Path(__file__).parent
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
    ).stdout.strip()
    # A record of uncommitted code says so, as scripts/results.py's summaries do.
    changed = ["git", "diff", "--quiet", "HEAD", "--", "gcrl", "benchmarks"]
    if subprocess.run(changed, cwd=here.parent).returncode:
        commit += "+dirty"
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    for hidden in ("measure", "target", "array_target", "workdir", "json", "impls", "jax_python"):
        options.pop(hidden, None)
    record = {
        "benchmark": "train.py",
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "options": options,
        **measurements,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(f".{args.json.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(args.json)
    print(f"wrote {args.json}", file=sys.stderr)


def report(args: argparse.Namespace, rows: list[dict[str, Any]], ddp: list[dict[str, Any]]) -> None:
    print(
        f"\n{args.transitions:,} transitions; {args.threads} torch thread(s); steps/s timed for "
        f"about {args.seconds:g} s after {args.warmup} warm-up steps, best of {args.repeats} "
        "interleaved rounds (spread: lowest-highest), each algorithm and size in a fresh "
        "process\n"
    )
    reference = "vs OGBench JAX" if args.jax_python else "vs OGBench JAX (quoted)"
    if args.jax_python and args.impls:
        reference = "vs OGBench impls update"
    print(f"| algorithm | batch | hidden | method | steps/s | spread | vs plain | {reference} |")
    print("|---|---:|---|---|---:|---|---:|---:|")
    ratios: list[tuple[str, str, str]] = []
    for row in rows:
        rates = row["rates"]
        key = (row["algorithm"], row["batch"], tuple(hidden_list(row["hidden"])))
        # The reference: OGBench's own update where measured, else the rebuild's.
        reference = IMPLS_UPDATE if IMPLS_UPDATE in rates else JAX
        jax = max(rates[reference]) if reference in rates else None
        loop = max(rates[IMPLS_LOOP]) if IMPLS_LOOP in rates else jax
        quoted = QUOTED_JAX.get(key) if jax is None else None
        plain = max(rates[PLAIN]) if PLAIN in rates else None
        references = (IMPLS_UPDATE, IMPLS_LOOP, JAX)
        ours = (m for m in rates if m not in METHODS and m not in references)
        for method in (*METHODS, *ours, *references):
            if method not in rates:
                continue
            best, low = max(rates[method]), min(rates[method])
            vs_plain = f"{best / plain:.2f}" if plain else "n/a"
            vs_jax = f"{best / jax:.2f}" if jax else "n/a"
            print(
                f"| {row['algorithm']} | {row['batch']} | {row['hidden']} | {method} | "
                f"{best:.1f} | {low:.1f}-{best:.1f} | {vs_plain} | {vs_jax} |"
            )
        if quoted is not None:
            print(
                f"| {row['algorithm']} | {row['batch']} | {row['hidden']} | OGBench JAX, "
                f"impls/main.py (quoted, not measured) | {quoted:g} | | | |"
            )
        if jax:
            label = f"{row['algorithm']} batch {row['batch']} [{row['hidden']}]"
            update = max(rates[PLAIN_COMPILED]) / jax if PLAIN_COMPILED in rates else None
            fits = [max(v) for m, v in rates.items() if m.startswith("gcrl via Lightning")]
            ratios.append(
                (
                    label,
                    f"{update:.2f}" if update else "n/a",
                    f"{max(fits) / loop:.2f}" if fits and loop else "n/a",
                )
            )
    if ddp:
        print("\n| GCBC via gcrl fit, global batch held equal | steps/s | vs 1 process |")
        print("|---|---:|---:|")
        for size in ddp:
            for devices, rate in size["rates"].items():
                one = size["rates"][1]
                print(
                    f"| batch {size['batch']} [{size['hidden']}], {devices} process(es) | "
                    f"{rate:.1f} | {rate / one:.2f} |"
                )
    if ratios:
        print(
            f"\nratios to OGBench [target >= {TARGET}]: the compiled update alone against "
            "OGBench's jitted update (both on pre-drawn batches), and gcrl fit's whole step "
            "(the best Lightning row; data, hooks and logging included) against OGBench's "
            "sample + update loop (its update alone where the loop was not measured)"
        )
        print(f"{'':<32} {'update':>8} {'gcrl fit':>9}")
        for label, update, fit in ratios:
            print(f"{label:<32} {update:>8} {fit:>9}")
    elif not args.jax_python:
        print("\nno JAX ratio: the JAX rows were not measured in this run (--jax-python)")


if __name__ == "__main__":
    main()
