"""A hidden-parameter dynamics model: one transition and reward model for all tasks, told
apart by a learned vector per task.

A hidden-parameter MDP (HiP-MDP; Doshi-Velez & Konidaris, 2016) is a family of MDPs whose
dynamics differ only through a low-dimensional parameter ``theta`` fixed within a task; the
HiP-BMDP (Zhang et al., 2021) lets ``theta`` change the reward as well. One model
``T(s, a, theta_i)`` is trained on every task's transitions, each with its own ``theta_i``,
so the tasks' vectors come to encode how their dynamics (and rewards) differ.

In gcrl ``theta_i`` is the row ``i`` of the ``embedding`` task signal's table
(:class:`gcrl.tasks.signals.EmbeddingSignal`): the vector the policy and value networks are
conditioned on. Training a module with ``dynamics_weight > 0`` (and ``task_signal:
embedding``) adds the weighted loss ``hip/loss`` of :class:`HiddenParameterDynamics` to the
algorithm's objective, and its gradient reaches the shared table.

For a task absent from the data, :func:`infer_latent` fits ``theta`` to a handful of its
transitions with the model frozen; the trained module then acts on the new task with that
vector in place of a looked-up one::

    theta = infer_latent(module.hip_dynamics, states, actions, next_states, rewards)
    actions = module.act_on(observations, theta.expand(len(observations), -1), None)

(states and observations standardised as the module's spec says, as in training; ``None``:
no head ids, which a new task has none of: the layouts that pick parts by task id are
refused with ``dynamics_weight``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.models.mlp import MLP


class Transitions(Protocol):
    """What the model reads of a training batch (a :class:`gcrl.training.Batch`; named here
    as a protocol, since ``gcrl.models`` sits below ``gcrl.training``)."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    task_ids: torch.Tensor
    source_task_ids: torch.Tensor | None


