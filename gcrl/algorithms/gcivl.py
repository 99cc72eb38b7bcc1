"""Goal-conditioned implicit V-learning (GCIVL), with OGBench's defaults.

Action-free value learning: twin ``V(s, g)`` regressed by expectile towards
``r + discount * mask * V_target(s', g)``, without Q-functions. As in OGBench, the expectile
weight comes from the target networks' advantage ``r + discount * mask * min V_target(s', g)
- mean V_target(s, g)`` while each network's squared error is against its own target twin, a
double-DQN-like guard against overestimation. Actor: advantage-weighted regression with
HIQL's simplified advantage ``V(s', g) - V(s, g)`` (mean of the twins), weight
``exp(alpha * A)`` capped at 100. Continuous actions get a Gaussian policy, discrete ones a
categorical policy.
"""

from __future__ import annotations

from typing import Any

import torch

from gcrl.algorithms.agent import Agent
from gcrl.models.critics import ValueEnsemble, polyak_update, target_copy
from gcrl.models.policies import Policy
from gcrl.training.batch import Batch

#: AWR's cap on ``exp(alpha * advantage)``.
MAX_WEIGHT = 100.0


def value_losses(
    value: torch.nn.Module,
    target_value: torch.nn.Module,
    batch: Batch,
    cond: torch.Tensor,
    heads: torch.Tensor | None,
    discount: float,
    expectile: float,
) -> dict[str, torch.Tensor]:
    """``value/loss`` (the two networks' expectile losses summed) and ``value/v`` (the mean
    of the twins), each ``[B]``, and ``value/v_min``, ``value/v_max`` over the batch (the
    statistics OGBench logs)."""
    with torch.no_grad():
        next_v = target_value(batch.next_observations, cond, None, heads)  # [2, B]
        targets = batch.rewards + discount * batch.masks * next_v
        v_target = target_value(batch.observations, cond, None, heads).mean(0)
        advantage = batch.rewards + discount * batch.masks * next_v.min(0).values - v_target
        weight = torch.where(advantage >= 0, expectile, 1 - expectile)
    v = value(batch.observations, cond, None, heads)
    loss = (weight * (targets - v) ** 2).sum(0)
    mean_v = v.mean(0).detach()
    return {
        "value/loss": loss,
        "value/v": mean_v,
        "value/v_min": mean_v.min(),
        "value/v_max": mean_v.max(),
    }


def awr_loss(
    actor: Policy,
    value: ValueEnsemble,
    batch: Batch,
    cond: torch.Tensor,
    heads: torch.Tensor | None,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """``actor/loss`` (``-exp(alpha * A) log pi(a | s, g)``) and ``actor/adv`` (``A =
    V(s', g) - V(s, g)``, the mean of the twins), each ``[B]``."""
    with torch.no_grad():
        v = value(batch.observations, cond, None, heads).mean(0)
        next_v = value(batch.next_observations, cond, None, heads).mean(0)
        advantage = next_v - v
        weight = torch.exp(advantage * alpha).clamp(max=MAX_WEIGHT)
    log_prob = actor.log_prob(actor(batch.observations, cond, heads), batch.actions)
    return {"actor/loss": -(weight * log_prob), "actor/adv": advantage}


class GCIVL(Agent):
    """Goal-conditioned implicit V-learning (OGBench GCIVL's defaults).

    Args:
        hidden_dims: the widths of every MLP (512, 512, 512), the option BC and DQN share (so
            switching algorithm keeps it); ``actor_hidden_dims`` and ``value_hidden_dims``
            override it per network.
        layer_norm: on the value networks (the actor has none, as in OGBench).
        discount, tau, expectile, alpha: 0.99, 0.005, 0.9 and AWR's inverse temperature 10.
        const_std: the actor's Gaussian has standard deviation 1.
        **kwargs: task signal and optimiser options of :class:`~gcrl.algorithms.Agent`.
    """

    objective = ("value/loss", "actor/loss")
    goal_sets = ("value", "actor")
    acting_rule = "greedy"

    def __init__(
        self,
        hidden_dims: list[int] | None = None,
        actor_hidden_dims: list[int] | None = None,
        value_hidden_dims: list[int] | None = None,
        layer_norm: bool = True,
        discount: float = 0.99,
        tau: float = 0.005,
        expectile: float = 0.9,
        alpha: float = 10.0,
        const_std: bool = True,
        activation: str = "gelu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.discount, self.tau, self.expectile, self.alpha = discount, tau, expectile, alpha
        obs_dim = self.observation_dim
        nets = self.network_factory(hidden_dims, activation)
        self.value = nets.values(2, obs_dim, value_hidden_dims, layer_norm=layer_norm)
        self.target_value = target_copy(self.value)
        self.actor = nets.policy(
            "categorical" if self.spec.discrete else "gaussian",
            obs_dim,
            self.spec.action_dim,
            actor_hidden_dims,
            const_std=const_std,
        )

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        heads = self.heads(batch)
        value_cond = self.batch_condition(batch, "value")
        actor_cond = self.batch_condition(batch, "actor")
        out = value_losses(
            self.value,
            self.target_value,
            batch,
            value_cond,
            heads,
            self.discount,
            self.expectile,
        )
        out.update(awr_loss(self.actor, self.value, batch, actor_cond, heads, self.alpha))
        return out

    def update_targets(self) -> None:
        polyak_update(self.target_value, self.value, self.tau)

    @torch.no_grad()
    def state_value(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``V(s, g)``, the mean of the twins; ``[B]``."""
        condition = self.condition(observations, goals, task_ids)
        return self.value(observations, condition, None, self.head_ids(task_ids)).mean(0)
