"""The multi-task layouts' training speed (``benchmarks/train.py --layouts``).

Ten tasks, MT10-sized inputs (39-d states, 4-d actions, a one-hot signal; CARE reads a 384-d
vector per task, the width of all-MiniLM-L6-v2's sentence embeddings), batch 1024 by
default. Each layout's BC and IQL (AWR) module takes plain-loop steps (its losses, backward,
fused Adam, target update) on pre-drawn batches whose task ids are drawn uniformly; the
layouts are timed in interleaved rounds in one process (best of ``--repeats``), and each rate
is divided by the shared MLP's of the same algorithm and widths, measured in the same round.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Iterator
from typing import Any

TASKS, OBS_DIM, ACTION_DIM, TEXT_DIM = 10, 39, 4, 384


def _batches(batch: int, seed: int) -> Iterator[Any]:
    import torch

    from gcrl.training.batch import Batch

    g = torch.Generator().manual_seed(seed)
    drawn = []
    for _ in range(16):
        obs = torch.randn(batch, OBS_DIM, generator=g)
        actions = torch.rand(batch, ACTION_DIM, generator=g) * 2 - 1
        rewards = torch.randn(batch, generator=g)
        ids = torch.randint(0, TASKS, (batch,), generator=g)
        drawn.append(Batch(obs, actions, rewards, torch.ones(batch), obs.flip(0), ids))
    return itertools.cycle(drawn)


def _module(algorithm: str, layout: str, hidden: list[int]) -> Any:
    import torch

    from gcrl.algorithms import BC, IQL
    from gcrl.datasets import Task
    from gcrl.learner import AgentModule
    from gcrl.spec import InputSpec

    tasks = tuple(Task(f"task{t}", f"task number {t}") for t in range(TASKS))
    spec = InputSpec(observation_dim=OBS_DIM, action_dim=ACTION_DIM, discrete=False, tasks=tasks)
    torch.manual_seed(0)
    common: dict[str, Any] = {"spec": spec, "task_signal": "onehot", "layout": layout}
    if layout == "care":  # metadata of the text signal's width, without the language model
        common.update(task_signal="text", text_dim=TEXT_DIM)
    if algorithm == "BC":
        module = BC(hidden_dims=hidden, loss="mse", **common)
    else:
        module = IQL(hidden_dims=hidden, actor_loss="awr", **common)
    if layout == "care":
        with torch.no_grad():
            module.signal.table.copy_(torch.randn(TASKS, TEXT_DIM))
    return AgentModule(module)


def measure_layouts(
    args: argparse.Namespace, timed: Callable[..., float], step: Callable[..., Callable[[], None]]
) -> list[dict[str, Any]]:
    """Steps per second of every (algorithm, widths, layout), best of ``args.repeats``
    interleaved rounds of ``timed`` over ``step(module, batches)`` (train.py's plain loop),
    with each round's ratio to the shared layout."""
    import torch

    from gcrl.models.layouts import LAYOUTS

    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for algorithm, hidden_spec in itertools.product(("BC", "IQL"), args.hidden_dims):
        hidden = [int(h) for h in hidden_spec.split(",")]
        steps = {
            layout: step(_module(algorithm, layout, hidden), _batches(args.batch_size[-1], 0))
            for layout in LAYOUTS
        }
        rates: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
        for _ in range(args.repeats):
            for layout, layout_step in steps.items():
                rates[layout].append(timed(layout_step, args.warmup, args.seconds))
        for layout in LAYOUTS:
            ratios = [r / s for r, s in zip(rates[layout], rates["shared"], strict=True)]
            rows.append(
                {
                    "algorithm": algorithm,
                    "hidden": hidden_spec,
                    "layout": layout,
                    "rate": max(rates[layout]),
                    "ratio": sum(ratios) / len(ratios),
                    "ratio_spread": (min(ratios), max(ratios)),
                }
            )
    return rows


def report_layouts(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    print(
        f"\n### Layouts: {TASKS} tasks, batch {args.batch_size[-1]}, {args.threads} thread(s), "
        f"plain loop on pre-drawn batches, best of {args.repeats} rounds\n"
    )
    print("| algorithm | hidden | layout | steps/s | vs shared (mean of rounds) | range |")
    print("|---|---|---|---:|---:|---|")
    for row in rows:
        low, high = row["ratio_spread"]
        print(
            f"| {row['algorithm']} | {row['hidden']} | {row['layout']} | {row['rate']:.1f} | "
            f"{row['ratio']:.2f} | {low:.2f}-{high:.2f} |"
        )
