"""Contrastive RL (CRL), with OGBench's defaults.

Critic: an ensemble of two bilinear networks, ``phi(s, a)`` and ``psi(g)``, each mapping to a
``latent_dim`` vector, with ``Q(s, a, g) = exp(phi . psi / sqrt(latent_dim))``. It is trained
by binary NCE over the batch: each row's own goal (a future state of its trajectory, drawn
geometrically: its ``data_needs``, ``value_goals {geometric: 1.0}``) is the positive, the
other rows' goals are the negatives. No rewards are used. Actor, as in OGBench:

- ``ddpgbc`` (default, continuous actions): maximise ``log Q`` (the logit) of the actor's
  clipped mean action, the lower of the two critics, normalised by its mean absolute value,
  plus ``alpha`` times the log-likelihood of the data's action;
- ``awr`` (continuous or discrete actions): a second, single bilinear ``V(s, g)`` trained the
  same way, and weights ``exp(alpha * (log Q - log V))`` capped at 100.

The actor reads the logits as they are, as OGBench does since its commit 15594e3 ("Improve the
stability of CRL"); before it, OGBench took ``log max(exp(logit), 1e-6)``, a floor at
``log 1e-6`` below which the actor got no gradient.

Discrete actions enter ``phi`` one-hot.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.func import functional_call

from gcrl.algorithms.agent import Agent
from gcrl.errors import ConfigError
from gcrl.models.critics import ValueEnsemble
from gcrl.models.factory import NetworkFactory
from gcrl.training.batch import Batch
from gcrl.training.needs import DataNeeds

ACTOR_LOSSES = ("ddpgbc", "awr")
#: AWR's cap on ``exp(alpha * advantage)``.
MAX_WEIGHT = 100.0


class Bilinear(torch.nn.Module):
    """``size`` pairs of encoders ``phi(s[, a])`` and ``psi(g)`` (in the layout of the
    :class:`~gcrl.models.factory.NetworkFactory` that built them, e.g. one pair per task);
    :meth:`forward` gives their latent vectors, each ``[size, B, latent_dim]``."""

    def __init__(self, phi: ValueEnsemble, psi: ValueEnsemble) -> None:
        super().__init__()
        self.phi, self.psi = phi, psi
        self.latent_dim = phi.out_dim

    @classmethod
    def build(
        cls,
        nets: NetworkFactory,
        size: int,
        state_dim: int,
        goal_dim: int,
        hidden_dims: list[int] | None,
        latent_dim: int,
        layer_norm: bool,
    ) -> Bilinear:
        """``size`` pairs over ``state_dim`` and ``goal_dim`` inputs, from ``nets``."""
        phi = nets.encoders(
            size,
            state_dim,
            latent_dim,
            hidden_dims,
            layer_norm=layer_norm,
            name="state encoder phi(s, a)",
        )
        psi = nets.encoders(
            size,
            goal_dim,
            latent_dim,
            hidden_dims,
            layer_norm=layer_norm,
            name="goal encoder psi(g)",
        )
        return cls(phi, psi)

    def forward(
        self,
        states: torch.Tensor,
        goals: torch.Tensor,
        actions: torch.Tensor | None = None,
        heads: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        none = states.new_zeros(len(states), 0)  # the networks take no condition
        return self.phi(states, none, actions, heads), self.psi(goals, none, None, heads)

    def logits(
        self,
        states: torch.Tensor,
        goals: torch.Tensor,
        actions: torch.Tensor | None = None,
        heads: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``phi(s_i) . psi(g_i) / sqrt(latent_dim)`` for each row: ``[size, B]`` (``log Q``)."""
        phi, psi = self(states, goals, actions, heads)
        return (phi * psi).sum(-1) / math.sqrt(self.latent_dim)