class HiddenParameterDynamics(nn.Module):
    """``T(s, a, theta) -> (s' - s, r)``: an MLP over ``[s, a, theta]``, with ``a`` one-hot for
    discrete actions and ``theta`` the task's row of ``latents``.

    Args:
        latents: the task vectors ``[num_tasks, dim]`` (the embedding signal's table, shared
            with it: registered here too, so the dynamics loss trains it).
        observation_dim: width of the (flat, standardised) states.
        action_dim: width of continuous actions, or the number of discrete actions.
        hidden_dims: the MLP's hidden widths.
        discrete: actions are int64 indices (one-hot encoded here).
        weight: the factor of ``hip/loss``.
        activation_name: the MLP's activation.
    """

    def __init__(
        self,
        latents: nn.Embedding,
        observation_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        *,
        discrete: bool = False,
        weight: float = 1.0,
        reward_weight: float = 1.0,
        activation_name: str = "gelu",
    ) -> None:
        super().__init__()
        if weight <= 0:
            raise ConfigError(f"dynamics_weight: must be positive, got {weight}")
        if reward_weight < 0:
            raise ConfigError(f"dynamics_reward_weight: must be 0 or more, got {reward_weight}")
        self.reward_weight = float(reward_weight)
        self.latents = latents
        self.observation_dim = observation_dim
        self.action_dim = action_dim
        self.latent_dim = latents.embedding_dim
        self.discrete = discrete
        self.weight = float(weight)
        in_dim = observation_dim + action_dim + self.latent_dim
        self.net = MLP(in_dim, hidden_dims, observation_dim + 1, activation_name=activation_name)

    def _action_input(self, actions: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Actions as the MLP takes them: ``[B, action dim]`` float (one-hot if discrete)."""
        if self.discrete:
            one_hot = nn.functional.one_hot(actions.long().reshape(-1), self.action_dim)
            return one_hot.to(like.dtype)
        return actions.reshape(len(actions), -1).to(like.dtype)

    def predict(
        self, states: torch.Tensor, actions: torch.Tensor, theta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted state change and reward of each transition.

        Args:
            states: ``[B, observation dim]``, standardised as in training batches.
            actions: ``[B, action dim]`` float, or ``[B]`` int64 indices for discrete actions.
            theta: task vectors ``[B, dim]``, or one ``[dim]`` for all rows.

        Returns:
            ``(delta, reward)``: ``delta`` ``[B, observation dim]`` is ``s' - s`` in
            standardised state units (the state's standard deviations, when the data module
            normalises; raw units otherwise), ``reward`` ``[B]`` in the units of the rewards
            it was trained on (the batch's, as stored or relabelled).
        """
        if theta.ndim == 1:
            theta = theta.expand(len(states), -1)
        x = torch.cat([states, self._action_input(actions, states), theta.to(states.dtype)], -1)
        out = self.net(x)
        return out[:, : self.observation_dim], out[:, self.observation_dim]

    def errors(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        next_states: torch.Tensor,
        rewards: torch.Tensor,
        theta: torch.Tensor,
        reward_theta: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-transition ``(state MSE, reward squared error)``, each ``[B]``: the state's
        squared error averaged over its dimensions (standardised units squared), the reward's
        in its own units squared. ``reward_theta``: the vectors the reward is predicted with,
        when they are not ``theta``'s (rows shared with another task: its reward, their own
        dynamics)."""
        delta, reward = self.predict(states, actions, theta)
        if reward_theta is not None:
            _, reward = self.predict(states, actions, reward_theta)
        state_mse = ((delta - (next_states - states)) ** 2).mean(-1)
        reward_se = (reward - rewards.reshape(-1).to(reward.dtype)) ** 2
        return state_mse, reward_se

    def losses(self, batch: Transitions) -> dict[str, torch.Tensor]:
        """The dynamics losses of a training batch, each ``[B]``: ``hip/loss`` (``weight`` x
        (state MSE + ``reward_weight`` x reward squared error), the one trained), and
        ``hip/state_mse`` (the state change's squared error averaged over dimensions,
        standardised units squared) and ``hip/reward_mse`` (the reward's squared error), both
        detached.

        The state change is predicted with each row's own task vector (``source_task_ids``
        for rows shared from another task, whose dynamics they follow), the reward with the
        vector of the task it was computed for (``task_ids``)."""
        source = getattr(batch, "source_task_ids", None)
        theta = self.latents(batch.task_ids if source is None else source)
        reward_theta = None if source is None else self.latents(batch.task_ids)
        state_mse, reward_se = self.errors(
            batch.observations,
            batch.actions,
            batch.next_observations,
            batch.rewards,
            theta,
            reward_theta,
        )
        return {
            "hip/loss": self.weight * (state_mse + self.reward_weight * reward_se),
            "hip/state_mse": state_mse.detach(),
            "hip/reward_mse": reward_se.detach(),
        }


def infer_latent(
    dynamics: HiddenParameterDynamics,
    states: torch.Tensor,
    actions: torch.Tensor,
    next_states: torch.Tensor,
    rewards: torch.Tensor,
    *,
    steps: int = 200,
    learning_rate: float = 0.05,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """The task vector that best explains a few transitions of a task not in the data.

    ``steps`` Adam steps of ``learning_rate`` on ``theta`` alone, minimising the mean of the
    state MSE plus the reward squared error (:meth:`HiddenParameterDynamics.errors`), from
    ``init`` or else the mean of the trained task vectors. The model's parameters are only
    read: their ``requires_grad`` and ``.grad`` are left as they were. Deterministic.

    Args:
        dynamics: the trained model.
        states, next_states: ``[N, observation dim]``, standardised as in training.
        actions: ``[N, action dim]`` float, or ``[N]`` int64 for discrete actions.
        rewards: ``[N]``, in the units the model was trained on.

    Returns:
        ``theta`` ``[dim]``, detached, on the device of the task vectors.
    """
    if len(states) == 0:
        raise ConfigError("infer_latent: at least one transition is needed")
    if steps < 0:
        raise ConfigError(f"steps: must be at least 0, got {steps}")
    table = dynamics.latents.weight
    start = table.detach().mean(0) if init is None else init.detach().to(table)
    theta = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=learning_rate)
    with torch.enable_grad():
        for _ in range(steps):
            state_mse, reward_se = dynamics.errors(states, actions, next_states, rewards, theta)
            objective = (state_mse + reward_se).mean()
            # Only theta's gradient: the model's .grad stay untouched.
            (grad,) = torch.autograd.grad(objective, [theta])
            theta.grad = grad
            optimizer.step()
    return theta.detach()
