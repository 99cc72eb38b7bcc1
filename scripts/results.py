"""Run the experiments of docs/results.md: train, evaluate, and print the tables.

    bash scripts/results_data.sh                  # the datasets (once)
    python scripts/results.py run pointmaze       # or another group; --seeds 0 1 2
    python scripts/results.py table               # docs/results.md's tables from the summaries
    python scripts/results.py table --check       # exit 1 if the page differs from them

Each run trains in its own directory ``results/runs/<name>-s<seed>/`` (``gcrl fit`` with a
config of ``configs/`` and overrides), then ``gcrl evaluate`` scores it there, and a small
summary (config, overrides, seed, steps, commit, success per task) is written to
``results/summaries/<name>-s<seed>.json``, which is committed. The speed tables and the
side-by-side with OGBench come from the records of ``results/benchmarks/`` and
``results/side/`` instead (``scripts/recorded_tables.py``). Runs whose summary exists are
skipped, so an interrupted sweep resumes. Each process uses one torch thread (two runs can
share this 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from recorded_tables import RECORDED_TABLES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
DATA = RESULTS / "data"
#: One small JSON per run (committed): what ran and what it scored.
SUMMARIES = RESULTS / "summaries"
#: The evaluation episodes' seed of every run.
EVAL_SEED = 100


def _pointmaze_iql(relabel: str) -> tuple[str, list[str], str, int]:
    """IQL on the PointMaze data (256-wide networks, 5k steps) with the given relabeling."""
    overrides = [
        f"--data.path={DATA}/pointmaze-medium.hdf5",
        f"--data.relabel={relabel}",
        "--data.normalize=true",
        "--data.batch_size=256",
        "--data.val_fraction=0",
        "--model.init_args.actor_hidden_dims=[256,256]",
        "--model.init_args.value_hidden_dims=[256,256]",
        # The table's rows were measured with the agent's default alpha, before the config
        # took OGBench's PointMaze value (0.003).
        "--model.init_args.alpha=0.3",
        "--trainer.max_steps=5000",
    ]
    return ("pointmaze-gciql.yaml", overrides, "pointmaze-medium", 10)


def _bundled_bc(data: str) -> tuple[str, list[str], str, int]:
    """The quick start's BC (3000 steps) on the bundled data or one of its HER files."""
    return ("quickstart.yaml", [f"--data.path={data}"], "pointmaze-medium", 10)


def _gciql_budgets() -> tuple[str, list[str], str, int]:
    """GCIQL as configs/pointmaze-gciql.yaml sets it (OGBench's PointMaze α = 0.003) at 2 x 256
    and batch 256 on the bundled data, 40k steps, evaluated at every budget of ``BUDGETS``."""
    overrides = [
        "--data.batch_size=256",
        "--data.val_fraction=0",
        "--model.init_args.actor_hidden_dims=[256,256]",
        "--model.init_args.value_hidden_dims=[256,256]",
        "--trainer.max_steps=40000",
    ]
    return ("pointmaze-gciql.yaml", overrides, "pointmaze-medium", 20)


def _tasks_bc(*sharing: str) -> tuple[str, list[str], str, int]:
    """Multi-task BC (one-hot) on the uneven five-task PointMaze data, 10k steps."""
    overrides = [f"--data.path={DATA}/pointmaze-tasks.hdf5", *sharing]
    return ("pointmaze-tasks-bc.yaml", overrides, "pointmaze-medium-tasks", 20)


def _tasks_iql(*sharing: str) -> tuple[str, list[str], str, int]:
    """Multi-task IQL (one-hot) on the uneven five-task PointMaze data, 10k steps."""
    overrides = [f"--data.path={DATA}/pointmaze-tasks.hdf5", *sharing]
    return ("pointmaze-tasks-iql.yaml", overrides, "pointmaze-medium-tasks", 20)


def _routes_iql(*sharing: str) -> tuple[str, list[str], str, int]:
    """Multi-task IQL (one-hot) on the routes data (the scarce tasks' goals on the rich
    tasks' routes), 30k steps."""
    overrides = [f"--data.path={DATA}/pointmaze-routes.hdf5", "--trainer.max_steps=30000"]
    return ("pointmaze-tasks-iql.yaml", [*overrides, *sharing], "pointmaze-medium-tasks", 20)


def _babyai(config: str, *options: str) -> tuple[str, list[str], str, int]:
    """A BabyAI GoToLocal run on the collected data (5k steps), 20 episodes per mission."""
    overrides = [f"--data.path={DATA}/babyai-gotolocal.hdf5", *options]
    return (config, overrides, "babyai-gotolocal", 20)


#: The multi-task layouts' configs (configs/mt10-<name>.yaml) and their task signals.
MT10_LAYOUTS = {
    "heads": "onehot",
    "independent": "onehot",
    "task-encoders": "onehot",
    "task-encoder": "onehot",
    "care": "text",
    "soft-modular": "onehot",
}


