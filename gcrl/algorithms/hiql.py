"""Hierarchical implicit Q-learning (HIQL, Park et al. 2023), with OGBench's defaults.

Value: GCIVL's action-free twin ``V(s, g)`` (expectile 0.7 here), where the goal enters through
a representation ``phi([s; g])``: an MLP of the state and the goal, length-normalised to 10
values, learned only through the value; the target network averages the twins only and reads
the online ``phi``, as OGBench's does. Two policies act through it:

- the high-level policy ``pi_h(z | s, g)`` outputs the representation ``z = phi([s; w])`` of a
  subgoal ``w`` 25 steps ahead (``subgoal_steps``), by AWR with weight
  ``exp(3 (V(w, g) - V(s, g)))`` capped at 100 (the target ``w`` never passes the goal);
- the low-level policy ``pi_l(a | s, phi([s; w]))`` acts towards the subgoal, by AWR with
  weight ``exp(3 (V(s', w) - V(s, w)))`` capped at 100; gradients do not reach ``phi``.

Acting picks the high-level policy's most likely subgoal representation, then the low-level
policy's action (:func:`gcrl.models.policies.subgoal_actions`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gcrl.algorithms.agent import Agent
from gcrl.algorithms.gcivl import MAX_WEIGHT, value_losses
from gcrl.errors import ConfigError
from gcrl.models.critics import ValueEnsemble, polyak_update, target_copy
from gcrl.models.mlp import MLP
from gcrl.models.policies import Policy, length_normalize
from gcrl.relabel import Subgoal
from gcrl.training.batch import Batch
from gcrl.training.needs import DataNeeds


class SubgoalValue(nn.Module):
    """``V(s, phi([s; g]))``: twin values over the state and the goal's representation, which
    is the subgoal representation the policies share. ``forward`` returns ``[2, B]``."""

    def __init__(
        self,
        obs_dim: int,
        goal_dim: int,
        hidden_dims: list[int],
        rep_dim: int,
        *,
        layer_norm: bool = True,
        activation_name: str = "gelu",
    ) -> None:
        super().__init__()
        self.rep = MLP(
            obs_dim + goal_dim,
            hidden_dims,
            rep_dim,
            activation_name=activation_name,
            layer_norm=layer_norm,
        )
        self.value = ValueEnsemble(
            2, obs_dim, rep_dim, hidden_dims, activation_name=activation_name, layer_norm=layer_norm
        )

    def representation(self, observations: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        """``phi([s; g])``, length-normalised to ``sqrt(rep_dim)``: ``[B, rep_dim]``."""
        return length_normalize(self.rep(torch.cat([observations, goals], -1)))

    def forward(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor,
        actions: torch.Tensor | None = None,
        head: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.value(observations, self.representation(observations, goals))


class TargetSubgoalValue(nn.Module):
    """The target of a :class:`SubgoalValue`: a frozen, Polyak-averaged copy of its twin
    values over the *online* representation ``phi([s; g])``, as in OGBench, whose target
    value network shares the one ``goal_rep`` module (flax parameter sharing) rather than
    keeping a copy of it. ``forward`` returns ``[2, B]``."""

    def __init__(self, online: SubgoalValue) -> None:
        super().__init__()
        self.value = target_copy(online.value)
        # Not a submodule: phi's parameters are the online network's, trained and saved there.
        object.__setattr__(self, "online", online)

    def forward(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor,
        actions: torch.Tensor | None = None,
        head: torch.Tensor | None = None,
    ) -> torch.Tensor:
        online: SubgoalValue = self.__dict__["online"]
        return self.value(observations, online.representation(observations, goals))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # gcrl 0.2 kept a copy of phi here (``target_value.rep.*``); it is no longer used.
        for key in [k for k in state_dict if k.startswith(prefix + "rep.")]:
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args)


def awr_weight(advantage: torch.Tensor, alpha: float) -> torch.Tensor:
    """``exp(alpha * advantage)`` capped at 100, ``[B]``."""
    return torch.exp(advantage * alpha).clamp(max=MAX_WEIGHT)


def low_actor_losses(
    low: Policy, value: SubgoalValue, batch: Batch, subgoals: torch.Tensor, alpha: float
) -> dict[str, torch.Tensor]:
    """``low_actor/loss`` (AWR towards the subgoal ``w``) and ``low_actor/adv`` (``V(s', w) -
    V(s, w)``, the twins' mean), each ``[B]``."""
    with torch.no_grad():
        advantage = value(batch.next_observations, subgoals).mean(0) - value(
            batch.observations, subgoals
        ).mean(0)
        representation = value.representation(batch.observations, subgoals)
    log_prob = low.log_prob(low(batch.observations, representation), batch.actions)
    return {
        "low_actor/loss": -(awr_weight(advantage, alpha) * log_prob),
        "low_actor/adv": advantage,
    }


def high_actor_losses(
    high: Policy,
    value: SubgoalValue,
    batch: Batch,
    goals: torch.Tensor,
    targets: torch.Tensor,
    target_states: torch.Tensor,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """``high_actor/loss`` (AWR of the subgoal representation ``phi([s; w])`` of the target
    ``w``) and ``high_actor/adv`` (``V(w, g) - V(s, g)``), each ``[B]``, and
    ``high_actor/mse`` (the squared error of the predicted representation)."""
    with torch.no_grad():
        advantage = value(target_states, goals).mean(0) - value(batch.observations, goals).mean(0)
        target = value.representation(batch.observations, targets)
    predicted = high(batch.observations, goals)
    return {
        "high_actor/loss": -(awr_weight(advantage, alpha) * high.log_prob(predicted, target)),
        "high_actor/adv": advantage,
        "high_actor/mse": ((predicted.detach() - target) ** 2).mean(-1),
    }


#: OGBench's distance of the subgoals ahead of the state, in steps.
SUBGOAL_STEPS = 25


def subgoal_needs(steps: int) -> DataNeeds:
    """HIQL's goal sets: the low-level goal ``subgoal``, the state ``steps`` ahead, and the
    high-level target ``high_target``, the same but never past the actor goal, with its
    states."""
    return DataNeeds(
        goal_sets={
            "subgoal": Subgoal(steps),
            "high_target": Subgoal(steps, toward="actor", states=True),
        }
    )


class HIQL(Agent):
    """Hierarchical implicit Q-learning (OGBench HIQL's defaults).

    Args:
        hidden_dims: the widths of every MLP (512, 512, 512), the option BC and DQN share (so
            switching algorithm keeps it); ``actor_hidden_dims`` and ``value_hidden_dims``
            override it per network (``phi`` has the value's).
        rep_dim: width of the subgoal representation (10).
        layer_norm: on the value network and ``phi``.
        discount, tau, expectile: 0.99, 0.005, 0.7.
        low_alpha, high_alpha: the two AWR inverse temperatures (3 each).
        const_std: the policies' Gaussians have standard deviation 1.
        subgoal_steps: how far ahead subgoals lie (25, OGBench's): the data module draws the
            goal sets ``subgoal`` and ``high_target`` at that distance (``data_needs``).
        **kwargs: task signal and optimiser options of :class:`~gcrl.algorithms.Agent`; the
            signal is a goal.
    """

    objective = ("value/loss", "low_actor/loss", "high_actor/loss")
    goal_sets = ("value", "actor", "subgoal", "high_target")
    data_needs = subgoal_needs(SUBGOAL_STEPS)
    acting_rule = "subgoal"
    acting_networks = ("high_actor", "low_actor")

    def __init__(
        self,
        hidden_dims: list[int] | None = None,
        actor_hidden_dims: list[int] | None = None,
        value_hidden_dims: list[int] | None = None,
        rep_dim: int = 10,
        layer_norm: bool = True,
        discount: float = 0.99,
        tau: float = 0.005,
        expectile: float = 0.7,
        low_alpha: float = 3.0,
        high_alpha: float = 3.0,
        const_std: bool = True,
        activation: str = "gelu",
        subgoal_steps: int = SUBGOAL_STEPS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_needs = subgoal_needs(subgoal_steps)
        if not self.signal.uses_goals:
            raise ConfigError(
                "HIQL: subgoals are states on the way to a goal; use task_signal goal"
            )
        nets = self.network_factory(hidden_dims, activation)
        nets.require("shared", reason="its subgoal representation is one network for all goals")
        self.discount, self.tau, self.expectile = discount, tau, expectile
        self.low_alpha, self.high_alpha = low_alpha, high_alpha
        obs_dim, goal_dim = self.observation_dim, self.signal.dim
        self.value = SubgoalValue(
            obs_dim,
            goal_dim,
            nets.dims(value_hidden_dims),
            rep_dim,
            layer_norm=layer_norm,
            activation_name=activation,
        )
        self.target_value = TargetSubgoalValue(self.value)
        self.high_actor = nets.policy(
            "gaussian", obs_dim, rep_dim, actor_hidden_dims, const_std=const_std
        )
        self.low_actor = nets.policy(
            "categorical" if self.spec.discrete else "gaussian",
            obs_dim,
            self.spec.action_dim,
            actor_hidden_dims,
            cond_dim=rep_dim,
            const_std=const_std,
        )

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        if "high_target" not in batch.goal_states:
            raise ConfigError(
                "HIQL: the batches hold no subgoals; draw them with its data_needs "
                "(gcrl fit does; from Python, dm.sampler(data, rng, needs=model.data_needs))"
            )
        condition = {name: self.batch_condition(batch, name) for name in self.goal_sets}
        out = value_losses(
            self.value,
            self.target_value,
            batch,
            condition["value"],
            None,
            self.discount,
            self.expectile,
        )
        out.update(
            low_actor_losses(
                self.low_actor, self.value, batch, condition["subgoal"], self.low_alpha
            )
        )
        out.update(
            high_actor_losses(
                self.high_actor,
                self.value,
                batch,
                condition["actor"],
                condition["high_target"],
                batch.goal_state("high_target"),
                self.high_alpha,
            )
        )
        return out

    def update_targets(self) -> None:
        polyak_update(self.target_value.value, self.value.value, self.tau)

    @torch.no_grad()
    def subgoal(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The high-level policy's subgoal representation for network inputs (flat
        standardised states and goals), length-normalised: ``[B, rep_dim]``."""
        condition = self.condition(observations, goals, task_ids)
        return length_normalize(self.high_actor.mode(self.high_actor(observations, condition)))
