"""Lightning callbacks: evaluation in the real environment during ``gcrl fit``, the training
rate, the progress bar, and the checkpoint written when a run is interrupted.

In a config::

    trainer:
      callbacks:
        - class_path: gcrl.callbacks.EvaluationCallback
          init_args: {env: pointmaze-medium, every_n_steps: 1000, episodes: 5}

logs ``eval/success_mean``, ``eval/success_median``, ``eval/success_worst`` and
``eval/success/<task>`` (rates in [0, 1]) at those steps and after the last one.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, cast

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

from gcrl.errors import ConfigError
from gcrl.io import Interrupted


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

    def state_dict(self) -> dict[str, Any]:
        """The step of the last evaluation, so that a resumed run does not evaluate again
        at its first step (checkpoints store it; Lightning saves checkpoint callbacks last,
        after this one has evaluated)."""
        return {"last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = int(state_dict.get("last_step", -1))

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
        policy = LoadedPolicy(cast(Any, pl_module).agent)  # an AgentModule's agent
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
                frame_stack=policy.spec.frame_stack,
            )
        finally:
            pl_module.train(training)
        metrics = {f"eval/{k}": v for k, v in report.summary().items()}
        metrics.update({f"eval/success/{t.name}": t.success_rate for t in report.tasks})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


class InterruptCheckpoint(L.Callback):
    """SIGINT or SIGTERM during ``gcrl fit`` stops training at the end of the current step
    and writes ``interrupted.ckpt`` beside the run's checkpoints (to a temporary file renamed
    into place), from which ``--ckpt_path`` continues exactly; a second signal stops at once.

    Single-process runs only (under DDP each rank would need the same step): there the
    signals keep Lightning's handling.
    """

    FILENAME = "interrupted.ckpt"

    def __init__(self) -> None:
        #: The signal that stopped training (None: it ran to its end).
        self.signal: int | None = None
        #: The checkpoint written on the signal.
        self.path: Path | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # the second one: stop now
            self._restore()
            raise Interrupted(signum)
        self.signal = signum

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.signal is None or self.path is not None:
            return
        callback = trainer.checkpoint_callback
        directory = Path(getattr(callback, "dirpath", None) or trainer.default_root_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / self.FILENAME
        temporary = directory / f".{self.FILENAME}.{os.getpid()}.tmp"
        try:
            trainer.save_checkpoint(temporary, weights_only=False)  # optimiser state too
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        self.path = path
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, err: Any) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