#: The layouts that read the task vector, also run with the other signal.
MT10_OTHER_SIGNAL = {"task-encoder": "text", "care": "onehot", "soft-modular": "text"}


#: The BC layout with the highest mean success over three seeds that shares parameters
#: between tasks (the independent layout ties it but shares none: PCGrad and GradNorm
#: cannot apply to it).
BEST_LAYOUT = "care"


def _mt10_layouts() -> dict[str, tuple[str, list[str], str, int]]:
    """BC (each layout's config) and IQL (configs/mt10-iql.yaml with the layout) on MT10."""
    data = f"--data.path={DATA}/mt10.hdf5"
    runs: dict[str, tuple[str, list[str], str, int]] = {}
    for name in MT10_LAYOUTS:
        runs[f"mt10-bc-{name}"] = (f"mt10-{name}.yaml", [data], "metaworld-mt10", 5)
    for name, signal in MT10_LAYOUTS.items():
        layout = [f"--model.init_args.layout={name.replace('-', '_')}"]
        layout.append(f"--model.init_args.task_signal={signal}")
        runs[f"mt10-iql-{name}"] = ("mt10-iql.yaml", [data, *layout], "metaworld-mt10", 5)
    for name, signal in MT10_OTHER_SIGNAL.items():
        flag = f"--model.init_args.task_signal={signal}"
        runs[f"mt10-bc-{name}-{signal}"] = (f"mt10-{name}.yaml", [data, flag], "metaworld-mt10", 5)
        layout = f"--model.init_args.layout={name.replace('-', '_')}"
        runs[f"mt10-iql-{name}-{signal}"] = (
            "mt10-iql.yaml",
            [data, layout, flag],
            "metaworld-mt10",
            5,
        )
    # PCGrad and GradNorm on the best BC layout that shares parameters.
    for optim in ("pcgrad", "gradnorm"):
        flag = f"--model.init_args.optim={optim}"
        runs[f"mt10-bc-{BEST_LAYOUT}-{optim}"] = (
            f"mt10-{BEST_LAYOUT}.yaml",
            [data, flag],
            "metaworld-mt10",
            5,
        )
    runs["mt10-distral"] = ("mt10-distral.yaml", [data], "metaworld-mt10", 5)
    # The same run's distilled policy (the same seed trains the same model).
    runs["mt10-distral-prior"] = ("mt10-distral.yaml", [data], "metaworld-mt10 --policy prior", 5)
    return runs


def _mt10_zero_shot() -> dict[str, tuple[str, list[str], str, int]]:
    """BC trained on MT10 without window-close, evaluated on window-close alone (20 episodes)."""
    data = f"--data.path={DATA}/mt10-no-window-close.hdf5"
    suite = "metaworld-mt10 --tasks window-close-v3"
    return {
        "mt10zs-bc-care-text": ("mt10-care.yaml", [data], suite, 20),
        "mt10zs-bc-text": ("mt10-bc.yaml", [data, "--model.init_args.task_signal=text"], suite, 20),
        "mt10zs-bc-none": ("mt10-bc.yaml", [data, "--model.init_args.task_signal=none"], suite, 20),
    }