def contrastive_loss(
    net: Bilinear,
    states: torch.Tensor,
    goals: torch.Tensor,
    actions: torch.Tensor | None,
    heads: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Binary NCE over the batch: ``loss`` per row (``[B]``, the mean over the ensemble and
    over the row's ``B`` pairs; its batch mean is OGBench's loss), ``logits_pos`` (the row's
    own pair) and ``accuracy`` (whether the own pair has the row's largest logit)."""
    phi, psi = net(states, goals, actions, heads)
    logits = torch.einsum("eik,ejk->eij", phi, psi) / math.sqrt(net.latent_dim)
    eye = torch.eye(len(states), device=states.device, dtype=logits.dtype)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, eye.expand_as(logits), reduction="none"
    )
    mean_logits = logits.detach().mean(0)
    own = torch.arange(len(states), device=states.device)
    return {
        "loss": bce.mean(dim=(0, 2)),
        "logits_pos": mean_logits.diagonal(),
        "accuracy": (mean_logits.argmax(1) == own).float(),
    }


class CRL(Agent):
    """Contrastive RL (OGBench CRL's defaults).

    Args:
        hidden_dims: the widths of every MLP (512, 512, 512), the option BC and DQN share (so
            switching algorithm keeps it); ``actor_hidden_dims`` and ``value_hidden_dims``
            override it per network.
        latent_dim: width of ``phi`` and ``psi`` (512).
        layer_norm: on the critic networks.
        actor_loss: ``ddpgbc`` (default) or ``awr`` (needed for discrete actions).
        alpha: the BC weight (DDPG+BC) or AWR's inverse temperature (0.1).
        const_std: the actor's Gaussian has standard deviation 1.
        **kwargs: task signal and optimiser options of :class:`~gcrl.algorithms.Agent`.
    """

    goal_sets = ("value", "actor")
    data_needs = DataNeeds(value_goals={"geometric": 1.0})  # OGBench's CRL value goals
    acting_rule = "greedy"

    def __init__(
        self,
        hidden_dims: list[int] | None = None,
        actor_hidden_dims: list[int] | None = None,
        value_hidden_dims: list[int] | None = None,
        latent_dim: int = 512,
        layer_norm: bool = True,
        actor_loss: str = "ddpgbc",
        alpha: float = 0.1,
        const_std: bool = True,
        activation: str = "gelu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if actor_loss not in ACTOR_LOSSES:
            raise ConfigError(f"actor_loss: unknown {actor_loss!r}; choose one of {ACTOR_LOSSES}")
        if self.spec.discrete and actor_loss != "awr":
            raise ConfigError("CRL: discrete actions need actor_loss awr")
        if not self.signal.dim:
            raise ConfigError("CRL: contrasts goals or tasks; the task signal is none")
        self.actor_loss_kind, self.alpha = actor_loss, alpha
        obs_dim, act_dim, cond_dim = (
            self.observation_dim,
            self.spec.action_dim,
            self.signal.dim,
        )
        nets = self.network_factory(hidden_dims, activation)
        bilinear = (value_hidden_dims, latent_dim, layer_norm)
        self.critic = Bilinear.build(nets, 2, obs_dim + act_dim, cond_dim, *bilinear)
        self.value = (
            Bilinear.build(nets, 1, obs_dim, cond_dim, *bilinear) if actor_loss == "awr" else None
        )
        self.actor = nets.policy(
            "categorical" if self.spec.discrete else "gaussian",
            obs_dim,
            act_dim,
            actor_hidden_dims,
            const_std=const_std,
        )

    @property
    def objective(self) -> tuple[str, ...]:  # type: ignore[override]
        """The critic's and the actor's losses (and the value's, with AWR)."""
        if self.actor_loss_kind == "awr":
            return ("critic/loss", "value/loss", "actor/loss")
        return ("critic/loss", "actor/loss")

    def _critic_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as ``phi`` takes them: one-hot for discrete actions."""
        if self.spec.discrete:
            return torch.nn.functional.one_hot(actions, self.spec.action_dim).float()
        return actions

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        value_goals = self.batch_condition(batch, "value")
        actor_goals = self.batch_condition(batch, "actor")
        actions = self._critic_actions(batch.actions)
        heads = self.heads(batch)
        critic = contrastive_loss(self.critic, batch.observations, value_goals, actions, heads)
        out = {f"critic/{k}": v for k, v in critic.items()}
        if self.value is not None:
            value = contrastive_loss(self.value, batch.observations, value_goals, None, heads)
            out.update({f"value/{k}": v for k, v in value.items()})
        out.update(self._actor_losses(batch, actor_goals))
        return out

    def _actor_losses(self, batch: Batch, goals: torch.Tensor) -> dict[str, torch.Tensor]:
        obs = batch.observations
        heads = self.heads(batch)
        dist = self.actor(obs, goals, heads)
        log_prob = self.actor.log_prob(dist, batch.actions)
        if self.actor_loss_kind == "awr":
            assert self.value is not None
            with torch.no_grad():
                actions = self._critic_actions(batch.actions)
                log_q = self.critic.logits(obs, goals, actions, heads)
                log_q = log_q.min(0).values
                log_v = self.value.logits(obs, goals, None, heads)[0]
                advantage = log_q - log_v
                weight = torch.exp(advantage * self.alpha).clamp(max=MAX_WEIGHT)
            return {"actor/loss": -(weight * log_prob), "actor/adv": advantage}
        # DDPG+BC: the critic scores the actor's action, but only the actor learns from it.
        frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
        q_actions = dist.clamp(-1.0, 1.0)
        phi, psi = functional_call(
            self.critic, frozen, (obs, goals, q_actions, heads), strict=False
        )
        log_q = (phi * psi).sum(-1) / math.sqrt(self.critic.latent_dim)
        q = log_q.min(0).values
        q_loss = -q / (q.abs().mean().detach() + 1e-6)
        bc_loss = -self.alpha * log_prob
        return {
            "actor/loss": q_loss + bc_loss,
            "actor/q": q.detach(),
            "actor/bc_loss": bc_loss.detach(),
        }

    @torch.no_grad()
    def q_value(
        self,
        observations: torch.Tensor,
        actions: torch.Tensor,
        goals: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``log Q(s, a, g)``, the lower of the two critics; ``[B]``."""
        condition = self.condition(observations, goals, task_ids)
        actions = self._critic_actions(actions)
        heads = self.head_ids(task_ids)
        return self.critic.logits(observations, condition, actions, heads).min(0).values
