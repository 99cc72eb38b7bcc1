"""A Lightning callback for the DDP tests: each rank writes what it trained on and ended with.

Loaded by class path in ``gcrl fit`` processes that Lightning's launcher starts, so it lives
in an importable module (the tests put the repository on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch


class RankProbe(L.Callback):
    """Writes ``{out}/rank{R}.pt``: the parameters at the end of training and a fingerprint
    (the observation sum) of every batch the rank trained on."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.batches: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, module: Any, batch: Any, *args: Any) -> None:
        self.batches.append(float(batch.observations.double().sum()))

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        os.makedirs(self.out, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        record = {"world_size": trainer.world_size, "params": state, "batches": self.batches}
        torch.save(record, os.path.join(self.out, f"rank{trainer.global_rank}.pt"))
