"""Goal-conditioned TD3+BC (Fujimoto and Gu, 2021), continuous actions.

Critic: twin ``Q(s, g, a)`` towards ``r + discount * mask * min_k Q'_k(s', g, a')`` with
``a' = clip(pi'(s', g) + clip(noise, -noise_clip, noise_clip), -1, 1)`` (target policy
smoothing), the TD errors squared and summed over the twins. Actor (deterministic, updated
every ``policy_delay`` steps, as are both target networks): ``-lambda * Q_1(s, g, pi(s, g)) +
(pi(s, g) - a)^2`` (mean over action dimensions) with ``lambda = alpha / mean |Q_1|`` over the
batch, held constant. The reward is the stored one, of the transition ``s -> s'``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from gcrl.algorithms.agent import Agent
from gcrl.algorithms.groups import ParameterGroup
from gcrl.errors import ConfigError
from gcrl.models.critics import ValueEnsemble, polyak_update, target_copy
from gcrl.models.policies import Policy
from gcrl.training.batch import Batch


def td3_critic_loss(
    critic: ValueEnsemble,
    target_critic: nn.Module,
    target_actor: nn.Module,
    batch: Batch,
    cond: torch.Tensor,
    heads: torch.Tensor | None,
    discount: float,
    noise: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """``critic/loss`` (``[B]``) against the smoothed target, given the policy noise already
    clipped (``[B, action dim]``), and ``critic/q``, the twins' mean."""
    with torch.no_grad():
        next_actions = (target_actor(batch.next_observations, cond, heads) + noise).clamp(-1, 1)
        next_q = target_critic(batch.next_observations, cond, next_actions, heads).min(0).values
        target = batch.rewards + discount * batch.masks * next_q
    q = critic(batch.observations, cond, batch.actions, heads)
    return {"critic/loss": ((q - target) ** 2).sum(0), "critic/q": q.detach().mean(0)}


def td3bc_actor_loss(
    actor: Policy,
    critic: ValueEnsemble,
    batch: Batch,
    cond: torch.Tensor,
    heads: torch.Tensor | None,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """``actor/loss`` (``[B]``): ``-lambda Q_1(s, g, pi) + mean_j (pi_j - a_j)^2``; the critic
    scores the actor's action but learns nothing from it (its weights are detached)."""
    pi = actor(batch.observations, cond, heads)
    frozen = {k: v.detach() for k, v in critic.named_parameters()}
    q = functional_call(critic, frozen, (batch.observations, cond, pi, heads))[0]
    lam = alpha / (q.abs().mean().detach() + 1e-6)
    bc = ((pi - batch.actions) ** 2).mean(-1)
    return {"actor/loss": -lam * q + bc, "actor/bc_loss": bc.detach(), "actor/lambda": lam}


class TD3BC(Agent):
    """Goal-conditioned TD3+BC for continuous actions, the paper's defaults.

    Args:
        hidden_dims: every network's widths (256, 256, as the paper); ``actor_hidden_dims``
            and ``value_hidden_dims`` override them per network.
        layer_norm: on the critics (off, as the paper).
        discount, tau: 0.99, 0.005.
        policy_noise, noise_clip: target smoothing noise's deviation and bound (0.2, 0.5), in
            the action's units (actions lie in [-1, 1]).
        policy_delay: the actor and the targets are updated every ``policy_delay``-th step (2).
        alpha: the Q term's weight against behaviour cloning (2.5).
        actor_lr, critic_lr: Adam's learning rates of each (3e-4, 3e-4; the task signal's
            parameters, if any, learn with the critic).
        **kwargs: task signal and optimiser options of :class:`~gcrl.algorithms.Agent`.
    """

    objective = ("critic/loss", "actor/loss")
    goal_sets = ("value", "actor")
    acting_rule = "mode"

    def __init__(
        self,
        hidden_dims: list[int] | None = None,
        actor_hidden_dims: list[int] | None = None,
        value_hidden_dims: list[int] | None = None,
        layer_norm: bool = False,
        discount: float = 0.99,
        tau: float = 0.005,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        policy_delay: int = 2,
        alpha: float = 2.5,
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.spec.discrete:
            raise ConfigError("TD3BC: continuous actions only; use DQN for discrete actions")
        if policy_delay < 1:
            raise ConfigError(f"policy_delay: must be at least 1, got {policy_delay}")
        self.discount, self.tau, self.alpha = discount, tau, alpha
        self.policy_noise, self.noise_clip = policy_noise, noise_clip
        self.groups = (
            ParameterGroup("critic", ("critic/loss",), None, critic_lr),
            ParameterGroup("actor", ("actor/loss",), ("actor",), actor_lr, policy_delay),
        )
        obs_dim, act_dim = self.observation_dim, self.spec.action_dim
        nets = self.network_factory(hidden_dims or [256, 256], activation)
        self.critic = nets.values(2, obs_dim + act_dim, value_hidden_dims, layer_norm=layer_norm)
        self.actor = nets.policy("deterministic", obs_dim, act_dim, actor_hidden_dims)
        self.target_critic = target_copy(self.critic)
        self.target_actor = target_copy(self.actor)

    def parameter_groups(self) -> tuple[ParameterGroup, ...]:
        """The critic (and the task signal) every step at ``critic_lr``; the actor every
        ``policy_delay`` steps at ``actor_lr``."""
        return self.groups

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        heads = self.heads(batch)
        value_cond = self.batch_condition(batch, "value")
        actor_cond = self.batch_condition(batch, "actor")
        noise = torch.randn_like(batch.actions) * self.policy_noise
        noise = noise.clamp(-self.noise_clip, self.noise_clip)
        args = (batch, value_cond, heads, self.discount, noise)
        out = td3_critic_loss(self.critic, self.target_critic, self.target_actor, *args)
        out.update(td3bc_actor_loss(self.actor, self.critic, batch, actor_cond, heads, self.alpha))
        return out

    def update_targets(self) -> None:
        """Polyak-average both targets on the steps that update the actor."""
        if "actor" in self.active_groups:
            polyak_update(self.target_critic, self.critic, self.tau)
            polyak_update(self.target_actor, self.actor, self.tau)
