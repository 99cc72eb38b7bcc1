"""Multi-task optimiser step time: plain Adam on the summed loss, PCGrad and GradNorm from one
backward pass (gcrl.optim), and the same two computed the usual way (one backward per task).

    .venv/bin/python benchmarks/optim.py                 # 10 and 50 tasks, about a minute
    .venv/bin/python benchmarks/optim.py --tasks 10 --steps 20

The network is a 3 x 256 MLP (GELU) with one output head per task, batch 256 with every sample
belonging to one task. PCGrad projects over the trunk (the heads are task-specific); GradNorm
measures gradient norms at the trunk's last layer. "PCGrad (one pass)" picks per layer between
per-sample kernels and per-task gradients for the tasks' Gram matrix (``strategy="auto"``);
"per-task gradients only" forms every task's gradient (``strategy="per-task"``), for
comparison. The references compute the two the usual way: PCGrad with one backward per task
and the projection loop; GradNorm with one ``create_graph`` backward per task for the norms
and a second backward through them into the task weights (the paper's algorithm). Every method
takes the same Adam step;
times are milliseconds per step (forward, backward, combination, optimiser), best of
--repeats, the methods interleaved. The table ends with the ratios the targets are stated in.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

from gcrl.optim import GradNorm, PCGrad, TaskLosses, random_orders

#: Targets at 10 tasks: step time relative to plain Adam.
TARGETS = {"PCGrad (one pass)": 1.5, "GradNorm (one pass)": 1.3}


class MultiHeadMLP(nn.Module):
    """A shared 3 x ``width`` trunk and a linear head per task."""

    def __init__(self, in_dim: int, width: int, out_dim: int, num_tasks: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(in_dim, width),
            nn.GELU(),
            nn.Linear(width, width),
            nn.GELU(),
            nn.Linear(width, width),
            nn.GELU(),
        )
        self.heads = nn.Linear(width, out_dim * num_tasks)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        out = self.heads(self.trunk(x)).view(len(x), -1, self.out_dim)
        return out[torch.arange(len(x)), task_ids]


def setup(num_tasks: int, batch: int, width: int, seed: int):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = MultiHeadMLP(32, width, 4, num_tasks)
    x, y = torch.randn(batch, 32), torch.randn(batch, 4)
    task_ids = torch.arange(batch) % num_tasks
    return model, x, y, task_ids


def losses_of(
    model: MultiHeadMLP, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    return ((model(x, t) - y) ** 2).sum(-1)


def methods(
    num_tasks: int, batch: int, width: int, compiled: bool = False
) -> dict[str, Callable[[], None]]:
    """One step of each method, each on its own model and Adam; ``compiled``: the forward
    pass and loss of plain Adam and of the one-pass methods through ``torch.compile`` (their
    backward compiled by AOTAutograd, as ``compile_step`` does)."""
    out: dict[str, Callable[[], None]] = {}
    forward = torch.compile(losses_of, dynamic=False) if compiled else losses_of

    model, x, y, t = setup(num_tasks, batch, width, 0)
    adam = torch.optim.Adam(model.parameters(), lr=1e-4)

    def plain() -> None:
        adam.zero_grad()
        # The summed task losses sum_t L_t, as PCGrad and GradNorm see them.
        TaskLosses(forward(model, x, y, t), t, num_tasks).total().backward()
        adam.step()

    out["plain Adam"] = plain

    # The kernels' multiply-adds alone: each wide trunk layer's A A^T and G G^T ([B, B] from
    # [B, width]), on top of a plain step: the least the kernel route can add.
    factors = [torch.randn(batch, width) for _ in range(4)]

    def plain_and_kernels() -> None:
        plain()
        for factor in factors:
            factor @ factor.T

    out["plain Adam + the kernel products alone (floor)"] = plain_and_kernels

    def one_pass(make: Callable[[MultiHeadMLP], PCGrad | GradNorm]) -> Callable[[], None]:
        """A step of ``make(model)`` (PCGrad or GradNorm) on its own model and Adam."""
        model, x, y, t = setup(num_tasks, batch, width, 0)
        adam = torch.optim.Adam(model.parameters(), lr=1e-4)
        combiner = make(model)

        def step() -> None:
            adam.zero_grad()
            with combiner.capture():
                per_sample = forward(model, x, y, t)
            combiner.backward(per_sample, t)
            adam.step()

        return step

    out["PCGrad (one pass)"] = one_pass(lambda m: PCGrad([m.trunk], num_tasks))
    out["PCGrad (one pass, per-task gradients only)"] = one_pass(
        lambda m: PCGrad([m.trunk], num_tasks, strategy="per-task")
    )
    out["GradNorm (one pass)"] = one_pass(lambda m: GradNorm(m.trunk[4], num_tasks))

    model_r, xr, yr, tr = setup(num_tasks, batch, width, 0)
    adam_r = torch.optim.Adam(model_r.parameters(), lr=1e-4)
    shared = list(model_r.trunk.parameters())
    generator = torch.Generator().manual_seed(0)

    def per_task_pcgrad() -> None:
        """The usual way: one backward per task for the shared gradients, then the loop."""
        adam_r.zero_grad()
        per_sample = losses_of(model_r, xr, yr, tr)
        task_losses = [per_sample[tr == k].mean() for k in range(num_tasks)]
        grads = []
        for k, loss in enumerate(task_losses):
            parts = torch.autograd.grad(loss, shared, retain_graph=k < num_tasks - 1 or True)
            grads.append(torch.cat([p.flatten() for p in parts]))
        g = torch.stack(grads)
        orders = random_orders(num_tasks, generator)
        projected = g.clone()
        for i in range(num_tasks):
            for j in orders[i].tolist():
                dot = projected[i] @ g[j]
                if dot < 0:
                    projected[i] -= dot / (g[j] @ g[j]) * g[j]
        torch.stack(task_losses).sum().backward()  # heads: their own tasks' gradients
        combined = projected.sum(0)
        offset = 0
        for p in shared:
            p.grad = combined[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        adam_r.step()

    out["PCGrad (one backward per task)"] = per_task_pcgrad

    model_n, xn, yn, tn = setup(num_tasks, batch, width, 0)
    adam_n = torch.optim.Adam(model_n.parameters(), lr=1e-4)
    last = model_n.trunk[4].weight
    weights = torch.ones(num_tasks, requires_grad=True)
    adam_w = torch.optim.Adam([weights], lr=0.025)
    initial: list[torch.Tensor] = []

    def per_task_gradnorm() -> None:
        """GradNorm as its paper and the usual implementations compute it: each task's
        gradient norm at the last shared layer with ``create_graph=True``, then a second
        backward of ``sum_t |G_t - G r_t^alpha|`` into the task weights (Adam), renormalised."""
        adam_n.zero_grad()
        per_sample = losses_of(model_n, xn, yn, tn)
        task_losses = torch.stack([per_sample[tn == k].mean() for k in range(num_tasks)])
        if not initial:
            initial.append(task_losses.detach())
        norms = torch.stack(
            [
                torch.autograd.grad(
                    weights[k] * task_losses[k], last, retain_graph=True, create_graph=True
                )[0].norm()
                for k in range(num_tasks)
            ]
        )
        ratio = task_losses.detach() / initial[0]
        target = (norms.mean() * (ratio / ratio.mean()) ** 1.5).detach()
        balance = (norms - target).abs().sum()
        adam_w.zero_grad()
        (weights.grad,) = torch.autograd.grad(balance, weights, retain_graph=True)
        (weights.detach() * task_losses).sum().backward()
        adam_n.step()
        adam_w.step()
        with torch.no_grad():
            weights.clamp_(min=1e-3)
            weights.mul_(num_tasks / weights.sum())

    out["GradNorm (one backward per task)"] = per_task_gradnorm
    return out


def time_step(step: Callable[[], None], steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: small nets)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the forward pass of plain Adam and the one-pass methods",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compiled = ", forward passes compiled" if args.compile else ""
    print(
        f"3 x {args.width} MLP, batch {args.batch}, {args.threads} torch thread(s){compiled}; "
        f"ms per step, best of {args.repeats}\n"
    )
    print("| tasks | method | ms/step | vs plain Adam |")
    print("|---:|---|---:|---:|")
    ratios: dict[tuple[int, str], float] = {}
    for num_tasks in args.tasks:
        runs = methods(num_tasks, args.batch, args.width, args.compile)
        best = {name: float("inf") for name in runs}
        for _ in range(args.repeats):
            for name, step in runs.items():
                best[name] = min(best[name], time_step(step, args.steps))
        for name, ms in best.items():
            ratios[num_tasks, name] = ms / best["plain Adam"]
            print(f"| {num_tasks} | {name} | {ms:.2f} | {ratios[num_tasks, name]:.2f} |")
    print("\nratios at 10 tasks (targets in brackets)")
    for name, target in TARGETS.items():
        if (10, name) in ratios:
            print(f"{name:<24} {ratios[10, name]:5.2f}  [<= {target}]")


if __name__ == "__main__":
    main()