# name -> (config, overrides, evaluation suite (and gcrl evaluate options), evaluation
# episodes per task)
EXPERIMENTS: dict[str, dict[str, tuple[str, list[str], str, int]]] = {
    "pointmaze": {
        "pm-bc": (
            "quickstart.yaml",
            [f"--data.path={DATA}/pointmaze-medium.hdf5", "--trainer.max_steps=5000"],
            "pointmaze-medium",
            10,
        ),
        "pm-bc-her": (
            "quickstart.yaml",
            [f"--data.path={DATA}/pointmaze-medium-her.hdf5", "--trainer.max_steps=5000"],
            "pointmaze-medium",
            10,
        ),
        "pm-gcbc-ogbench": (
            "quickstart.yaml",
            [
                f"--data.path={DATA}/pointmaze-medium.hdf5",
                "--data.relabel=ogbench",
                "--data.goal_key=achieved_goal",
                "--trainer.max_steps=5000",
            ],
            "pointmaze-medium",
            10,
        ),
        "pm-iql": _pointmaze_iql(relabel="none"),
        "pm-iql-her": _pointmaze_iql(relabel="ogbench"),
        "pm-td3bc": (
            "pointmaze-td3bc.yaml",
            [
                f"--data.path={DATA}/pointmaze-medium.hdf5",
                "--data.val_fraction=0",
                "--trainer.max_steps=5000",
            ],
            "pointmaze-medium",
            10,
        ),
    },
    "tasks": {
        "pmt-iql-none": _tasks_iql(),
        "pmt-iql-random": _tasks_iql("--data.task_sharing=random"),
        "pmt-iql-zero": _tasks_iql("--data.task_sharing=zero-reward"),
        "pmt-iql-conservative": _tasks_iql("--data.task_sharing=conservative"),
        "pmt-iql-hr-topk": _tasks_iql("--data.task_sharing=high-reward", "--data.sharing_top_k=2"),
        "pmt-iql-hr-percentile": _tasks_iql(
            "--data.task_sharing=high-reward", "--data.sharing_percentile=90"
        ),
        "pmt-iql-hr-hipi": _tasks_iql(
            "--data.task_sharing=high-reward", "--data.sharing_temperature=10"
        ),
    },
    "routes": {
        "pmr-iql-none": _routes_iql(),
        "pmr-iql-hr-percentile": _routes_iql(
            "--data.task_sharing=high-reward", "--data.sharing_percentile=90"
        ),
        "pmr-iql-zero": _routes_iql("--data.task_sharing=zero-reward"),
        "pmr-iql-random": _routes_iql("--data.task_sharing=random"),
        "pmr-iql-conservative": _routes_iql("--data.task_sharing=conservative"),
    },
    "gciql-budgets": {"pm-gciql-40k": _gciql_budgets()},
    "her-bc": {
        "her-bc-stored": _bundled_bc("bundled:pointmaze-medium-navigate"),
        "her-bc-future": _bundled_bc(f"{DATA}/bundled-her-future.hdf5"),
        "her-bc-geometric": _bundled_bc(f"{DATA}/bundled-her-geometric.hdf5"),
        "her-bc-within-pursuit": _bundled_bc(f"{DATA}/bundled-her-within-pursuit.hdf5"),
    },
    "tasks-bc": {
        "pmt-bc-none": _tasks_bc(),
        "pmt-bc-random": _tasks_bc("--data.task_sharing=random"),
        "pmt-bc-hr-percentile": _tasks_bc(
            "--data.task_sharing=high-reward",
            "--data.sharing_percentile=90",
            "--data.task_relabel_ratio=1",
        ),
    },
    "instructions": {
        "bai-bc": _babyai("babyai-bc.yaml"),
        "bai-bc-hindsight": _babyai("babyai-bc.yaml", "--data.instruction_relabel_ratio=0.5"),
        "bai-dqn": _babyai("babyai-dqn.yaml"),
        "bai-dqn-hindsight": _babyai("babyai-dqn.yaml", "--data.instruction_relabel_ratio=0.5"),
    },
    "mt10": {
        "mt10-bc-onehot": ("mt10-bc.yaml", [f"--data.path={DATA}/mt10.hdf5"], "metaworld-mt10", 5),
        "mt10-bc-embedding": (
            "mt10-bc.yaml",
            [f"--data.path={DATA}/mt10.hdf5", "--model.init_args.task_signal=embedding"],
            "metaworld-mt10",
            5,
        ),
        "mt10-bc-text": (
            "mt10-bc.yaml",
            [f"--data.path={DATA}/mt10.hdf5", "--model.init_args.task_signal=text"],
            "metaworld-mt10",
            5,
        ),
        "mt10-bc-pcgrad": (
            "mt10-bc.yaml",
            [f"--data.path={DATA}/mt10.hdf5", "--model.init_args.optim=pcgrad"],
            "metaworld-mt10",
            5,
        ),
        "mt10-bc-gradnorm": (
            "mt10-bc.yaml",
            [f"--data.path={DATA}/mt10.hdf5", "--model.init_args.optim=gradnorm"],
            "metaworld-mt10",
            5,
        ),
        "mt10-iql-onehot": (
            "mt10-iql.yaml",
            [f"--data.path={DATA}/mt10.hdf5"],
            "metaworld-mt10",
            5,
        ),
        "mt10-iql-embedding": (
            "mt10-iql.yaml",
            [f"--data.path={DATA}/mt10.hdf5", "--model.init_args.task_signal=embedding"],
            "metaworld-mt10",
            5,
        ),
        "mt10-iql-text": (
            "mt10-iql.yaml",
            [f"--data.path={DATA}/mt10.hdf5", "--model.init_args.task_signal=text"],
            "metaworld-mt10",
            5,
        ),
    },
    "mt10-layouts": _mt10_layouts(),
    "mt10-zero-shot": _mt10_zero_shot(),
    "babyai": {
        "bai-bc": _babyai("babyai-bc.yaml"),
        "bai-bc-none": _babyai(
            "babyai-bc.yaml",
            "--model.init_args.task_signal=none",
            "--model.init_args.conditioning=concat",
        ),
        "bai-dqn": _babyai("babyai-dqn.yaml"),
    },
}


