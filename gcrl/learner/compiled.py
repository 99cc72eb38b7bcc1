"""The whole training update as one compiled function (``compile_step``).

Eager PyTorch pays a fixed cost per operation (dispatch, the autograd engine, the optimiser's
Python), which at the sizes most runs use (batch 256, 2 x 256 networks) is as large as the
arithmetic. :class:`CompiledUpdate` writes one update of an algorithm as a pure function of
the parameters: the objective and its gradient (``torch.func.grad`` over the algorithm's own
:meth:`~gcrl.algorithms.Agent.losses`), gradient clipping, Adam, and the
target-network update, all in place, and compiles it once with ``torch.compile`` (on CUDA in
``reduce-overhead`` mode, which replays the captured kernels as CUDA graphs). Each later step
replays the compiled code.

The Adam moments live in the optimiser's own ``state`` (the layout ``torch.optim.Adam``
uses), so checkpoints hold them and a run resumes exactly. :class:`CompiledAdam` is the
optimiser Lightning sees: its ``step(closure)`` runs the closure, which runs the compiled
update.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import nn

from gcrl.algorithms.agent import Agent
from gcrl.training.batch import Batch


class Trainable(Protocol):
    """What the compiled update needs of the module it steps (an ``AgentModule``)."""

    agent: Agent

    @property
    def device(self) -> torch.device: ...

    def _losses_and_objective(
        self, batch: Batch
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]: ...


class CompiledAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose ``step(closure)`` only calls the closure: the closure is the
    compiled update, which applies Adam itself to the parameters and to this optimiser's
    ``state`` (the same tensors and layout ``Adam`` uses, so its state dict is Adam's)."""

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        return None if closure is None else closure()


class _Objective(nn.Module):
    """The algorithm's objective as a module's forward, for ``torch.func.functional_call``
    over the agent's parameters (the agent's own: a parameter set on the agent itself, such
    as QRL's ``log_lam``, is read from the agent's registry, not the adapter's)."""

    def __init__(self, module: Trainable) -> None:
        super().__init__()
        self.agent = module.agent
        self.losses_and_objective = module._losses_and_objective

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses, objective = self.losses_and_objective(batch)
        return objective, losses


class CompiledUpdate:
    """One training update of ``module`` with ``optimizer`` (a :class:`CompiledAdam` over the
    module's trainable parameters), compiled on the first call.

    ``clip`` is the gradient-norm bound (None: none). Calling it with a batch updates the
    parameters, the optimiser state and the target networks in place and returns the
    per-sample losses (detached). When compilation fails, it warns once and runs the same
    update eagerly.
    """

    def __init__(
        self, module: Trainable, optimizer: torch.optim.Optimizer, clip: float | None
    ) -> None:
        self.module = module
        self.optimizer = optimizer
        self.clip = clip
        group = optimizer.param_groups[0]
        if len(optimizer.param_groups) != 1 or group["weight_decay"] or group["amsgrad"]:
            raise ValueError("compile_step: one Adam parameter group without weight decay")
        self.params: list[nn.Parameter] = list(group["params"])
        by_id = {id(p): name for name, p in module.agent.named_parameters()}
        self.names = ["agent." + by_id[id(p)] for p in self.params]
        self.objective = _Objective(module)
        self.eager = module.device.type not in ("cpu", "cuda")
        mode = "reduce-overhead" if module.device.type == "cuda" else None
        self._compiled = torch.compile(self._update, dynamic=False, mode=mode)

    def __call__(self, batch: Batch) -> dict[str, torch.Tensor]:
        state = [self._state(p) for p in self.params]
        steps = [s["step"] for s in state]
        moments = ([s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state])
        group = self.optimizer.param_groups[0]
        # The learning rate as a tensor: a scheduler changing it must not recompile.
        lr = torch.as_tensor(float(group["lr"]), device=steps[0].device)
        beta1, beta2 = (float(b) for b in group["betas"])
        eps = float(group["eps"])
        if not self.eager:
            try:
                losses = self._compiled(batch, steps, *moments, lr, beta1, beta2, eps)
            except Exception as err:  # compilation is best effort: the eager update is exact
                warnings.warn(
                    f"compile_step: torch.compile failed ({type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}); training eagerly",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.eager = True
        if self.eager:
            losses = self._update(batch, steps, *moments, lr, beta1, beta2, eps)
        torch._foreach_add_(steps, 1)  # Adam's per-parameter step counts, in place
        return losses

    def _state(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        """The Adam state of ``param`` as ``torch.optim.Adam`` lays it out (created empty)."""
        state = self.optimizer.state[param]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def _update(
        self,
        batch: Batch,
        steps: list[torch.Tensor],
        exp_avgs: list[torch.Tensor],
        exp_avg_sqs: list[torch.Tensor],
        lr: torch.Tensor,
        beta1: float,
        beta2: float,
        eps: float,
    ) -> dict[str, torch.Tensor]:
        params = [p.detach() for p in self.params]

        def objective(
            values: Mapping[str, torch.Tensor],
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            out: tuple[torch.Tensor, dict[str, torch.Tensor]] = torch.func.functional_call(
                self.objective, dict(values), (batch,), strict=False
            )
            return out

        grads_by_name, losses = torch.func.grad(objective, has_aux=True)(
            dict(zip(self.names, params, strict=True))
        )
        grads = [grads_by_name[name] for name in self.names]
        with torch.no_grad():
            if self.clip is not None:
                norm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g) for g in grads])
                )
                scale = (self.clip / (norm + 1e-6)).clamp(max=1.0)
                grads = [g * scale for g in grads]
            # Adam (torch.optim.Adam's update, bias corrections included), in place.
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            for i, param in enumerate(params):
                step = steps[i] + 1  # this update's count (the stored one is updated after)
                correction1 = 1 - beta1**step
                correction2 = 1 - beta2**step
                denom = (exp_avg_sqs[i] / correction2).sqrt() + eps
                param.sub_(lr * exp_avgs[i] / (denom * correction1))
            self.module.agent.update_targets()
        return {name: value.detach() for name, value in losses.items()}
