"""Quasimetric distances: the interval quasimetric embedding (IQE, Wang & Isola 2022), as
OGBench's QRL uses it.

A latent vector of ``latent_dim`` values is split into components of ``component_dim`` values.
For latents ``x`` (of the state) and ``y`` (of the goal), each component ``k`` contributes the
total length of the union of the intervals ``[x_i, y_i]`` over its dimensions ``i`` with
``x_i < y_i`` (dimensions with ``x_i >= y_i`` contribute nothing, which is what makes the
distance asymmetric). The distance mixes the components' mean and maximum,
``alpha * mean + (1 - alpha) * max`` with a learned ``alpha = sigmoid(a)``. It is zero from a
latent to itself and satisfies the triangle inequality for any latents.
"""

from __future__ import annotations

import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.models.mlp import MLP


def interval_union_lengths(x: torch.Tensor, y: torch.Tensor, component_dim: int) -> torch.Tensor:
    """Per component, the length of the union of the intervals ``[x_i, y_i]`` with
    ``x_i < y_i``: ``[..., latent_dim // component_dim]`` for ``x``, ``y`` of ``[...,
    latent_dim]`` (broadcast against each other)."""
    x, y = torch.broadcast_tensors(x, y)
    shape = (*x.shape[:-1], -1, component_dim)
    starts = x.reshape(shape)
    ends = torch.maximum(starts, y.reshape(shape))  # an empty interval where x >= y
    order = starts.argsort(dim=-1)
    starts = starts.gather(-1, order)
    ends = ends.gather(-1, order)
    # Sorted by start, an interval adds what reaches past every earlier interval's end.
    reached = torch.cummax(ends, dim=-1).values
    before = torch.cat([torch.full_like(reached[..., :1], -torch.inf), reached[..., :-1]], -1)
    return (ends - torch.maximum(starts, before)).clamp(min=0).sum(-1)


def iqe_distance(
    x: torch.Tensor, y: torch.Tensor, component_dim: int, mix: torch.Tensor
) -> torch.Tensor:
    """The IQE distance from latent ``x`` to latent ``y``, ``[...]``: ``alpha * mean + (1 -
    alpha) * max`` of the components' :func:`interval_union_lengths`, ``alpha =
    sigmoid(mix)``."""
    components = interval_union_lengths(x, y, component_dim)
    alpha = torch.sigmoid(mix)
    return alpha * components.mean(-1) + (1 - alpha) * components.max(-1).values


class IQE(nn.Module):
    """``d(s, g)``: an MLP ``phi`` embeds states and goals alike (goals are states, as in
    OGBench's QRL) into ``latent_dim`` values; their IQE distance, ``[B]``.

    ``forward(states, goals)`` embeds both; :meth:`distance` takes latents already embedded
    (``phi`` of each, or a latent dynamics model's prediction).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: list[int],
        latent_dim: int = 512,
        component_dim: int = 8,
        *,
        activation_name: str = "gelu",
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        if latent_dim % component_dim:
            raise ConfigError(
                f"latent_dim: {latent_dim} is not a multiple of the component size {component_dim}"
            )
        self.phi = MLP(
            in_dim, hidden_dims, latent_dim, activation_name=activation_name, layer_norm=layer_norm
        )
        self.component_dim = component_dim
        #: ``alpha = sigmoid(mix)``: 0.5 at the start, as OGBench's.
        self.mix = nn.Parameter(torch.zeros(()))

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The IQE distance from latent ``x`` to latent ``y``, ``[...]``."""
        return iqe_distance(x, y, self.component_dim, self.mix)

    def forward(self, states: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        return self.distance(self.phi(states), self.phi(goals))
