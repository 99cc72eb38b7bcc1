"""Value networks: Q and V over a conditioned MLP, ensembles, and Polyak target updates."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from gcrl.models.layouts import conditioned_network


class ValueEnsemble(nn.Module):
    """``size`` independent networks ``V(s, c)``, ``Q(s, c, a)`` (a continuous action fed as
    input) or ``Q(s, c, .)`` (``out_dim`` discrete actions), each in ``layout``
    (:func:`~gcrl.models.layouts.conditioned_network`). Returns ``[size, B, out_dim]``
    (``[size, B]`` when ``out_dim`` is 1).
    """

    def __init__(
        self,
        size: int,
        in_dim: int,
        cond_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int = 1,
        *,
        conditioning: str = "concat",
        num_heads: int = 1,
        layout: Mapping[str, Any] | None = None,
        activation_name: str = "gelu",
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        #: The constructor's arguments (plain data): a checkpoint rebuilds the network from them.
        self.config = {
            "size": size,
            "in_dim": in_dim,
            "cond_dim": cond_dim,
            "hidden_dims": list(hidden_dims),
            "out_dim": out_dim,
            "conditioning": conditioning,
            "num_heads": num_heads,
            "layout": dict(layout) if layout else None,
            "activation_name": activation_name,
            "layer_norm": layer_norm,
        }
        self.members = nn.ModuleList(
            conditioned_network(
                in_dim,
                cond_dim,
                hidden_dims,
                out_dim,
                conditioning=conditioning,
                num_heads=num_heads,
                layout=layout,
                activation_name=activation_name,
                layer_norm=layer_norm,
            )
            for _ in range(size)
        )
        self.out_dim = out_dim

    def forward(
        self,
        obs: torch.Tensor,
        cond: torch.Tensor,
        actions: torch.Tensor | None = None,
        head: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = obs if actions is None else torch.cat([obs, actions], dim=-1)
        out = torch.stack([member(x, cond, head) for member in self.members])
        return out.squeeze(-1) if self.out_dim == 1 else out


def target_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to serve as its target network."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source``, parameter by parameter, in place."""
    target_params: list[torch.Tensor] = list(target.parameters())
    source_params: list[torch.Tensor] = list(source.parameters())
    torch._foreach_lerp_(target_params, source_params, tau)