#: Runs evaluated at several training budgets (steps), the last being ``trainer.max_steps``:
#: a checkpoint is kept at each and scored like the final one.
BUDGETS: dict[str, tuple[int, ...]] = {
    "pm-gciql-40k": (10_000, 20_000, 30_000, 40_000),
    **{name: (10_000, 20_000, 30_000) for name in EXPERIMENTS["routes"]},
}
#: Runs whose summary also records V(s, task) at each task's evaluation start and goal
#: (``scripts/sharing_diagnosis.py values``) of the final checkpoint.
VALUES_RECORDED = frozenset(EXPERIMENTS["routes"])


def _budget_checkpoints(every: int) -> list[str]:
    """``gcrl fit`` options that keep a checkpoint every ``every`` steps (named by step)."""
    return [
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.every_n_train_steps={every}",
        "--trainer.callbacks.save_top_k=-1",
        "--trainer.callbacks.filename=budget-{step}",
    ]


def _gcrl(args: list[str], cwd: Path, log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).parent / "gcrl"), *args]
    with open(log, "a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def _commit() -> str:
    """The commit the runs are made at (``+dirty`` with uncommitted changes)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "gcrl"], cwd=ROOT).returncode
    return head + ("+dirty" if dirty else "")


def _option(config: Path, overrides: list[str], dotted: str) -> object:
    """A config value as the run used it: the last ``--dotted=value`` override, else the
    YAML's (``trainer.max_steps``), else None."""
    for flag in reversed(overrides):
        if flag.startswith(f"--{dotted}="):
            return yaml.safe_load(flag.split("=", 1)[1])
    node: object = yaml.safe_load(config.read_text())
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def summarise(
    name: str, seed: int, config: str, overrides: list[str], suite: str, episodes: int,
    report: dict, commit: str,
) -> dict:  # fmt: skip
    """The small record of one run committed under results/summaries/: what ran (config,
    overrides, seed, training steps, the commit it trained at) and what it scored (success
    rates, 0 to 1)."""
    path = ROOT / "configs" / config
    return {
        "name": name,
        "seed": seed,
        "config": f"configs/{config}",
        "overrides": [o.replace(str(ROOT) + "/", "") for o in overrides],
        "max_steps": _option(path, overrides, "trainer.max_steps"),
        "batch_size": _option(path, overrides, "data.batch_size"),
        "env": suite,
        "episodes_per_task": episodes,
        "eval_seed": EVAL_SEED,
        "commit": commit,
        **_scores(report),
    }


def _scores(report: dict) -> dict:
    """``summary`` (mean, median, worst and, where known, seen and unseen success) and
    ``tasks`` (success per task) of an evaluation report, rates from 0 to 1."""
    return {
        "summary": report["summary"],
        "tasks": {t["name"]: t["success_rate"] for t in report["tasks"]},
    }


def _evaluate(checkpoint: Path, suite: str, episodes: int, work: Path, log: Path, tag: str) -> dict:
    """``gcrl evaluate``'s report (the JSON it writes) of ``checkpoint`` on ``suite``."""
    result = work / f"evaluation{tag}.json"
    evaluate = ["evaluate", str(checkpoint), "--env", *suite.split()]
    evaluate += ["--episodes", str(episodes), "--seed", str(EVAL_SEED)]
    _gcrl([*evaluate, "--json", str(result)], work, log)
    report: dict = json.loads(result.read_text())
    return report


def _values_at_tasks(checkpoint: Path) -> dict[str, dict[str, float]]:
    """``{task: {"v_start": ..., "v_goal": ..., "cells_to_goal": ...}}`` of an IQL-family
    checkpoint (:func:`sharing_diagnosis.values`)."""
    from sharing_diagnosis import parse, values

    rows = values(parse(["values", str(checkpoint)]))
    return {
        row["task"]: {k: row[k] for k in ("cells_to_goal", "v_start", "v_goal")} for row in rows
    }


def run(group: str, seeds: list[int], only: list[str] | None) -> None:
    SUMMARIES.mkdir(parents=True, exist_ok=True)
    for name, (config, overrides, suite, episodes) in EXPERIMENTS[group].items():
        if only and name not in only:
            continue
        budgets = BUDGETS.get(name, ())
        for seed in seeds:
            summary = SUMMARIES / f"{name}-s{seed}.json"
            if summary.exists():
                continue
            work = RESULTS / "runs" / f"{name}-s{seed}"
            work.mkdir(parents=True, exist_ok=True)
            log = work / "log.txt"
            commit = _commit()  # when training starts: what the run's code is
            fit = ["fit", "--config", str(ROOT / "configs" / config), *overrides]
            fit += [f"--seed_everything={seed}", f"--data.seed={seed}"]
            if budgets:
                fit += _budget_checkpoints(budgets[0])
            _gcrl([*fit, "--trainer.enable_progress_bar=false"], work, log)
            checkpoints = sorted(
                (work / "runs" / "csv").glob("version_*/checkpoints/*.ckpt"),
                key=lambda p: p.stat().st_mtime,
            )
            scored = {}
            for steps in budgets:
                found = [p for p in checkpoints if p.stem.endswith(f"-step={steps}")]
                if not found:
                    raise SystemExit(f"{work}: no checkpoint at {steps} steps")
                scored[steps] = _evaluate(found[-1], suite, episodes, work, log, f"-{steps}")
            # The final budget is max_steps: its report is the run's.
            if budgets:
                report = scored[budgets[-1]]
            else:
                report = _evaluate(checkpoints[-1], suite, episodes, work, log, "")
            record = summarise(name, seed, config, overrides, suite, episodes, report, commit)
            if budgets:
                record["budgets"] = {str(steps): _scores(r) for steps, r in scored.items()}
            if name in VALUES_RECORDED:
                record["values"] = _values_at_tasks(checkpoints[-1])
            tmp = summary.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1) + "\n")
            tmp.replace(summary)
            print(f"{name} seed {seed}: {report['summary']}", flush=True)


