"""Per-task gradients of shared layers from one backward pass.

In a multi-task batch each sample belongs to one task, and a Linear or LayerNorm layer
treats samples independently, so task t's gradient of a shared weight is a sum over task t's
samples of per-sample terms: ``dW_t = G_t^T A_t`` (``G``: gradients at the layer's output,
``A``: its inputs). Forward hooks keep ``A``, tensor hooks keep ``G``; after the ordinary
backward pass of the (weighted) sum of task losses, the per-task sums come out of one batched
matrix product over task segments (the same multiply-adds as the layer's usual weight
gradient). Parameters of other layers fall back to one ``autograd.grad`` per task.

PCGrad needs only the tasks' Gram matrix and one combination ``sum_t c_t dW_t``, which
:meth:`TaskGradients.gram` gives without forming the per-task gradients where that is cheaper:
``<dW_s, dW_t> = sum_{i in s, j in t} (g_i . g_j)(a_i . a_j)``, block sums of the samples'
kernel ``(G G^T) * (A A^T)`` (the "ghost norm" of per-sample-gradient libraries), and the
combination is the layer's usual weight gradient with per-sample weights ``c_{task(i)}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from gcrl.errors import ConfigError

COVERED = (nn.Linear, nn.LayerNorm)
#: How :meth:`TaskGradients.gram` treats a covered layer: per-sample kernels, per-task
#: gradients, or whichever :func:`_kernel_is_cheaper` picks for its sizes.
GramStrategy = Literal["auto", "kernel", "per-task"]
STRATEGIES: tuple[str, ...] = get_args(GramStrategy)
#: The cost model of :func:`_kernel_is_cheaper`, in multiply-adds at full matmul speed,
#: measured on a 2-core AVX2 machine at batch 256 and widths 256: per-task products over
#: segments of B/T rows run at about half that speed, and reading the per-task gradients for
#: the ``[T, N] @ [N, T]`` Gram product, bound by memory, costs about 40 per element.
SEGMENT_SLOWDOWN = 2
PER_TASK_ELEMENT_COST = 40


@dataclass
class TaskLosses:
    """Per-sample losses grouped by task: ``losses[i]`` belongs to ``task_ids[i]``.

    ``per_task`` is the mean loss of each task (0 for a task absent from the batch),
    ``counts`` its number of samples; ``total(weights)`` is ``sum_t weights[t] * per_task[t]``
    as a differentiable scalar.
    """

    losses: torch.Tensor
    task_ids: torch.Tensor
    num_tasks: int

    def __post_init__(self) -> None:
        if self.losses.ndim != 1 or self.losses.shape != self.task_ids.shape:
            raise ConfigError(
                f"losses: expected one loss per sample [B] with task ids [B], got "
                f"{tuple(self.losses.shape)} and {tuple(self.task_ids.shape)}"
            )
        self.task_ids = self.task_ids.long()
        self.counts = torch.bincount(self.task_ids, minlength=self.num_tasks)
        if len(self.counts) > self.num_tasks:
            raise ConfigError(f"task_ids: values must lie in [0, {self.num_tasks})")
        if _distributed():
            # Means over the union of the ranks' batches: each rank divides its sums by the
            # global counts, so summing gradients across ranks gives the union's gradient.
            torch.distributed.all_reduce(self.counts)
        sums = torch.zeros(self.num_tasks, dtype=self.losses.dtype, device=self.losses.device)
        sums = sums.index_add(0, self.task_ids, self.losses)
        self.per_task = sums / self.counts.clamp(min=1)

    def detached_means(self) -> torch.Tensor:
        """Each task's mean loss over the whole batch (every rank's, under
        torch.distributed), detached: ``[T]``."""
        means = self.per_task.detach().clone()
        if _distributed():
            torch.distributed.all_reduce(means)
        return means

    @property
    def present(self) -> torch.Tensor:
        """Bool ``[T]``: the tasks with samples in the batch."""
        return self.counts > 0

    def total(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_t w_t L_t``, the scalar whose backward pass the hooks observe."""
        if weights is None:
            return self.per_task.sum()
        return (weights.to(self.per_task.dtype) * self.per_task).sum()


