"""Lightning callbacks: evaluation in the real environment during ``gcrl fit``, the training
rate, and the progress bar.

In a config::

    trainer:
      callbacks:
        - class_path: gcrl.callbacks.EvaluationCallback
          init_args: {env: pointmaze-medium, every_n_steps: 1000, episodes: 5}

logs ``eval/success_mean``, ``eval/success_median``, ``eval/success_worst`` and
``eval/success/<task>`` (rates in [0, 1]) at those steps and after the last one.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

from gcrl.errors import ConfigError


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, labelled ``Epoch N`` and the step budget when the
    number of epochs is unbounded (``max_epochs=-1``, as step-budgeted runs are), where
    Lightning's would read ``Epoch N/-2``; the logger's version number is left out."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        description = f"Epoch {current_epoch}"
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            description += f"/{trainer.max_epochs - 1}"
        if trainer.max_steps is not None and trainer.max_steps > 0:
            description += f", {trainer.max_steps:,} steps"
        return f"{description:{len(self.validation_description)}}"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class StepRate(L.Callback):
    """Log ``time/steps_per_second``: optimiser steps per wall-clock second since the previous
    such log, at Lightning's ``log_every_n_steps`` (OGBench logs the same as
    ``time/epoch_time``, its inverse). The interval counts everything the loop did in it:
    sampling, logging, and other callbacks such as :class:`EvaluationCallback`. ``gcrl fit``
    adds one to every run."""

    def __init__(self) -> None:
        super().__init__()
        self._since: tuple[int, float] = (0, 0.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._since = (trainer.global_step, time.perf_counter())

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        # Steps advance by updates_per_batch per batch: log on crossing a multiple.
        # Lightning sets log_every_n_steps on the trainer at run time (not a declared attribute).
        step, every = trainer.global_step, max(int(getattr(trainer, "log_every_n_steps", 50)), 1)
        last_step, last_time = self._since
        if step // every <= last_step // every:
            return
        now = time.perf_counter()
        rate = (step - last_step) / max(now - last_time, 1e-9)
        for logger in trainer.loggers:
            logger.log_metrics({"time/steps_per_second": rate}, step=step)
        self._since = (step, now)


class EvaluationCallback(L.Callback):
    """Roll the policy out every ``every_n_steps`` optimiser steps and at the end of training.

    Args:
        env: the evaluation suite (``gcrl evaluate --env``).
        every_n_steps: evaluation interval, in optimiser steps.
        episodes: episodes per task.
        tasks: only these tasks (default: all).
        seed: seed of the episodes (the same episodes at every evaluation).
        num_envs: environments stepped in lockstep.
    """

    def __init__(
        self,
        env: str,
        every_n_steps: int = 1000,
        episodes: int = 5,
        tasks: list[str] | None = None,
        seed: int = 0,
        num_envs: int = 8,
    ) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ConfigError(f"every_n_steps: must be at least 1, got {every_n_steps}")
        from gcrl.envs import suite

        self.suite = suite(env)  # an unknown name fails when the config is read
        self.every_n_steps = every_n_steps
        self.episodes = episodes
        self.tasks = tasks
        self.seed = seed
        self.num_envs = num_envs
        self._last_step = -1

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        # Steps advance by updates_per_batch per batch: evaluate on crossing a multiple.
        step, every = trainer.global_step, self.every_n_steps
        if step // every > max(self._last_step, 0) // every:
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_step:
            self._evaluate(trainer, pl_module)

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from gcrl.evaluation import evaluate
        from gcrl.policy import LoadedPolicy

        self._last_step = trainer.global_step
        if not trainer.is_global_zero:
            return
        policy = LoadedPolicy(pl_module)  # type: ignore[arg-type]
        training = pl_module.training
        pl_module.eval()
        try:
            report = evaluate(
                policy.on_tasks,
                self.suite,
                episodes=self.episodes,
                tasks=self.tasks,
                seed=self.seed,
                num_envs=self.num_envs,
            )
        finally:
            pl_module.train(training)
        metrics = {f"eval/{k}": v for k, v in report.summary().items()}
        metrics.update({f"eval/success/{t.name}": t.success_rate for t in report.tasks})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
