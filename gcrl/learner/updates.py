"""How an algorithm's parameters are updated: the objective of each optimiser step, Adam
over the parameter groups (each with its own learning rate and update interval), and the four
update paths: automatic (one step per batch), eager manual, compiled
(:mod:`gcrl.learner.compiled`) and one-pass PCGrad / GradNorm (:mod:`gcrl.optim`), each
repeated ``updates_per_batch`` times per batch. The agent says what to minimise and which
groups a step updates; this carries it out.

:class:`UpdatePaths` is a part of :class:`~gcrl.learner.AgentModule`, not used alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gcrl.algorithms.agent import Agent
from gcrl.algorithms.groups import group_parameters
from gcrl.errors import ConfigError
from gcrl.learner.metrics import LossLogging
from gcrl.training.batch import Batch

#: Devices with a fused Adam kernel in torch >= 2.4.
_FUSED_ADAM_DEVICES = frozenset({"cpu", "cuda", "mps", "xpu"})


def fused_adam_supported(params: Sequence[torch.Tensor]) -> bool:
    """Whether ``torch.optim.Adam(params, fused=True)`` applies: all floating point, on one
    device that has the fused kernel."""
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in _FUSED_ADAM_DEVICES
        and all(p.is_floating_point() for p in params)
    )


class UpdatePaths(LossLogging):
    """The update paths of :class:`~gcrl.learner.AgentModule` (see the module)."""

    agent: Agent
    compile_step: bool | None
    _training_objective: tuple[str, ...] | None
    _compiled: Any
    _whole_step: Any
    _multitask: Any
    _multitask_state: dict[str, Any] | None

    def compute_losses(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The agent's losses and objective (:meth:`~gcrl.algorithms.Agent.objective_value`),
        compiled into one graph on first use when ``compile_step`` is on (PCGrad and
        GradNorm: their one-pass gradients come from the eager backward of this graph)."""
        self._start_update()
        if not self.compile_step:
            return self._losses_and_objective(batch)
        if self._compiled is None:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._compiled = torch.compile(self._losses_and_objective, dynamic=False, mode=mode)
        return self._compiled(batch)

    def _losses_and_objective(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        losses = self.agent.all_losses(batch)
        return losses, self.agent.objective_value(losses, self._training_objective)

    def _start_update(self) -> None:
        """Let the agent decide the groups this optimiser step updates, and keep the losses of
        its objective."""
        self._training_objective = self.agent.begin_update(self.global_step)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Leave the groups not updated at this step without gradient, so that Adam (which
        skips parameters without one) leaves them and their moments as they are."""
        for group in optimizer.param_groups:
            if group.get("name", "all") not in self.agent.active_groups:
                for p in group["params"]:
                    p.grad = None

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        """One Lightning step: one optimiser step under automatic optimisation; under manual
        optimisation (``compile_step``, ``optim``, ``updates_per_batch`` > 1) one per part of
        the batch (:meth:`Batch.parts`), each counted by Lightning as a step."""
        log = self._logging_step()
        if self.automatic_optimization:
            losses, objective = self.compute_losses(batch)
            if log:
                self.log_losses("", losses, batch)
            return objective
        parts = batch.parts()[: self._updates_left(batch.updates)]
        extra: dict[str, torch.Tensor] = {}
        for part in parts:
            if self.agent.optim != "none":
                losses = self._multitask_update(part, extra if log else None)
            elif self.compile_step and len(self.agent.parameter_groups()) == 1:
                losses = self._compiled_update(part)
            else:
                losses = self._eager_update(part)
            schedulers = self.lr_schedulers()
            if schedulers is not None and not isinstance(schedulers, list):
                schedulers.step()
        if log:
            # Several updates: labelled by the last one's index (as Lightning labels batches
            # of one update), not by batch.
            step = self.global_step - 1 if batch.updates > 1 else None
            self.log_losses("", losses, part, extra, step=step)
        return None

    def _updates_left(self, updates: int) -> int:
        """How many of a batch's ``updates`` fit before ``trainer.max_steps``."""
        max_steps = self.trainer.max_steps
        if max_steps is None or max_steps < 0:
            return updates
        return max(1, min(updates, max_steps - self.global_step))

    def _optimizer(self) -> Any:
        optimizer = self.optimizers()
        assert not isinstance(optimizer, list)
        return optimizer

    def _eager_update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One eager optimiser step under manual optimisation."""
        optimizer = self._optimizer()
        losses, objective = self.compute_losses(batch)
        optimizer.zero_grad()
        self.manual_backward(objective)
        clip = self._clip_value()
        if clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=clip)
        optimizer.step()
        self.agent.update_targets()
        return losses

    def _compiled_update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One step of the compiled whole update (:mod:`gcrl.algorithms.compiled`):
        Lightning's optimiser step runs it, so it is counted as a step."""
        optimizer = self._optimizer()
        if self._whole_step is None:
            from gcrl.learner.compiled import CompiledUpdate

            self._whole_step = CompiledUpdate(self, optimizer.optimizer, self._clip_value())
        losses: dict[str, torch.Tensor] = {}
        optimizer.step(closure=lambda: losses.update(self._whole_step(batch)))
        return losses

    def _clip_value(self) -> float | None:
        """The gradient-norm bound: ``gradient_clip_val``, else the trainer's (which
        Lightning applies only under automatic optimisation)."""
        if self.agent.gradient_clip_val is not None:
            return self.agent.gradient_clip_val
        trainer = self._trainer
        value = None if trainer is None else trainer.gradient_clip_val
        if value is None:
            return None
        if trainer is not None and trainer.gradient_clip_algorithm not in (None, "norm"):
            raise ConfigError(
                "trainer.gradient_clip_algorithm: only norm clipping applies under manual "
                "optimisation (compile_step, optim, updates_per_batch); unset it"
            )
        return float(value)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Lightning's optimiser step, then :meth:`update_targets` (before any callback's
        ``on_train_batch_end``, so a checkpoint saved there holds the updated targets)."""
        super().optimizer_step(*args, **kwargs)
        self.agent.update_targets()

    def _multitask_update(
        self, batch: Batch, metrics: dict[str, torch.Tensor] | None
    ) -> dict[str, torch.Tensor]:
        """One step of PCGrad or GradNorm under manual optimisation; GradNorm's task weights
        go into ``metrics`` when given."""
        multitask = self._multitask or self._build_multitask()
        optimizer = self._optimizer()
        with multitask.capture():
            losses, _ = self.compute_losses(batch)
        per_sample = torch.stack([losses[name] for name in self._training_objective or ()]).sum(0)
        optimizer.zero_grad()
        multitask.backward(per_sample, batch.task_ids)
        clip = self._clip_value()
        if clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=clip)
        optimizer.step()
        self.agent.update_targets()
        if self.agent.optim == "gradnorm" and metrics is not None:
            weights = multitask.weights.detach()
            names = self.agent.spec.task_names
            metrics.update({f"gradnorm/weight/{n}": w for n, w in zip(names, weights, strict=True)})
        return losses

    def _build_multitask(self) -> Any:
        from gcrl.optim import GradNorm, PCGrad

        # Under DDP, Lightning's manual optimisation leaves DDP's gradient reducer idle unless
        # manual_backward runs; gcrl.optim all-reduces the per-task gradients itself, so
        # every rank applies the same surgery to the gradients of the union of the batches.
        agent = self.agent
        if agent.optim == "pcgrad":
            specific = agent.task_specific_parameters()
            self._multitask = PCGrad([self], agent.num_tasks, task_specific=specific)
            if not self._multitask.gradients.parameters:
                raise ConfigError(
                    f"optim pcgrad: the {agent.layout['kind']} layout shares no parameters "
                    "between tasks, so there are no gradients to project"
                )
        else:
            self._multitask = GradNorm(
                agent.last_shared_layer(), agent.num_tasks, alpha=agent.gradnorm_alpha
            )
        if self._multitask_state is not None:
            self._multitask.load_state_dict(self._multitask_state)
        return self._multitask

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the trainable parameters, fused into one kernel per step where torch
        has one for their device and dtype (on 2 CPU cores it steps GCBC's 0.5M parameters
        about 3x faster than the per-tensor loop; the update is the same). With
        ``compile_step`` (decided here, where the device is known), the same Adam applied by
        the compiled update, under manual optimisation."""
        agent = self.agent
        groups = agent.parameter_groups()
        grouped = group_parameters(agent, groups)
        params = [p for ps in grouped for p in ps]
        if self.compile_step is None:
            self.compile_step = self.device.type == "cuda"
        datamodule = getattr(self._trainer, "datamodule", None)
        self._updates_per_batch = int(getattr(datamodule, "updates_per_batch", 1))
        if agent.optim != "none" or self.compile_step or self._updates_per_batch > 1:
            self.automatic_optimization = False
        if self.compile_step and agent.optim == "none" and len(groups) == 1:
            from gcrl.learner.compiled import CompiledAdam

            return CompiledAdam(params, lr=agent.learning_rate)
        lr = agent.learning_rate
        param_groups = [
            {"params": ps, "lr": lr if g.lr is None else g.lr, "name": g.name}
            for g, ps in zip(groups, grouped, strict=True)
        ]
        return torch.optim.Adam(param_groups, fused=fused_adam_supported(params))