@dataclass
class TaskGram:
    """What :meth:`TaskGradients.gram` leaves: the task gradients, some materialised
    (``per_task``: ``[T, *shape]``) and some as the per-sample terms of covered layer calls
    (``kernel_calls``: layer, inputs, output gradients), enough for their Gram matrix and any
    combination of them."""

    task_ids: torch.Tensor
    num_tasks: int
    per_task: dict[torch.Tensor, torch.Tensor]
    kernel_calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    wanted: set[int] = field(default_factory=set)

    @cached_property
    def matrix(self) -> torch.Tensor:
        """``[T, T]`` (float32 or wider): ``matrix[s, t]`` is the inner product of task s's
        and task t's gradients over all the parameters."""
        flat = [g.reshape(self.num_tasks, -1) for g in self.per_task.values()]
        terms = [g @ g.T for g in flat]
        if self.kernel_calls:
            kernel = None
            for layer, inputs, grads in self.kernel_calls:
                kernel = _add_sample_kernel(kernel, layer, inputs, grads, self.wanted)
            assert kernel is not None
            onehot = nn.functional.one_hot(self.task_ids, self.num_tasks).to(kernel.dtype)
            terms.append(onehot.T @ kernel @ onehot)  # block sums by task pair
        if not terms:
            return torch.zeros(self.num_tasks, self.num_tasks)
        return torch.stack(terms).sum(0) if len(terms) > 1 else terms[0]

    def accumulate(self, coefficients: torch.Tensor) -> None:
        """Add ``sum_t coefficients[t] g_t`` to each parameter's ``.grad``."""
        for param, g in self.per_task.items():
            flat = g.reshape(self.num_tasks, -1)
            TaskGradients.accumulate(param, (coefficients.to(flat.dtype) @ flat).view_as(param))
        if not self.kernel_calls:
            return
        per_sample = coefficients[self.task_ids]
        for layer, inputs, grads in self.kernel_calls:
            x, g = _promoted(inputs, grads)
            weighted = g * per_sample[:, None].to(g.dtype)
            for param, value in _layer_grads(layer, x, weighted, self.wanted.__contains__).items():
                TaskGradients.accumulate(param, value)