@dataclass(frozen=True)
class Table:
    """A table of docs/results.md written from the summaries: the header of the row labels,
    each row's labels and run name (its summaries: ``<run>-s<seed>.json``), and which
    figures follow the labels: the seed count, the mean, median and worst task over tasks,
    further means of the summaries (``summary_columns``: header and key, such as seen and
    unseen tasks), then the tasks' own rates, either as one column each
    (``task_columns``: their headers) or in one column joined by " / " (``tasks_joined``:
    its header); the task order is the summaries'. With ``budgets`` (steps, of the runs'
    ``BUDGETS``), the mean is given at each budget and the rest at the last. Without
    ``over_tasks`` (runs evaluated on one task) the mean, median and worst task are left out."""

    header: tuple[str, ...]
    rows: list[tuple[tuple[str, ...], str]]
    task_columns: tuple[str, ...] = ()
    tasks_joined: str = ""
    summary_columns: tuple[tuple[str, str], ...] = ()
    budgets: tuple[int, ...] = ()
    over_tasks: bool = True


#: Meta-World MT10's tasks in the order of the summaries, for the joined per-task column.
MT10_PER_TASK = (
    "per task (reach, push, pick-place, door-open, drawer-open, drawer-close, "
    "button-press-topdown, peg-insert-side, window-open, window-close)"
)
POINTMAZE_PER_TASK = "per task (task1 ... task5)"
#: The means over BabyAI's missions the data holds and the ones it held out.
BABYAI_SEEN = (("seen (34)", "success_seen"), ("held out (2)", "success_unseen"))


def _mt10_layout_rows(algorithm: str) -> list[tuple[tuple[str, ...], str]]:
    """Rows of ``algorithm`` ("bc" or "iql") on MT10: the shared MLP, then each layout with
    its signal and, for the layouts that read the task vector, the other signal."""
    title = algorithm.upper()
    rows = [((title, "shared (one MLP)", "one-hot"), f"mt10-{algorithm}-onehot")]
    for name, signal in MT10_LAYOUTS.items():
        signals = [("", signal)]
        if name in MT10_OTHER_SIGNAL:
            signals.append((f"-{MT10_OTHER_SIGNAL[name]}", MT10_OTHER_SIGNAL[name]))
        for suffix, used in signals:
            label = "one-hot" if used == "onehot" else used
            rows.append(
                ((title, name.replace("-", "_"), label), f"mt10-{algorithm}-{name}{suffix}")
            )
    return rows


def _mt10_architecture_rows() -> list[tuple[tuple[str, ...], str]]:
    """The MT10 architectures table's BC rows: each layout, then the optimisers on CARE and
    Distral's two policies."""
    rows = _mt10_layout_rows("bc")
    for optim, title in (("pcgrad", "PCGrad"), ("gradnorm", "GradNorm")):
        layout = BEST_LAYOUT.replace("-", "_")
        rows.append(((f"BC + {title}", layout, "text"), f"mt10-bc-{BEST_LAYOUT}-{optim}"))
    rows.append((("Distral (task policies)", "independent", "one-hot"), "mt10-distral"))
    rows.append((("Distral (distilled π0)", "shared, no signal", "none"), "mt10-distral-prior"))
    return rows


#: The routes experiment's rows: IQL under each sharing mode.
ROUTES_ROWS = [
    (("IQL", "none"), "pmr-iql-none"),
    (("IQL", "high-reward (percentile 90)"), "pmr-iql-hr-percentile"),
    (("IQL", "zero-reward"), "pmr-iql-zero"),
    (("IQL", "random"), "pmr-iql-random"),
    (("IQL", "conservative (median)"), "pmr-iql-conservative"),
]

