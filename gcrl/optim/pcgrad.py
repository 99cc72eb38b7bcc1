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
from typing import Any

import numpy as np
import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.optim.task_gradients import GramStrategy, TaskGradients, TaskLosses

REDUCTIONS = ("sum", "mean")


#: Up to this many tasks the projections run as Python float loops, beyond it as numpy
#: vector steps: at 10 tasks the loops took 0.04-0.09 ms against 0.17 for numpy (whose
#: per-call overhead dominates on [T] vectors), at 24 tasks 1.0 against 0.48.
PYTHON_LOOP_TASKS = 16


def project_conflicts(gram: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """PCGrad's projections as coefficients: ``g'_i = sum_k C[i, k] g_k``; returns C ``[T, T]``.

    ``gram[i, j] = g_i . g_j``; ``orders[i]`` is the order in which task i visits the tasks
    (a permutation of all T, itself included, as the original code does). Visiting j, task i
    subtracts ``(g'_i . g_j) / |g_j|^2 g_j`` when ``g'_i . g_j < 0``; zero gradients are
    skipped. Each task keeps its inner products with all the original gradients,
    ``dots[i, k] = g'_i . g_k``, updated by a multiple of ``gram[j]`` at each projection, so a
    visit costs O(T) (in float64 on the CPU: the matrix is tiny).
    """
    coefficients: list[list[float]] | np.ndarray
    if len(gram) <= PYTHON_LOOP_TASKS:  # tolist gives Python floats: float64 already
        coefficients = _project_loops(gram.tolist(), orders.tolist())
    else:
        g = gram.detach().cpu().double()
        coefficients = _project_vectors(g.numpy(), orders.cpu().numpy())
    return torch.tensor(coefficients, dtype=gram.dtype, device=gram.device)


def _project_loops(g: list[list[float]], visits: list[list[int]]) -> list[list[float]]:
    """:func:`project_conflicts` one task at a time, on Python floats."""
    out = []
    for i, order in enumerate(visits):
        coefficients = [0.0] * len(g)
        coefficients[i] = 1.0
        dots = list(g[i])
        for j in order:
            dot, norm = dots[j], g[j][j]
            if dot < 0 and norm > 0:
                alpha = dot / norm
                coefficients[j] -= alpha
                dots = [d - alpha * x for d, x in zip(dots, g[j], strict=True)]
        out.append(coefficients)
    return out


def _project_vectors(g: np.ndarray, visits: np.ndarray) -> np.ndarray:
    """:func:`project_conflicts` with all tasks taking their s-th visit together (numpy)."""
    num_tasks = len(g)
    coefficients = np.eye(num_tasks)
    dots = g.copy()
    rows = np.arange(num_tasks)
    norms = np.diagonal(g)
    safe = np.where(norms > 0, norms, 1.0)
    for j in visits.T:
        dot = dots[rows, j]
        alpha = np.where((dot < 0) & (norms[j] > 0), dot / safe[j], 0.0)
        coefficients[rows, j] -= alpha
        dots -= alpha[:, None] * g[j]
    return coefficients


def random_orders(num_tasks: int, generator: torch.Generator) -> torch.Tensor:
    """An independent random permutation of the T tasks for each task: ``[T, T]``."""
    keys = torch.rand(num_tasks, num_tasks, generator=generator)
    return torch.argsort(keys, dim=1)


class PCGrad:
    """PCGrad over ``shared`` parameters, usable in any PyTorch loop (and under Lightning).

    ``shared``: the modules whose parameters all tasks share (their Linear and LayerNorm layers
    are handled in the single pass, anything else by one backward per task).
    ``task_specific``: parameters inside ``shared`` that each task updates alone (for example
    per-task output heads); like every parameter outside ``shared`` they keep the plain
    gradient, which for them is their own task's. ``reduction``: ``sum`` (the
    paper's) or ``mean`` of the projected gradients. ``seed`` fixes the visiting orders.
    ``strategy``: how the tasks' Gram matrix is formed for each shared Linear layer, from
    per-sample kernels or per-task gradients (``auto``: the cheaper for its sizes; see
    :class:`~gcrl.optim.task_gradients.TaskGradients`).

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
        task_specific: Iterable[torch.Tensor] = (),
        strategy: GramStrategy = "auto",
    ) -> None:
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction: unknown {reduction!r}; choose one of {REDUCTIONS}")
        modules = list(shared)
        own = {id(p) for p in task_specific}
        params = _unique(
            p for m in modules for p in m.parameters() if p.requires_grad and id(p) not in own
        )
        self.num_tasks = num_tasks
        self.reduction = reduction
        self.gradients = TaskGradients(modules, params, strategy)
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        """The random generator's state (the visiting orders a resumed run continues)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

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
        gradients = self.gradients.gram(task_losses)
        if orders is None:
            orders = random_orders(self.num_tasks, self.generator)
        weights = project_conflicts(gradients.matrix, orders).sum(0)
        if self.reduction == "mean":
            weights = weights / max(1, int(task_losses.present.sum()))
        gradients.accumulate(weights)
        return task_losses


def _unique(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out
