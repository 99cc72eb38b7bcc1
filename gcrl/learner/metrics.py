"""What an algorithm logs: each loss's mean, its mean per task, and the shares of task
sharing in a batch, written on the steps Lightning writes.

:class:`LossLogging` is a part of :class:`~gcrl.learner.AgentModule`, not used alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch

from gcrl.algorithms.agent import Agent
from gcrl.training.batch import Batch


class LossLogging(L.LightningModule):
    """The loss logging of :class:`~gcrl.learner.AgentModule` (see the module)."""

    agent: Agent
    _updates_per_batch: int

    def log_losses(
        self,
        prefix: str,
        losses: Mapping[str, torch.Tensor],
        batch: Batch,
        extra: Mapping[str, torch.Tensor] | None = None,
        step: int | None = None,
    ) -> None:
        """Log each mean loss as ``{prefix}{name}`` and its mean per task as
        ``{prefix}{name}/task/{task name}`` (and ``extra``): in training (called on the steps
        Lightning writes, :meth:`_logging_step`) for the step, in validation over the whole
        epoch. With ``step``, written to the loggers at that optimiser step directly (batches
        of several updates, which Lightning would label by batch)."""
        training = prefix == ""
        metrics = {f"{prefix}{k}": v.mean() for k, v in losses.items()}
        metrics.update(extra or {})
        if self.agent.num_tasks > 1:
            if training and batch.source_task_ids is not None:
                metrics.update(self._sharing_shares(batch))
            metrics.update(self._per_task(prefix, losses, batch.task_ids))
        # The objective's losses are shown in the progress bar while training.
        shown = {k: metrics.pop(k) for k in self.agent.objective_names if training and k in metrics}
        if step is not None:
            scalars = {k: float(v) for k, v in {**shown, **metrics}.items()}
            for logger in self.loggers:
                logger.log_metrics(scalars, step=step)
            if shown:
                self.log_dict(shown, prog_bar=True, logger=False, batch_size=len(batch))
            return
        if shown:
            self.log_dict(shown, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(batch))
        self.log_dict(metrics, on_step=training, on_epoch=not training, batch_size=len(batch))

    def _per_task(
        self, prefix: str, losses: Mapping[str, torch.Tensor], task_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Each per-sample loss's mean over each task present, by ``{prefix}{name}/task/
        {task name}``."""
        counts = torch.bincount(task_ids, minlength=self.agent.num_tasks)
        present = (counts > 0).tolist()
        counts = counts.clamp(min=1)
        names = self.agent.spec.task_names
        per_task: dict[str, torch.Tensor] = {}
        for name, values in losses.items():
            if values.ndim != 1:
                continue
            sums = torch.bincount(
                task_ids, weights=values.detach().float(), minlength=self.agent.num_tasks
            )
            means = sums / counts
            for task, (mean, seen) in enumerate(zip(means, present, strict=True)):
                if seen:
                    per_task[f"{prefix}{name}/task/{names[task]}"] = mean
        return per_task

    def _sharing_shares(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Task sharing: ``sharing/share`` (the shared share of the batch) and
        ``sharing/<source>-><target>`` (each pair's share), fractions of the batch."""
        assert batch.source_task_ids is not None
        m = self.agent.num_tasks
        shared = batch.source_task_ids != batch.task_ids
        pairs = torch.bincount(
            (batch.source_task_ids * m + batch.task_ids)[shared], minlength=m * m
        ).float() / len(batch)
        names = self.agent.spec.task_names
        out = {"sharing/share": shared.float().mean()}
        for source in range(m):
            for target in range(m):
                if source != target:
                    out[f"sharing/{names[source]}->{names[target]}"] = pairs[source * m + target]
        return out

    def _logging_step(self) -> bool:
        """True, at the start of a training step, when Lightning writes its metrics: every
        ``log_every_n_steps`` batches (each batch holds ``updates_per_batch`` optimiser
        steps). Logging on other steps costs about 0.65 ms a call and is never written."""
        every = max(1, getattr(self._trainer, "log_every_n_steps", 50))
        return (self.global_step // self._updates_per_batch + 1) % every == 0