#: The tables of docs/results.md written from the summaries, by marker name.
TABLES: dict[str, Table] = {
    "pointmaze": Table(
        ("method", "goals the policy learns from"),
        [
            (("BC", "the expert's own goals (stored `desired_goal`)"), "pm-bc"),
            (("BC + HER (offline, k = 4)", "stored goals and 4 hindsight goals each"), "pm-bc-her"),
            (
                ("GCBC, OGBench style", "hindsight goals on the fly (`relabel: ogbench`)"),
                "pm-gcbc-ogbench",
            ),
            (("IQL (DDPG+BC, expectile 0.9, α = 0.3)", "stored goals and rewards (0/1)"), "pm-iql"),
            (
                ("GCIQL, OGBench style (α = 0.3)", "hindsight goals on the fly, -1/0 rewards"),
                "pm-iql-her",
            ),
            (
                (
                    "TD3+BC (α = 2.5, actor every 2nd step)",
                    "hindsight goals on the fly, -1/0 rewards",
                ),
                "pm-td3bc",
            ),
        ],
        tasks_joined=POINTMAZE_PER_TASK,
    ),
    "her-bc": Table(
        ("BC trained on",),
        [
            (("stored goals only",), "her-bc-stored"),
            (("+ HER `future` over whole episodes",), "her-bc-future"),
            (("+ HER `geometric` γ = 0.9",), "her-bc-geometric"),
            (
                ("+ HER `future` within each pursuit (`--within-goal-segments`)",),
                "her-bc-within-pursuit",
            ),
        ],
        tasks_joined=POINTMAZE_PER_TASK,
    ),
    "tasks": Table(
        ("method", "sharing"),
        [
            (("IQL", "none"), "pmt-iql-none"),
            (("IQL", "random"), "pmt-iql-random"),
            (("IQL", "high-reward (percentile 90)"), "pmt-iql-hr-percentile"),
            (("IQL", "zero-reward"), "pmt-iql-zero"),
            (("IQL", "conservative (median)"), "pmt-iql-conservative"),
            (("IQL", "high-reward (top-k 2)"), "pmt-iql-hr-topk"),
            (("IQL", "high-reward (HIPI, T = 10)"), "pmt-iql-hr-hipi"),
            (("BC", "none"), "pmt-bc-none"),
            (("BC", "random"), "pmt-bc-random"),
            (("BC", "high-reward (percentile 90, ratio 1)"), "pmt-bc-hr-percentile"),
        ],
        task_columns=("task1", "task2", "task3 (20 ep.)", "task4 (20 ep.)", "task5 (5 ep.)"),
    ),
    "routes": Table(
        ("method", "sharing"),
        ROUTES_ROWS,
        task_columns=("task1", "task2", "task3 (5 ep.)", "task4 (5 ep.)", "task5 (5 ep.)"),
        budgets=(10_000, 20_000, 30_000),
    ),
    "mt10-signals": Table(
        ("method", "task signal", "optimiser"),
        [
            (("BC", "one-hot", "Adam"), "mt10-bc-onehot"),
            (("BC", "learned embedding", "Adam"), "mt10-bc-embedding"),
            (("BC", "text (all-MiniLM-L6-v2)", "Adam"), "mt10-bc-text"),
            (("BC", "one-hot", "PCGrad"), "mt10-bc-pcgrad"),
            (("BC", "one-hot", "GradNorm"), "mt10-bc-gradnorm"),
            (("IQL (AWR, expectile 0.7)", "one-hot", "Adam"), "mt10-iql-onehot"),
            (("IQL (AWR, expectile 0.7)", "learned embedding", "Adam"), "mt10-iql-embedding"),
            (("IQL (AWR, expectile 0.7)", "text (all-MiniLM-L6-v2)", "Adam"), "mt10-iql-text"),
        ],
        tasks_joined=MT10_PER_TASK,
    ),
    "mt10-architectures": Table(
        ("algorithm", "layout", "signal"), _mt10_architecture_rows(), tasks_joined=MT10_PER_TASK
    ),
    "pointmaze-gciql-budgets": Table(
        ("method", "networks, batch"),
        [(("GCIQL, OGBench style (α = 0.003)", "2 x 256, 256"), "pm-gciql-40k")],
        tasks_joined=POINTMAZE_PER_TASK + ", 40k steps",
        budgets=BUDGETS["pm-gciql-40k"],
    ),
    "babyai": Table(
        ("method", "task signal"),
        [
            (("BC", "text"), "bai-bc"),
            (("BC", "none (baseline)"), "bai-bc-none"),
            (("double DQN + CQL", "text"), "bai-dqn"),
        ],
        summary_columns=BABYAI_SEEN,
    ),
    "instructions": Table(
        ("method", "hindsight instructions"),
        [
            (("BC, text", "no"), "bai-bc"),
            (("BC, text", "yes"), "bai-bc-hindsight"),
            (("double DQN + CQL, text", "no"), "bai-dqn"),
            (("double DQN + CQL, text", "yes"), "bai-dqn-hindsight"),
        ],
        summary_columns=BABYAI_SEEN,
    ),
    "mt10-zero-shot": Table(
        ("method", "signal"),
        [
            (("CARE", "text (its own description's embedding)"), "mt10zs-bc-care-text"),
            (("shared MLP", "text"), "mt10zs-bc-text"),
            (("shared MLP", "none"), "mt10zs-bc-none"),
        ],
        task_columns=("window-close success",),
        over_tasks=False,
    ),
    "mt10-iql-layouts": Table(
        ("algorithm", "layout", "signal"),
        _mt10_layout_rows("iql"),
        tasks_joined=MT10_PER_TASK,
    ),
}
PAGE = ROOT / "docs" / "results.md"

