"""Policy heads over a conditioned MLP: Gaussian, deterministic and categorical."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.models.layouts import conditioned_network

POLICY_KINDS = ("gaussian", "deterministic", "categorical")
_LOG_2PI = math.log(2 * math.pi)
#: OGBench's actors draw their mean (logit) layer with variance scaling 0.01
#: (``final_fc_init_scale``): Xavier uniform with its bound times ``sqrt(0.01)``.
OUTPUT_INIT_GAIN = 0.1


class Policy(nn.Module):
    """``pi(a | s, c)``: a conditioned MLP and an action distribution.

    ``kind`` is ``"gaussian"`` (mean from the network, state-independent log-std: learned, or
    fixed at 0 when ``const_std``, OGBench's default), ``"deterministic"`` (tanh-bounded
    actions in [-1, 1]) or ``"categorical"`` (``action_dim`` discrete actions, logits). The
    Gaussian's mean and the logits start small, as OGBench's actors do
    (:data:`OUTPUT_INIT_GAIN`), so that a new policy's actions are near 0 and its logits
    near uniform.
    """

    def __init__(
        self,
        kind: str,
        obs_dim: int,
        cond_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        *,
        const_std: bool = True,
        conditioning: str = "concat",
        num_heads: int = 1,
        layout: Mapping[str, Any] | None = None,
        activation_name: str = "gelu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if kind not in POLICY_KINDS:
            raise ConfigError(f"policy: unknown {kind!r}; choose one of {', '.join(POLICY_KINDS)}")
        #: The constructor's arguments (plain data): a checkpoint rebuilds the policy from them.
        self.config = {
            "kind": kind,
            "obs_dim": obs_dim,
            "cond_dim": cond_dim,
            "action_dim": action_dim,
            "hidden_dims": list(hidden_dims),
            "const_std": const_std,
            "conditioning": conditioning,
            "num_heads": num_heads,
            "layout": dict(layout) if layout else None,
            "activation_name": activation_name,
            "layer_norm": layer_norm,
        }
        self.kind = kind
        self.net = conditioned_network(
            obs_dim,
            cond_dim,
            hidden_dims,
            action_dim,
            conditioning=conditioning,
            num_heads=num_heads,
            layout=layout,
            activation_name=activation_name,
            layer_norm=layer_norm,
        )
        if kind != "deterministic":  # TD3's actor keeps the usual initialisation
            weight = self.net.output_layer().weight
            assert isinstance(weight, torch.Tensor)
            with torch.no_grad():
                weight.mul_(OUTPUT_INIT_GAIN)
        self.log_std = nn.Parameter(torch.zeros(action_dim), requires_grad=not const_std)

    def forward(
        self, obs: torch.Tensor, cond: torch.Tensor, head: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The mean action (Gaussian), the action (deterministic) or the logits."""
        out = self.net(obs, cond, head)
        return torch.tanh(out) if self.kind == "deterministic" else out

    def log_prob(self, out: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of ``actions`` under the distribution given by ``out``; ``[B]``."""
        if self.kind == "categorical":
            return -nn.functional.cross_entropy(out, actions, reduction="none")
        if self.kind == "deterministic":
            raise ConfigError("policy: a deterministic policy has no likelihood; use loss mse")
        log_std = self.log_std.clamp(-5.0, 2.0)
        z = (actions - out) * torch.exp(-log_std)
        return -0.5 * (z * z + 2 * log_std + _LOG_2PI).sum(-1)

    def mode(self, out: torch.Tensor) -> torch.Tensor:
        """The most likely action: the mean, the action, or the arg-max index."""
        return out.argmax(-1) if self.kind == "categorical" else out

    def greedy(
        self, obs: torch.Tensor, cond: torch.Tensor, head: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The action to take: the arg-max index, or the mode clipped to [-1, 1]."""
        action = self.mode(self(obs, cond, head))
        return action if self.kind == "categorical" else action.clamp(-1.0, 1.0)

    def std(self) -> torch.Tensor:
        """The Gaussian's standard deviation per action dimension."""
        return torch.exp(self.log_std.clamp(-5.0, 2.0))


def length_normalize(x: torch.Tensor) -> torch.Tensor:
    """``x`` scaled to length ``sqrt(dim)`` along its last axis (HIQL's subgoal
    representations)."""
    return x / torch.linalg.norm(x, dim=-1, keepdim=True).clamp(min=1e-6) * math.sqrt(x.shape[-1])


def subgoal_actions(
    high: Policy,
    low: Policy,
    observations: torch.Tensor,
    condition: torch.Tensor,
    heads: torch.Tensor | None = None,
) -> torch.Tensor:
    """Two-level acting (HIQL): the high-level policy's most likely subgoal representation
    for the goal ``condition``, length-normalised, then the low-level policy's action towards
    it (its mode clipped to [-1, 1], or the arg-max for discrete actions)."""
    subgoal = length_normalize(high.mode(high(observations, condition, heads)))
    return low.greedy(observations, subgoal, heads)


#: How a trained agent acts, by name (``Agent.acting_rule``); see :func:`act_by_rule`.
ACTING_RULES = ("mode", "greedy", "q_argmax", "subgoal")


def act_by_rule(
    rule: str,
    networks: list[nn.Module],
    observations: torch.Tensor,
    condition: torch.Tensor,
    heads: torch.Tensor | None = None,
) -> torch.Tensor:
    """Actions of the acting ``networks`` under ``rule``: ``mode`` (the first policy's most
    likely action), ``greedy`` (its mode clipped to [-1, 1]; the arg-max for discrete
    actions), ``q_argmax`` (the arg-max of the first Q ensemble's first member) or
    ``subgoal`` (:func:`subgoal_actions` of a high- and a low-level policy)."""
    first = networks[0]
    if rule == "subgoal":
        return subgoal_actions(first, networks[1], observations, condition, heads)  # type: ignore[arg-type]
    if rule == "q_argmax":
        return first(observations, condition, None, heads)[0].argmax(-1)
    if rule == "mode":
        return first.mode(first(observations, condition, heads))  # type: ignore[operator]
    if rule == "greedy":
        return first.greedy(observations, condition, heads)  # type: ignore[operator]
    raise ConfigError(f"acting rule: unknown {rule!r}; choose one of {', '.join(ACTING_RULES)}")
