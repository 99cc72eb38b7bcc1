"""Quasimetric RL (QRL, Wang et al. 2023), with OGBench's defaults.

Value: a quasimetric distance ``d(s, g)`` (:class:`gcrl.models.quasimetric.IQE`: one encoder
``phi`` for states and goals, so goals must be states, as in OGBench). It is trained to be as
large as possible between states and random goals (its ``data_needs``: ``value_goals
{random: 1.0}``; OGBench's shaping ``100 softplus(5 - d / 100)``) while one step stays
within distance 1: the constraint ``relu(d(s, s') - 1)^2 <= eps`` enters through a Lagrange
multiplier ``lam``, itself learned by dual ascent. Actor, as in OGBench:

- ``ddpgbc`` (default, continuous actions): a latent dynamics model predicts ``phi(s')`` from
  ``phi(s)`` and the action (trained by the distance between its prediction and ``phi(s')``,
  both ways); the actor maximises ``-d(pred(phi(s), pi(s, g)), phi(g))``, normalised by its
  mean absolute value, plus ``alpha`` times the log-likelihood of the data's action;
- ``awr``: weights ``exp(alpha * (d(s, g) - d(s', g)))`` capped at 100 (for discrete actions).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import functional_call

from gcrl.algorithms.agent import Agent
from gcrl.errors import ConfigError
from gcrl.models.mlp import MLP
from gcrl.models.quasimetric import IQE, iqe_distance
from gcrl.training.batch import Batch
from gcrl.training.needs import DataNeeds

ACTOR_LOSSES = ("ddpgbc", "awr")
#: AWR's cap on ``exp(alpha * advantage)``.
MAX_WEIGHT = 100.0


def quasimetric_losses(
    value: IQE, log_lam: torch.Tensor, batch: Batch, goals: torch.Tensor, eps: float
) -> dict[str, torch.Tensor]:
    """``value/loss`` (``d_neg`` shaping plus ``lam`` times the step constraint's penalty)
    and ``lam/loss`` (dual ascent on ``lam``), each ``[B]``; the distances ``value/d_neg``
    (to the goals) and ``value/d_pos`` (one step), and their batch ``min`` and ``max``."""
    d_neg = value(batch.observations, goals)
    d_pos = value(batch.observations, batch.next_observations)
    lam = log_lam.exp()
    neg_loss = 100 * torch.nn.functional.softplus(5 - d_neg / 100)
    pos_loss = torch.relu(d_pos - 1) ** 2
    return {
        "value/loss": neg_loss + pos_loss * lam.detach(),
        # Its batch mean is lam * (eps - mean penalty): lam grows while one step exceeds 1.
        "lam/loss": lam * (eps - pos_loss.detach()),
        "value/d_neg": d_neg.detach(),
        "value/d_pos": d_pos.detach(),
        "value/d_neg_min": d_neg.detach().min(),
        "value/d_neg_max": d_neg.detach().max(),
        "value/d_pos_max": d_pos.detach().max(),
        "value/lam": lam.detach(),
    }


def dynamics_loss(value: IQE, dynamics: MLP, batch: Batch, actions: torch.Tensor) -> torch.Tensor:
    """The latent dynamics model's loss per row, ``[B]``: the distance between its prediction
    ``phi(s) + f(phi(s), a)`` and ``phi(s')``, the mean of both directions."""
    latent, next_latent = value.phi(batch.observations), value.phi(batch.next_observations)
    predicted = latent + dynamics(torch.cat([latent, actions], -1))
    return (value.distance(next_latent, predicted) + value.distance(predicted, next_latent)) / 2


class QRL(Agent):
    """Quasimetric RL (OGBench QRL's defaults).

    Args:
        hidden_dims: the widths of every MLP (512, 512, 512), the option BC and DQN share (so
            switching algorithm keeps it); ``actor_hidden_dims`` and ``value_hidden_dims``
            override it per network (the dynamics model has the value's).
        latent_dim: width of ``phi`` (512), in IQE components of ``component_dim`` (8).
        layer_norm: on ``phi`` and the dynamics model.
        eps: the step constraint's margin (0.05).
        actor_loss: ``ddpgbc`` (default) or ``awr`` (needed for discrete actions).
        alpha: the BC weight (DDPG+BC) or AWR's inverse temperature (0.003).
        const_std: the actor's Gaussian has standard deviation 1.
        **kwargs: task signal and optimiser options of :class:`~gcrl.algorithms.Agent`; the
            task signal must be the goal itself (``goal``, no goal encoder) and the goal a
            state.
    """

    goal_sets = ("value", "actor")
    data_needs = DataNeeds(value_goals={"random": 1.0})  # OGBench's QRL value goals
    acting_rule = "greedy"

    def __init__(
        self,
        hidden_dims: list[int] | None = None,
        actor_hidden_dims: list[int] | None = None,
        value_hidden_dims: list[int] | None = None,
        latent_dim: int = 512,
        component_dim: int = 8,
        layer_norm: bool = True,
        eps: float = 0.05,
        actor_loss: str = "ddpgbc",
        alpha: float = 0.003,
        const_std: bool = True,
        activation: str = "gelu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if actor_loss not in ACTOR_LOSSES:
            raise ConfigError(f"actor_loss: unknown {actor_loss!r}; choose one of {ACTOR_LOSSES}")
        if self.spec.discrete and actor_loss != "awr":
            raise ConfigError("QRL: discrete actions need actor_loss awr")
        obs_dim, act_dim = self.observation_dim, self.spec.action_dim
        if not self.signal.uses_goals or self.signal.dim != obs_dim:
            raise ConfigError(
                f"QRL: the goal must be a state ({obs_dim} values, the task signal goal without "
                f"a goal encoder), as its one encoder embeds both; got a {self.signal.dim}-value "
                "task vector (array observations with all goal_dims, or dict observations "
                "whose observation_keys are the goal, fit)"
            )
        self.actor_loss_kind, self.alpha, self.eps = actor_loss, alpha, eps
        nets = self.network_factory(hidden_dims, activation)
        nets.require("shared", reason="its quasimetric embeds states and goals with one encoder")
        dims = nets.dims(value_hidden_dims)
        self.value = IQE(
            obs_dim,
            dims,
            latent_dim,
            component_dim,
            activation_name=activation,
            layer_norm=layer_norm,
        )
        #: ``lam = exp(log_lam)``, 1 at the start.
        self.log_lam = torch.nn.Parameter(torch.zeros(()))
        self.dynamics = (
            MLP(
                latent_dim + act_dim,
                dims,
                latent_dim,
                activation_name=activation,
                layer_norm=layer_norm,
            )
            if actor_loss == "ddpgbc"
            else None
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
        """The value's, the multiplier's and the actor's losses (and the dynamics model's,
        with DDPG+BC)."""
        if self.actor_loss_kind == "ddpgbc":
            return ("value/loss", "lam/loss", "dynamics/loss", "actor/loss")
        return ("value/loss", "lam/loss", "actor/loss")

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        value_goals = self.batch_condition(batch, "value")
        actor_goals = self.batch_condition(batch, "actor")
        out = quasimetric_losses(self.value, self.log_lam, batch, value_goals, self.eps)
        if self.dynamics is not None:
            out["dynamics/loss"] = dynamics_loss(self.value, self.dynamics, batch, batch.actions)
        out.update(self._actor_losses(batch, actor_goals))
        return out

    def _actor_losses(self, batch: Batch, goals: torch.Tensor) -> dict[str, torch.Tensor]:
        obs = batch.observations
        out = self.actor(obs, goals, self.heads(batch))
        log_prob = self.actor.log_prob(out, batch.actions)
        if self.actor_loss_kind == "awr":
            with torch.no_grad():
                advantage = self.value(obs, goals) - self.value(batch.next_observations, goals)
                weight = torch.exp(advantage * self.alpha).clamp(max=MAX_WEIGHT)
            return {"actor/loss": -(weight * log_prob), "actor/adv": advantage}
        # DDPG+BC through the latent dynamics: only the actor learns from this loss.
        assert self.dynamics is not None
        value = {k: v.detach() for k, v in self.value.named_parameters()}
        dynamics = {k: v.detach() for k, v in self.dynamics.named_parameters()}
        latent = functional_call(self.value.phi, _prefixed(value, "phi."), (obs,))
        goal_latent = functional_call(self.value.phi, _prefixed(value, "phi."), (goals,))
        step = torch.cat([latent, out.clamp(-1.0, 1.0)], -1)
        predicted = latent + functional_call(self.dynamics, dynamics, (step,))
        q = -iqe_distance(predicted, goal_latent, self.value.component_dim, value["mix"])
        q_loss = -q / (q.abs().mean().detach() + 1e-6)
        bc_loss = -self.alpha * log_prob
        return {
            "actor/loss": q_loss + bc_loss,
            "actor/q": q.detach(),
            "actor/bc_loss": bc_loss.detach(),
        }

    @torch.no_grad()
    def distance(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``d(s, g)`` for network inputs (flat standardised states and goals), ``[B]``: the
        number of steps QRL estimates from ``s`` to ``g``."""
        return self.value(observations, self.condition(observations, goals, task_ids))


def _prefixed(params: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
