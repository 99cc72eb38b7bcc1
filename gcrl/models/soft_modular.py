"""Soft modularization (Yang et al., 2020): a base network of routed modules.

The base network has ``L`` layers (one per hidden width) of ``modules`` small modules each,
run side by side as one batched matmul per layer. A routing network reads the element-wise
product of a state embedding and a task embedding and gives, between consecutive layers, a
soft connection matrix per sample: output module ``j`` of layer ``l + 1`` reads
``sum_i p_l[j, i] * module_i`` of layer ``l``, with ``p_l[j]`` a distribution over ``i``.
Routing layer ``l + 1`` also reads layer ``l``'s weights, as in the paper. The last layer's
module outputs are summed into a linear output layer.
"""

from __future__ import annotations

import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.models.grouped import GroupedLayerNorm, GroupedLinear
from gcrl.models.mlp import (
    TaskNetwork,
    activation,
    norm_and_activate,
    norm_before_activation,
    xavier_linear,
)


class SoftModularNetwork(TaskNetwork):
    """Soft modularization over ``x`` and the task vector ``c``: one layer of ``modules``
    modules of width ``module_dim`` (0: the first hidden width over ``modules``, so a
    layer's modules together are as wide as the shared MLP's layer) per hidden width.
    Returns ``[B, out_dim]``; :meth:`routing` gives the connection weights."""

    def __init__(
        self,
        in_dim: int,
        cond_dim: int,
        hidden_dims: list[int],
        out_dim: int,
        *,
        modules: int = 4,
        module_dim: int = 0,
        activation_name: str = "gelu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(hidden_dims) < 2:
            raise ConfigError("layout soft_modular: needs at least two hidden layers to route")
        self.num_heads = 1
        self.out_dim = out_dim
        m = self.modules_per_layer = modules
        width = module_dim or max(1, hidden_dims[0] // modules)
        self.state_embedding = xavier_linear(in_dim, width)
        self.task_embedding = xavier_linear(cond_dim, width)
        self.layers = nn.ModuleList(GroupedLinear(m, width, width) for _ in hidden_dims)
        self.norms = nn.ModuleList(
            GroupedLayerNorm(m, width) if layer_norm else nn.Identity() for _ in hidden_dims
        )
        routes = len(hidden_dims) - 1
        self.route_down = nn.ModuleList(xavier_linear(width, m * m) for _ in range(routes))
        self.route_up = nn.ModuleList(xavier_linear(m * m, width) for _ in range(routes - 1))
        self.act = activation(activation_name)
        self.norm_first = norm_before_activation()
        self.head = xavier_linear(width, out_dim)

    def _routing(self, state: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        mixed = state * self.task_embedding(c)
        batch, m = len(state), self.modules_per_layer
        logits = self.route_down[0](torch.relu(mixed))
        weights = [torch.softmax(logits.view(batch, m, m), dim=-1)]
        for up, down in zip(self.route_up, self.route_down[1:], strict=True):
            logits = down(torch.relu(up(weights[-1].flatten(1)) * mixed))
            weights.append(torch.softmax(logits.view(batch, m, m), dim=-1))
        return weights

    def routing(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:
        """The connection weights between consecutive layers, each ``[B, modules (to),
        modules (from)]``, every row a distribution."""
        return self._routing(self.act(self.state_embedding(x)), c)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, head: torch.Tensor | None = None
    ) -> torch.Tensor:
        state = self.act(self.state_embedding(x))
        weights = self._routing(state, c)
        h = state.unsqueeze(0).expand(self.modules_per_layer, -1, -1)  # [modules, B, width]
        h = norm_and_activate(self.layers[0](h), self.norms[0], self.act, self.norm_first)
        for route, layer, norm in zip(weights, self.layers[1:], self.norms[1:], strict=True):
            h = torch.einsum("bji,ibd->jbd", route, h)
            h = norm_and_activate(layer(h), norm, self.act, self.norm_first)
        return self.head(h.sum(0))

    def last_shared_layer(self) -> nn.Linear | None:
        return self.head

    def output_layer(self) -> nn.Module:
        return self.head