class TaskGradients:
    """Collects per-task gradients ``[T, *shape]`` of ``parameters`` in one backward pass.

    Parameters of :data:`COVERED` layers (found among ``modules``) are computed from the
    layers' inputs and output gradients; any other parameter in ``parameters`` falls back to
    one ``torch.autograd.grad`` per task. Use :meth:`capture` around the forward pass, then
    :meth:`backward` (the per-task gradients) or :meth:`gram` (their Gram matrix and
    combinations, without always forming them; ``strategy`` says how for covered layers).
    """

    def __init__(
        self,
        modules: Iterable[nn.Module],
        parameters: Sequence[torch.Tensor],
        strategy: GramStrategy = "auto",
    ):
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy: unknown {strategy!r}; choose one of {STRATEGIES}")
        self.strategy = strategy
        self.parameters = list(parameters)
        wanted = {id(p) for p in self.parameters}
        self._layers: list[nn.Module] = []
        covered: set[int] = set()
        for root in modules:
            for layer in root.modules():
                if not isinstance(layer, COVERED):
                    continue
                if isinstance(layer, nn.LayerNorm) and len(layer.normalized_shape) != 1:
                    continue
                own = [p for p in layer.parameters(recurse=False) if id(p) in wanted]
                if own:
                    self._layers.append(layer)
                    covered.update(id(p) for p in own)
        self._wanted = wanted
        # Every parameter of a covered layer: its weight gradient is never computed by autograd.
        self._covered = {id(p) for layer in self._layers for p in layer.parameters(recurse=False)}
        self.fallback = [p for p in self.parameters if id(p) not in covered]
        self._records: dict[nn.Module, list[list[torch.Tensor | None]]] = {}
        self._capturing = False
        for layer in self._layers:
            layer.register_forward_hook(self._forward_hook)

    @property
    def covered_layers(self) -> list[nn.Module]:
        """The layers whose per-task gradients come out of the single pass."""
        return list(self._layers)

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record the covered layers' inputs and output gradients inside this block."""
        self._release()
        self._capturing = True
        try:
            yield
        finally:
            self._capturing = False

    def _release(self) -> None:
        """Forget the records. Each holds its layer's output, whose gradient hook holds the
        record: a cycle through autograd's C++ graph that Python's collector cannot see, so
        it is cut here or every step's activations leak."""
        for records in self._records.values():
            for record in records:
                record[2] = None
        self._records = {}

    def _forward_hook(
        self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor
    ) -> None:
        if not self._capturing or not torch.is_grad_enabled() or not out.requires_grad:
            return
        if id(getattr(layer, "weight", None)) not in self._covered:
            return  # called with substituted weights (torch.func.functional_call): not ours
        record: list[torch.Tensor | None] = [inputs[0].detach(), None, out]
        self._records.setdefault(layer, []).append(record)

        def keep(grad: torch.Tensor) -> None:
            record[1] = grad.detach()

        out.register_hook(keep)

    def backward(
        self, task_losses: TaskLosses, weights: torch.Tensor | None = None
    ) -> dict[torch.Tensor, torch.Tensor]:
        """Backpropagate ``task_losses.total(weights)`` and return each parameter's per-task
        gradients ``[T, *shape]`` (float32 or wider): the gradient of ``weights[t] * L_t``
        (``L_t``: task t's mean loss).

        Every parameter outside ``parameters`` reached by the loss gets its ``.grad`` as
        ``backward`` gives it. The ``.grad`` of ``parameters`` is left as it was, for the
        caller to add its combination of the task gradients (:meth:`accumulate`): the
        backward pass stops at the covered layers' outputs instead of computing their weight
        gradients, which the per-task products replace.
        """
        return self._backward(task_losses, weights, kernels=False).per_task

    def gram(self, task_losses: TaskLosses, weights: torch.Tensor | None = None) -> TaskGram:
        """Backpropagate as :meth:`backward` does and return the task gradients as a
        :class:`TaskGram`: ``.matrix`` is their Gram matrix ``[T, T]``, ``.accumulate(c)``
        adds ``sum_t c_t g_t`` to ``.grad``. Covered layers whose sizes make it cheaper (see
        ``strategy``) are kept as per-sample terms instead of per-task gradients; under
        torch.distributed all are per-task (summed across ranks)."""
        return self._backward(task_losses, weights, kernels=not _distributed())

    def _backward(
        self, task_losses: TaskLosses, weights: torch.Tensor | None, kernels: bool
    ) -> TaskGram:
        num_tasks = task_losses.num_tasks
        total = task_losses.total(weights)
        out: dict[torch.Tensor, torch.Tensor] = {}
        if self.fallback:
            out.update(self._fallback(task_losses, weights))
        records = [r for layer in self._layers for r in self._records.get(layer, [])]
        outputs = [r[2] for r in records if r[2] is not None]
        skip = self._covered | self._wanted  # their gradients come from the per-task parts
        others = [p for p in _leaves(total) if id(p) not in skip]
        torch.autograd.backward(total, inputs=outputs + others)
        if _distributed():  # every rank ends with the gradients of the union of the batches
            for param in others:
                if param.grad is not None:
                    torch.distributed.all_reduce(param.grad)
        for tensor in outputs:
            tensor.grad = None
        task_ids = task_losses.task_ids
        index: tuple[torch.Tensor, bool] | None = None  # made for the first per-task layer
        kept: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
        for layer in self._layers:
            calls = [(x, g) for x, g, _ in self._records.get(layer, []) if x is not None]
            for inputs, grads in calls:
                if grads is None:
                    continue  # the layer's output did not reach the loss
                _check_per_sample(layer, inputs, grads, len(task_ids))
                # A layer called more than once has cross terms between its calls in the
                # Gram matrix: its per-task gradients are formed instead.
                if kernels and len(calls) == 1 and self._kernel_pays(layer, inputs, num_tasks):
                    kept.append((layer, inputs, grads))
                    parts = _layer_grads(layer, *_promoted(inputs, grads), self._unwanted)
                    plain = True
                else:
                    if index is None:
                        index = _segments(task_ids, num_tasks)
                    parts = _layer_task_grads(layer, inputs, grads, index, task_ids)
                    plain = False
                for param, value in parts.items():
                    if id(param) in self._wanted:
                        out[param] = out[param] + value if param in out else value
                    else:  # a covered layer's other parameter: the plain gradient
                        total_grad = value if plain else value.sum(0)
                        if _distributed():
                            torch.distributed.all_reduce(total_grad)
                        self.accumulate(param, total_grad)
        in_kernels = {id(p) for layer, _, _ in kept for p in layer.parameters(recurse=False)}
        for param in self.parameters:
            if id(param) in in_kernels:
                continue
            if param not in out:
                out[param] = torch.zeros(num_tasks, *param.shape, device=param.device)
            elif _distributed():
                torch.distributed.all_reduce(out[param])
        self._release()
        return TaskGram(task_ids, num_tasks, out, kept, self._wanted)

    def _unwanted(self, param_id: int) -> bool:
        return param_id not in self._wanted

    def _kernel_pays(self, layer: nn.Module, inputs: torch.Tensor, num_tasks: int) -> bool:
        if self.strategy != "auto":
            return self.strategy == "kernel"
        return _kernel_is_cheaper(layer, len(inputs), num_tasks)

    def weight_norms(
        self, task_losses: TaskLosses, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Backpropagate as ``loss.backward()`` would (every ``.grad`` filled) and return the
        norm of each task's gradient of the one covered Linear layer's weight: ``[T]``.

        The norms come from within-task blocks of the samples' Gram matrices,
        ``|G_t^T A_t|^2 = sum((G_t G_t^T) * (A_t A_t^T))``, which costs a tenth of forming
        the per-task gradients at batch 256 and 10 tasks. Under torch.distributed (the norms
        of gradients summed over ranks) or for a layer called several times it falls back to
        :meth:`backward`.
        """
        (layer,) = self._layers
        weight = layer.weight
        assert isinstance(weight, torch.Tensor)
        calls = self._records.get(layer, [])
        if _distributed() or len(calls) != 1:
            per_task = self.backward(task_losses, weights)[weight]
            self.accumulate(weight, per_task.sum(0))
            return per_task.reshape(task_losses.num_tasks, -1).norm(dim=1)
        task_losses.total(weights).backward()
        inputs, grads, _ = calls[0]
        self._release()
        if inputs is None or grads is None:
            return torch.zeros(task_losses.num_tasks, device=weight.device)
        segments = _segments(task_losses.task_ids, task_losses.num_tasks)
        dtype = torch.promote_types(inputs.dtype, torch.float32)
        g, x = _gather(grads.to(dtype), segments), _gather(inputs.to(dtype), segments, False)
        blocks = torch.bmm(g, g.transpose(1, 2)) * torch.bmm(x, x.transpose(1, 2))
        return blocks.sum((1, 2)).clamp(min=0).sqrt()

    @staticmethod
    def accumulate(param: torch.Tensor, value: torch.Tensor) -> None:
        """Add ``value`` to ``param.grad``, as ``backward`` accumulates. Without a gradient
        yet, ``value`` itself becomes it (no copy): pass a tensor nothing else holds."""
        value = value.to(param.dtype)
        param.grad = value if param.grad is None else param.grad + value

    def _fallback(
        self, task_losses: TaskLosses, weights: torch.Tensor | None
    ) -> dict[torch.Tensor, torch.Tensor]:
        """One ``autograd.grad`` per present task for parameters no hook covers."""
        grads = [
            torch.zeros(task_losses.num_tasks, *p.shape, device=p.device) for p in self.fallback
        ]
        for task in torch.nonzero(task_losses.present).flatten().tolist():
            loss = task_losses.per_task[task]
            if weights is not None:
                loss = loss * weights[task]
            parts = torch.autograd.grad(loss, self.fallback, retain_graph=True, allow_unused=True)
            for slot, part in zip(grads, parts, strict=True):
                if part is not None:
                    slot[task] = part
        return dict(zip(self.fallback, grads, strict=True))


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _leaves(root: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors (parameters) ``root``'s graph accumulates gradients into."""
    seen: set[object] = set()
    stack = [root.grad_fn]
    leaves: list[torch.Tensor] = []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.append(variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


def _segments(task_ids: torch.Tensor, num_tasks: int) -> tuple[torch.Tensor, bool]:
    """Samples grouped by task: ``index [T, Lmax]`` into the batch, and whether every task
    has exactly ``Lmax`` samples. Otherwise shorter tasks are padded with index B, which
    :func:`_gather` reads as a zero row. (Computed in numpy: on a few hundred ids its calls
    cost a fraction of PyTorch's.)"""
    ids = task_ids.cpu().numpy()
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=num_tasks)
    longest = int(counts.max())
    balanced = bool((counts == longest).all())
    if balanced:
        index = order.reshape(num_tasks, longest)
    else:
        slots = np.arange(longest)
        position = np.minimum((np.cumsum(counts) - counts)[:, None] + slots, len(ids) - 1)
        index = np.where(slots < counts[:, None], order[position], len(ids))
    return torch.from_numpy(index).to(task_ids.device), balanced


def _gather(
    rows: torch.Tensor, segments: tuple[torch.Tensor, bool], zero_padding: bool = True
) -> torch.Tensor:
    """``rows [B, D]`` grouped into ``[T, Lmax, D]``. Padding rows are zeros, or, without
    ``zero_padding``, copies of the last row (for the other factor of a product whose padding
    rows are zeros already)."""
    index, balanced = segments
    if balanced:
        return rows[index]
    if not zero_padding:
        return rows[index.clamp(max=len(rows) - 1)]
    padded = torch.cat([rows, rows.new_zeros(1, rows.shape[1])])
    return padded[index]


def _promoted(inputs: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's inputs and output gradients in float32 or wider (bf16 autocast records
    half-precision ones)."""
    dtype = torch.promote_types(inputs.dtype, torch.float32)
    return inputs.to(dtype), grads.to(dtype)


def _check_per_sample(
    layer: nn.Module, inputs: torch.Tensor, grads: torch.Tensor, batch: int
) -> None:
    if inputs.ndim != 2 or grads.shape[0] != batch:
        raise ConfigError(
            f"{type(layer).__name__}: called on inputs of shape {tuple(inputs.shape)} for a "
            f"batch of {batch} samples; the one-pass per-task gradients need one row per sample"
        )


def _kernel_is_cheaper(layer: nn.Module, batch: int, num_tasks: int) -> bool:
    """Whether a Linear layer's Gram terms cost less from the per-sample kernel
    (``B^2 (D_in + D_out)`` for ``G G^T`` and ``A A^T``, then the weighted weight gradient)
    than from per-task gradients (segment products, then reading them for the Gram matrix),
    under the cost model of :data:`SEGMENT_SLOWDOWN` and :data:`PER_TASK_ELEMENT_COST`.
    LayerNorm parameters are ``[D]`` vectors: their per-task gradients are always cheap."""
    if not isinstance(layer, nn.Linear):
        return False
    d_in, d_out = layer.in_features, layer.out_features
    kernel = batch * batch * (d_in + d_out) + batch * d_in * d_out
    per_task = (SEGMENT_SLOWDOWN * batch + PER_TASK_ELEMENT_COST * num_tasks) * d_in * d_out
    return kernel < per_task


def _layer_grads(
    layer: nn.Module, x: torch.Tensor, g: torch.Tensor, wanted: Callable[[int], bool]
) -> dict[torch.Tensor, torch.Tensor]:
    """The gradients of a covered layer's parameters for which ``wanted(id(param))``, from
    inputs ``x`` and output gradients ``g`` ``[B, D]`` (scale the rows of ``g`` to weight the
    samples)."""
    weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
    out: dict[torch.Tensor, torch.Tensor] = {}
    if weight is not None and wanted(id(weight)):
        if isinstance(layer, nn.Linear):
            out[weight] = g.T @ x
        else:
            assert isinstance(layer, nn.LayerNorm)
            out[weight] = (g * _normalised(layer, x)).sum(0)
    if bias is not None and wanted(id(bias)):
        out[bias] = g.sum(0)
    return out


def _add_sample_kernel(
    kernel: torch.Tensor | None,
    layer: nn.Module,
    inputs: torch.Tensor,
    grads: torch.Tensor,
    wanted: set[int],
) -> torch.Tensor:
    """``kernel`` (a new one when None) plus, in place, this layer call's ``K [B, B]``:
    ``K[i, j]`` is the inner product of samples i's and j's gradients of the layer's
    ``wanted`` parameters (for a Linear weight ``(g_i . g_j)(a_i . a_j)``)."""
    x, g = _promoted(inputs, grads)
    weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
    with_weight = weight is not None and id(weight) in wanted
    with_bias = bias is not None and id(bias) in wanted
    term: torch.Tensor | None
    if isinstance(layer, nn.Linear) and with_weight:
        # (g_i . g_j)(a_i . a_j) + (g_i . g_j) for the bias: one product of the two kernels.
        inputs_kernel = x @ x.T
        if with_bias:
            inputs_kernel.add_(1.0)
        if kernel is not None:
            return kernel.addcmul_(inputs_kernel, g @ g.T)
        term = inputs_kernel.mul_(g @ g.T)
    else:
        term = g @ g.T if with_bias else None
        if with_weight:  # LayerNorm: its weight's per-sample gradient is g * normalised(x)
            assert isinstance(layer, nn.LayerNorm)
            scaled = g * _normalised(layer, x)
            term = scaled @ scaled.T if term is None else term.addmm_(scaled, scaled.T)
    if term is None:
        return kernel if kernel is not None else g.new_zeros(len(g), len(g))
    return term if kernel is None else kernel.add_(term)


def _normalised(layer: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + layer.eps)


def _layer_task_grads(
    layer: nn.Module,
    inputs: torch.Tensor,
    grads: torch.Tensor,
    index: tuple[torch.Tensor, bool],
    task_ids: torch.Tensor,
) -> dict[torch.Tensor, torch.Tensor]:
    """Per-task gradients of one call of a covered layer."""
    num_tasks = index[0].shape[0]
    x, g = _promoted(inputs, grads)
    dtype = x.dtype
    out: dict[torch.Tensor, torch.Tensor] = {}
    if isinstance(layer, nn.Linear):
        # Padding rows must be zero in one factor only: pad the narrower one with zeros.
        pad_g = g.shape[1] <= x.shape[1]
        g_tasks, x_tasks = _gather(g, index, pad_g), _gather(x, index, not pad_g)
        out[layer.weight] = torch.bmm(g_tasks.transpose(1, 2), x_tasks)
        if layer.bias is not None:
            zeros = torch.zeros(num_tasks, g.shape[1], dtype=dtype, device=g.device)
            out[layer.bias] = zeros.index_add(0, task_ids, g)
        return out
    assert isinstance(layer, nn.LayerNorm)
    normalised = _normalised(layer, x)
    zeros = torch.zeros(num_tasks, g.shape[1], dtype=dtype, device=g.device)
    if layer.weight is not None:
        out[layer.weight] = zeros.index_add(0, task_ids, g * normalised)
    if layer.bias is not None:
        out[layer.bias] = zeros.index_add(0, task_ids, g)
    return out