#: MT10's sizes (Meta-World v3: 39-d states, 4-d actions, ten tasks with instructions) and the
#: text signal's width (all-MiniLM-L6-v2), for counting parameters without the data.
MT10_SIZES = {"observation_dim": 39, "action_dim": 4, "tasks": 10, "text_dim": 384}


def mt10_iql_parameters() -> str:
    """The markdown of the trainable parameters of configs/mt10-iql.yaml's networks in each
    layout of the layouts table, counted on the agents built (not read from a config):
    the actor, the twin critics, the value network, and all trainable ones."""
    import torch

    from gcrl.algorithms import IQL
    from gcrl.datasets import Task
    from gcrl.models.factory import parameter_count
    from gcrl.spec import InputSpec

    config = yaml.safe_load((ROOT / "configs" / "mt10-iql.yaml").read_text())
    options = dict(config["model"]["init_args"])
    tasks = tuple(Task(f"task{t}", f"task number {t}") for t in range(MT10_SIZES["tasks"]))
    spec = InputSpec(
        observation_dim=MT10_SIZES["observation_dim"],
        action_dim=MT10_SIZES["action_dim"],
        discrete=False,
        tasks=tasks,
    )
    lines = [
        "| layout | signal | actor | critics (2) | value | trainable, all |",
        "|---|---|---:|---:|---:|---:|",
    ]
    seen = set()
    for (_, layout, signal), _run in TABLES["mt10-iql-layouts"].rows:
        kind = layout.split()[0]
        if (kind, signal) in seen:
            continue
        seen.add((kind, signal))
        torch.manual_seed(0)
        built = {**options, "layout": kind, "task_signal": "text" if signal == "text" else "onehot"}
        if signal == "text":
            built["text_dim"] = MT10_SIZES["text_dim"]
        agent = IQL(spec=spec, **built)
        counts = [parameter_count(m) for m in (agent.actor, agent.critic, agent.value, agent)]
        lines.append(f"| {kind} | {signal} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    return "\n".join(lines)


def _run_summaries(summaries: Path, run_name: str) -> list[dict]:
    """The summaries of ``run_name`` (``<run>-s<seed>.json``), in seed-name order."""
    return [json.loads(p.read_text()) for p in sorted(summaries.glob(f"{run_name}-s*.json"))]


def _value_cell(records: list[dict], task: str, where: str) -> str:
    """A recorded value's mean over the records (± the standard deviation over several)."""
    v = [r["values"][task][where] for r in records]
    return f"{np.mean(v):.0f}" + (f" ± {np.std(v):.0f}" if len(v) > 1 else "")


def routes_values(summaries: Path = SUMMARIES) -> str:
    """The routes runs' V(s, task) at each task's evaluation start (and the scarce tasks' at
    their goals), mean ± standard deviation over seeds, from the summaries' ``values``."""
    tasks = ("task1", "task2", "task3", "task4", "task5")
    header = ["method", "sharing", "seeds", *(f"V start {t}" for t in tasks)]
    header += [f"V goal {t}" for t in tasks[2:]]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for labels, run_name in ROUTES_ROWS:
        records = _run_summaries(summaries, run_name)
        if not records:
            continue
        if any("values" not in r for r in records):
            raise SystemExit(f"table routes-values: a summary of {run_name} has no values")
        cells = [_value_cell(records, t, "v_start") for t in tasks]
        cells += [_value_cell(records, t, "v_goal") for t in tasks[2:]]
        lines.append("| " + " | ".join([*labels, str(len(records)), *cells]) + " |")
    return "\n".join(lines)


#: Tables built from what the code constructs, or from benchmark and side-by-side records,
#: rather than from summaries, by marker name.
BUILT_TABLES = {
    "mt10-iql-parameters": mt10_iql_parameters,
    "routes-values": routes_values,
    **RECORDED_TABLES,
}


def _cell(values: list[float]) -> str:
    """Percent: the mean, with the population standard deviation over several seeds."""
    if len(values) == 1:
        return f"{100 * values[0]:.0f}"
    return f"{100 * np.mean(values):.0f} ± {100 * np.std(values):.0f}"


def render(name: str, summaries: Path) -> str:
    """The markdown of table ``name`` from the summaries in ``summaries``: one row per run
    with any, then the runs without one."""
    spec = TABLES[name]
    at = [f", {b // 1000}k steps" for b in spec.budgets]
    final = [f"{column}{at[-1] if at else ''}" for column in ("median", "worst task")]
    extra = [column for column, _ in spec.summary_columns]
    over = [*(f"mean{a}" for a in at or [""]), *final] if spec.over_tasks else []
    figures = ["seeds", *over, *extra, *spec.task_columns]
    header = [*spec.header, *figures, *([spec.tasks_joined] if spec.tasks_joined else [])]
    lines = [
        "| " + " | ".join([*header, "commit"]) + " |",
        "|"
        + "---|" * len(spec.header)
        + "---:|" * len(figures)
        + ("---|" if spec.tasks_joined else "")
        + "---|",
    ]
    missing = []
    for labels, run_name in spec.rows:
        records = _run_summaries(summaries, run_name)
        if not records:
            missing.append(run_name)
            continue
        cells = [str(len(records))]
        for steps in spec.budgets:
            if any(str(steps) not in r.get("budgets", {}) for r in records):
                raise SystemExit(
                    f"table {name}: a summary of {run_name} has no {steps}-step budget"
                )
            means = [r["budgets"][str(steps)]["summary"]["success_mean"] for r in records]
            cells.append(_cell(means))
        keys = [] if spec.budgets else ["success_mean"]  # else given at each budget
        keys = [*keys, "success_median", "success_worst"] if spec.over_tasks else []
        keys += [key for _, key in spec.summary_columns]
        for key in keys:
            if any(key not in r["summary"] for r in records):
                raise SystemExit(f"table {name}: a summary of {run_name} has no {key}")
            cells.append(_cell([r["summary"][key] for r in records]))
        tasks = list(records[0].get("tasks", {}))
        if any(list(r.get("tasks", {})) != tasks for r in records):
            raise SystemExit(f"table {name}: the summaries of {run_name} name different tasks")
        if spec.task_columns:
            if len(tasks) != len(spec.task_columns):
                raise SystemExit(
                    f"table {name}: {run_name} has {len(tasks)} tasks, the table "
                    f"{len(spec.task_columns)} task columns"
                )
            cells += [_cell([r["tasks"][t] for r in records]) for t in tasks]
        if spec.tasks_joined:
            task_means = [100 * np.mean([r["tasks"][t] for r in records]) for t in tasks]
            cells.append(" / ".join(f"{m:.0f}" for m in task_means))
        commits = ", ".join(sorted({r["commit"] for r in records}))
        lines.append("| " + " | ".join((*labels, *cells, commits)) + " |")
    if missing:
        lines += ["", "Not yet run at this release: " + ", ".join(f"`{m}`" for m in missing) + "."]
    return "\n".join(lines)


def table(page: Path, summaries: Path, check: bool) -> int:
    """Write every table of ``page`` between its markers (``<!-- table:NAME -->`` and
    ``<!-- /table:NAME -->``) from the summaries; with ``check``, only compare, and return 1
    (naming the tables) when the page differs."""
    text = page.read_text()
    stale = []
    for name in [*TABLES, *BUILT_TABLES]:
        start, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
        if start not in text or end not in text:
            print(f"{page}: no markers {start} ... {end}", file=sys.stderr)
            return 2
        before, rest = text.split(start, 1)
        current, after = rest.split(end, 1)
        made = BUILT_TABLES[name]() if name in BUILT_TABLES else render(name, summaries)
        fresh = "\n" + made + "\n"
        if current != fresh:
            stale.append(name)
        text = before + start + fresh + end + after
    if check:
        if stale:
            print(f"{page}: tables differ from {summaries}: {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    tmp = page.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(page)
    print(
        f"wrote {len(TABLES) + len(BUILT_TABLES)} table(s) into {page}"
        + (f" ({', '.join(stale)} changed)" if stale else "")
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument("group", choices=sorted(EXPERIMENTS))
    go.add_argument("--seeds", type=int, nargs="+", default=[0])
    go.add_argument("--only", nargs="+", help="experiment names")
    tables = sub.add_parser("table", help="write the tables of docs/results.md")
    tables.add_argument("--check", action="store_true", help="exit 1 if the page differs")
    tables.add_argument("--page", type=Path, default=PAGE)
    tables.add_argument("--summaries", type=Path, default=SUMMARIES)
    options = parser.parse_args()
    if options.command == "run":
        run(options.group, options.seeds, options.only)
    else:
        sys.exit(table(options.page, options.summaries, options.check))


if __name__ == "__main__":
    main()
