"""Behaviour cloning conditioned on a task signal (goal, one-hot, embedding or text).

Continuous actions: Gaussian log-likelihood (``loss="nll"``, OGBench's GCBC) or mean squared
error (``loss="mse"``); discrete actions: cross-entropy.
"""

from __future__ import annotations

from typing import Any

import torch

from gcrl.algorithms.agent import Agent
from gcrl.errors import ConfigError
from gcrl.models.policies import Policy
from gcrl.training.batch import Batch

BC_LOSSES = ("nll", "mse")


def bc_losses(
    actor: Policy,
    batch: Batch,
    condition: torch.Tensor,
    heads: torch.Tensor | None,
    loss: str,
) -> dict[str, torch.Tensor]:
    """``actor/loss`` per sample (``[B]``) and, for continuous actions, ``actor/mse``."""
    out = actor(batch.observations, condition, heads)
    if actor.kind == "categorical":
        nll = -actor.log_prob(out, batch.actions)
        return {"actor/loss": nll}
    mse = ((actor.mode(out) - batch.actions) ** 2).mean(-1)
    if loss == "mse":
        return {"actor/loss": mse}
    return {"actor/loss": -actor.log_prob(out, batch.actions), "actor/mse": mse.detach()}


class BC(Agent):
    """Goal-conditioned, multi-task or text-conditioned behaviour cloning.

    Args:
        hidden_dims: widths of the policy MLP (OGBench: 512, 512, 512).
        loss: ``nll`` (Gaussian log-likelihood) or ``mse``; discrete actions use
            cross-entropy whatever this says.
        const_std: the Gaussian's standard deviation is fixed at 1 (OGBench's default).
        layer_norm, activation: of the MLP.
        **kwargs: task signal and optimiser options of :class:`~gcrl.algorithms.Agent`.
    """

    objective = ("actor/loss",)
    goal_sets = ("actor",)
    acting_rule = "mode"
    reads_next_observations = False

    def __init__(
        self,
        hidden_dims: list[int] | None = None,
        loss: str = "nll",
        const_std: bool = True,
        layer_norm: bool = False,
        activation: str = "gelu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if loss not in BC_LOSSES:
            raise ConfigError(f"loss: unknown {loss!r}; choose one of {', '.join(BC_LOSSES)}")
        self.loss = loss
        discrete = self.spec.discrete
        kind = "categorical" if discrete else ("deterministic" if loss == "mse" else "gaussian")
        self.actor = self.network_factory(hidden_dims, activation).policy(
            kind,
            self.observation_dim,
            self.spec.action_dim,
            const_std=const_std,
            layer_norm=layer_norm,
        )

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        condition = self.batch_condition(batch, "actor")
        return bc_losses(self.actor, batch, condition, self.heads(batch), self.loss)
