"""PCGrad (gradient surgery), with every task's gradient from one backward pass.

Each task's gradient over the shared parameters is projected off the other tasks' gradients
where they conflict (negative inner product), visiting the others in a random order of its own
(Yu et al., 2020); the projected gradients are summed (or averaged). Task-specific parameters
keep their own task's gradient. The projections run on the tasks' Gram matrix: each projected
gradient is kept as coefficients over the original ones, so a step costs ``T`` vectorised
updates of a ``[T, T]`` matrix, not a double loop over gradient vectors.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.optim.task_gradients import TaskGradients, TaskLosses

REDUCTIONS = ("sum", "mean")


def project_conflicts(gram: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """PCGrad's projections as coefficients: ``g'_i = sum_k C[i, k] g_k``; returns C ``[T, T]``.

    ``gram[i, j] = g_i . g_j``; ``orders[i]`` is the order in which task i visits the tasks
    (a permutation of all T, itself included, as the original code does). Visiting j, task i
    subtracts ``(g'_i . g_j) / |g_j|^2 g_j`` when ``g'_i . g_j < 0``; zero gradients are
    skipped.
    """
    num_tasks = gram.shape[0]
    coefficients = torch.eye(num_tasks, dtype=gram.dtype, device=gram.device)
    rows = torch.arange(num_tasks, device=gram.device)
    norms = torch.diagonal(gram)
    for step in range(orders.shape[1]):
        j = orders[:, step]
        dots = (coefficients * gram[:, j].T).sum(1)  # g'_i . g_j for every i at once
        norm = norms[j]
        conflict = (dots < 0) & (norm > 0)
        scale = torch.where(conflict, dots / torch.where(norm > 0, norm, 1), 0)
        coefficients[rows, j] -= scale
    return coefficients


def random_orders(num_tasks: int, generator: torch.Generator) -> torch.Tensor:
    """An independent random permutation of the T tasks for each task: ``[T, T]``."""
    keys = torch.rand(num_tasks, num_tasks, generator=generator)
    return torch.argsort(keys, dim=1)


class PCGrad:
    """PCGrad over ``shared`` parameters, usable in any PyTorch loop (and under Lightning).

    ``shared``: the modules whose parameters all tasks share (their Linear and LayerNorm layers
    are handled in the single pass, anything else by one backward per task).
    ``task_specific``: parameters each task updates alone (for example per-task heads); they
    keep the plain gradient, which for them is their own task's. ``reduction``: ``sum`` (the
    paper's) or ``mean`` of the projected gradients. ``seed`` fixes the visiting orders.

    Usage::

        pcgrad = PCGrad([model.trunk], num_tasks=10)
        with pcgrad.capture():
            losses = per_sample_loss(model(x), y)          # [B]
        pcgrad.backward(losses, task_ids)                  # sets .grad
        optimizer.step()
    """

    def __init__(
        self,
        shared: Iterable[nn.Module],
        num_tasks: int,
        *,
        reduction: str = "sum",
        seed: int = 0,
    ) -> None:
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction: unknown {reduction!r}; choose one of {REDUCTIONS}")
        modules = list(shared)
        params = _unique(p for m in modules for p in m.parameters() if p.requires_grad)
        self.num_tasks = num_tasks
        self.reduction = reduction
        self.gradients = TaskGradients(modules, params)
        self.generator = torch.Generator().manual_seed(seed)

    def capture(self):  # type: ignore[no-untyped-def]
        """Context manager to wrap the forward pass in."""
        return self.gradients.capture()

    def backward(
        self,
        losses: torch.Tensor,
        task_ids: torch.Tensor,
        orders: torch.Tensor | None = None,
    ) -> TaskLosses:
        """Backpropagate the per-sample ``losses`` and set the shared parameters' ``.grad``
        to the PCGrad combination of the task gradients (``orders``: fixed visiting orders,
        for tests). Returns the per-task losses. Gradients accumulate into ``.grad`` as
        ``backward`` does; zero them between steps."""
        task_losses = TaskLosses(losses, task_ids, self.num_tasks)
        params = self.gradients.parameters
        before = [None if p.grad is None else p.grad.clone() for p in params]
        per_task = self.gradients.backward(task_losses)
        flat = torch.cat([per_task[p].reshape(self.num_tasks, -1) for p in params], dim=1)
        gram = flat @ flat.T
        if orders is None:
            orders = random_orders(self.num_tasks, self.generator).to(flat.device)
        coefficients = project_conflicts(gram, orders)
        weights = coefficients.sum(0)
        if self.reduction == "mean":
            weights = weights / max(1, int(task_losses.present.sum()))
        combined = weights @ flat
        offset = 0
        for param, previous in zip(params, before, strict=True):
            size = param.numel()
            value = combined[offset : offset + size].view_as(param).to(param.dtype)
            param.grad = value if previous is None else previous + value
            offset += size
        return task_losses


def _unique(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out
