"""Goal-conditioned implicit Q-learning (continuous actions), with OGBench GCIQL's defaults.

Value: expectile regression of ``V(s, g)`` towards ``min(Q_target(s, g, a))``. Critic: twin
``Q(s, g, a)`` towards ``r + discount * mask * V(s', g)``, Polyak-averaged targets. Actor:
DDPG+BC (``-Q(s, g, pi(s, g)) / |Q|`` plus ``alpha`` times the negative log-likelihood) or
advantage-weighted regression (``exp(alpha * (Q - V))``, capped at 100).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import functional_call

from gcrl.algorithms.agent import Agent
from gcrl.errors import ConfigError
from gcrl.models.critics import ValueEnsemble, polyak_update, target_copy
from gcrl.training.batch import Batch

ACTOR_LOSSES = ("ddpgbc", "awr")


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """``|expectile - 1[diff < 0]| * diff**2``, elementwise."""
    weight = torch.where(diff > 0, expectile, 1 - expectile)
    return weight * diff**2


def value_losses(
    value: ValueEnsemble,
    target_critic: torch.nn.Module,
    batch: Batch,
    cond: torch.Tensor,
    heads: torch.Tensor | None,
    expectile: float,
) -> dict[str, torch.Tensor]:
    """``value/loss``, the expectile loss of ``V(s, g)`` against the target critics' minimum,
    and ``value/v``, each ``[B]``; ``value/v_min`` and ``value/v_max`` over the batch (the
    statistics OGBench logs)."""
    with torch.no_grad():
        q = target_critic(batch.observations, cond, batch.actions, heads).min(0).values
    v = value(batch.observations, cond, None, heads)[0]
    seen = v.detach()
    return {
        "value/loss": expectile_loss(q - v, expectile),
        "value/v": seen,
        "value/v_min": seen.min(),
        "value/v_max": seen.max(),
    }


def critic_losses(
    critic: ValueEnsemble,
    value: ValueEnsemble,
    batch: Batch,
    cond: torch.Tensor,
    heads: torch.Tensor | None,
    discount: float,
) -> dict[str, torch.Tensor]:
    """``critic/loss``, the squared TD error of each critic against ``r + discount * mask *
    V(s', g)`` summed over the twins, and ``critic/q``, the twins' mean, each ``[B]``;
    ``critic/q_min`` and ``critic/q_max`` over the batch."""
    with torch.no_grad():
        next_v = value(batch.next_observations, cond, None, heads)[0]
        target = batch.rewards + discount * batch.masks * next_v
    q = critic(batch.observations, cond, batch.actions, heads)
    seen = q.detach().mean(0)
    return {
        "critic/loss": ((q - target) ** 2).sum(0),
        "critic/q": seen,
        "critic/q_min": seen.min(),
        "critic/q_max": seen.max(),
    }


class IQL(Agent):
    """Goal-conditioned IQL for continuous actions (OGBench GCIQL's defaults).

    Args:
        hidden_dims: the widths of every MLP (512, 512, 512), the option BC and DQN share (so
            switching algorithm keeps it); ``actor_hidden_dims`` and ``value_hidden_dims``
            override it per network.
        layer_norm: on the value networks (the actor has none, as in OGBench).
        discount, tau, expectile: 0.99, 0.005, 0.9.
        actor_loss: ``ddpgbc`` (default) or ``awr``; ``alpha``: the BC weight (DDPG+BC, 0.3)
            or the inverse temperature (AWR).
        const_std: the actor's Gaussian has standard deviation 1.
        **kwargs: task signal and optimiser options of :class:`~gcrl.algorithms.Agent`.
    """

    objective = ("value/loss", "critic/loss", "actor/loss")
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
        actor_loss: str = "ddpgbc",
        alpha: float = 0.3,
        const_std: bool = True,
        activation: str = "gelu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.spec.discrete:
            raise ConfigError("IQL: continuous actions only; use DQN for discrete actions")
        if actor_loss not in ACTOR_LOSSES:
            raise ConfigError(f"actor_loss: unknown {actor_loss!r}; choose one of {ACTOR_LOSSES}")
        self.discount, self.tau, self.expectile = discount, tau, expectile
        self.actor_loss_kind, self.alpha = actor_loss, alpha
        obs_dim, act_dim = self.observation_dim, self.spec.action_dim
        nets = self.network_factory(hidden_dims, activation)
        self.critic = nets.values(2, obs_dim + act_dim, value_hidden_dims, layer_norm=layer_norm)
        self.target_critic = target_copy(self.critic)
        self.value = nets.values(1, obs_dim, value_hidden_dims, layer_norm=layer_norm)
        self.actor = nets.policy(
            "gaussian", obs_dim, act_dim, actor_hidden_dims, const_std=const_std
        )

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        heads = self.heads(batch)
        value_cond = self.batch_condition(batch, "value")
        actor_cond = self.batch_condition(batch, "actor")
        out = value_losses(self.value, self.target_critic, batch, value_cond, heads, self.expectile)
        out.update(critic_losses(self.critic, self.value, batch, value_cond, heads, self.discount))
        out.update(self._actor_losses(batch, actor_cond, heads))
        return out

    @torch.no_grad()
    def awr_weights(
        self, batch: Batch, cond: torch.Tensor, heads: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """AWR's advantage ``A = min_k Q_k(s, a) - V(s)`` of the batch's actions and its
        weight ``exp(alpha * A)`` capped at 100, each ``[B]``, without gradient."""
        obs, actions = batch.observations, batch.actions
        v = self.value(obs, cond, None, heads)[0]
        q = self.critic(obs, cond, actions, heads).min(0).values
        return q - v, torch.exp((q - v) * self.alpha).clamp(max=100.0)

    def _actor_losses(
        self, batch: Batch, cond: torch.Tensor, heads: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        obs, actions = batch.observations, batch.actions
        dist = self.actor(obs, cond, heads)
        log_prob = self.actor.log_prob(dist, actions)
        if self.actor_loss_kind == "awr":
            advantage, weight = self.awr_weights(batch, cond, heads)
            return {"actor/loss": -(weight * log_prob), "actor/adv": advantage}
        # DDPG+BC: the critic scores the actor's action, but only the actor learns from it.
        frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
        q_actions = dist.clamp(-1.0, 1.0)
        q = functional_call(self.critic, frozen, (obs, cond, q_actions, heads)).min(0).values
        q_loss = -q / (q.abs().mean().detach() + 1e-6)
        bc_loss = -self.alpha * log_prob
        return {
            "actor/loss": q_loss + bc_loss,
            "actor/q_loss": q_loss.detach(),
            "actor/bc_loss": bc_loss.detach(),
        }

    def update_targets(self) -> None:
        polyak_update(self.target_critic, self.critic, self.tau)

    @torch.no_grad()
    def sharing_scores(
        self,
        observations: torch.Tensor,
        actions: torch.Tensor,
        goals: torch.Tensor | None,
        task_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Conservative sharing's score of ``(s, a)`` under ``task_ids``: the lower of the two
        Q-values (IQL's in-sample critic); ``[B]``."""
        observations, goals = self.encode_inputs(observations, goals)
        condition = self.condition(observations, goals, task_ids)
        heads = self.head_ids(task_ids)
        return self.critic(observations, condition, actions, heads).min(0).values

    @torch.no_grad()
    def state_value(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``V(s, g)``; ``[B]``."""
        condition = self.condition(observations, goals, task_ids)
        return self.value(observations, condition, None, self.head_ids(task_ids))[0]
