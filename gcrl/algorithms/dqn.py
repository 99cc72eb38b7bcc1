"""Double DQN with a conservative (CQL) regulariser, for discrete actions.

TD target ``r + discount * mask * Q_target(s', argmax_a Q(s', a))`` (double Q-learning), plus
``cql_alpha * (logsumexp_a Q(s, a) - Q(s, a_data))``, which keeps Q-values of actions the
data never took from being overestimated offline.
"""

from __future__ import annotations

from typing import Any

import torch

from gcrl.algorithms.agent import Agent
from gcrl.errors import ConfigError
from gcrl.models.critics import ValueEnsemble, polyak_update, target_copy
from gcrl.training.batch import Batch


def dqn_losses(
    q_net: ValueEnsemble,
    target: torch.nn.Module,
    batch: Batch,
    cond: torch.Tensor,
    heads: torch.Tensor | None,
    discount: float,
    cql_alpha: float,
) -> dict[str, torch.Tensor]:
    """``critic/td`` and ``critic/cql`` per sample, and their sum ``critic/loss``; ``[B]``."""
    q_all = q_net(batch.observations, cond, None, heads)[0]
    actions = batch.actions
    q = q_all.gather(-1, actions.view(-1, 1)).squeeze(-1)
    with torch.no_grad():
        best = q_net(batch.next_observations, cond, None, heads)[0].argmax(-1, keepdim=True)
        next_q = target(batch.next_observations, cond, None, heads)[0].gather(-1, best)
        y = batch.rewards + discount * batch.masks * next_q.squeeze(-1)
    td = (q - y) ** 2
    cql = torch.logsumexp(q_all, dim=-1) - q
    return {
        "critic/loss": td + cql_alpha * cql,
        "critic/td": td.detach(),
        "critic/cql": cql.detach(),
    }


class DQN(Agent):
    """Offline double DQN + CQL for discrete actions, conditioned on any task signal.

    Args:
        hidden_dims: MLP widths (256, 256).
        layer_norm, activation: of the MLP.
        discount, tau: 0.99 and the Polyak rate of the target network (0.005).
        cql_alpha: weight of the conservative term (1.0; 0 gives plain double DQN).
        **kwargs: task signal and optimiser options of :class:`~gcrl.algorithms.Agent`.
    """

    objective = ("critic/loss",)
    goal_sets = ("value",)  # acting is greedy in the Q of the goal given
    acting_rule = "q_argmax"
    acting_networks = ("q",)

    def __init__(
        self,
        hidden_dims: list[int] | None = None,
        layer_norm: bool = True,
        activation: str = "gelu",
        discount: float = 0.99,
        tau: float = 0.005,
        cql_alpha: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not self.spec.discrete:
            raise ConfigError("DQN: discrete actions only; use IQL for continuous actions")
        self.discount, self.tau, self.cql_alpha = discount, tau, cql_alpha
        self.q = self.network_factory(hidden_dims or [256, 256], activation).values(
            1, self.observation_dim, out_dim=self.spec.action_dim, layer_norm=layer_norm
        )
        self.target_q = target_copy(self.q)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        cond = self.batch_condition(batch, "value")
        return dqn_losses(
            self.q, self.target_q, batch, cond, self.heads(batch), self.discount, self.cql_alpha
        )

    def update_targets(self) -> None:
        polyak_update(self.target_q, self.q, self.tau)

    @torch.no_grad()
    def q_values(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``Q(s, g or task, .)``: ``[B, actions]``."""
        condition = self.condition(observations, goals, task_ids)
        return self.q(observations, condition, None, self.head_ids(task_ids))[0]

    @torch.no_grad()
    def sharing_scores(
        self,
        observations: torch.Tensor,
        actions: torch.Tensor,
        goals: torch.Tensor | None,
        task_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Conservative sharing's score of ``(s, a)`` under ``task_ids``: Q(s, a) of the
        (CQL-regularised, when ``cql_alpha`` > 0) critic; ``[B]``."""
        observations, goals = self.encode_inputs(observations, goals)
        q = self.q_values(observations, goals, task_ids)
        return q.gather(1, actions.long().view(-1, 1)).squeeze(1)
