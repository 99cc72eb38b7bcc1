"""A Lightning callback that times training steps (for the benchmarks; loaded by class path
in processes Lightning's DDP launcher starts, so it lives in its own small module)."""

from __future__ import annotations

import json
import time
from typing import Any

import lightning as L


class StepClock(L.Callback):
    """Reads ``time.perf_counter()`` at every ``on_train_batch_start``; with ``out``, rank 0
    writes ``{"steps_per_second": ...}`` there at the end, counted from step ``warmup``."""

    def __init__(self, out: str | None = None, warmup: int = 10) -> None:
        self.out = out
        self.warmup = warmup
        self.starts: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.starts.append(time.perf_counter())

    def rate(self, steps: int | None = None) -> float:
        """Steps per second from the start of step ``warmup`` to that of ``warmup + steps``
        (default: the last step started)."""
        end = len(self.starts) - 1 if steps is None else self.warmup + steps
        return (end - self.warmup) / (self.starts[end] - self.starts[self.warmup])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.out is not None and trainer.is_global_zero:
            with open(self.out, "w") as f:
                json.dump({"steps_per_second": self.rate()}, f)
