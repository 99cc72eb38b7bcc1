"""CARE (Sodhani et al., 2021): a mixture of state encoders weighted by task metadata.

``experts`` state encoders run side by side (their first layers as one matmul, later ones as
one batched matmul over the expert axis), each ending in a linear layer as mtrl's encoders
do. The task vector ``c`` (by default the text signal's sentence embedding of the task's
description: the metadata) goes through a context encoder; a linear layer and a softmax over
the context give each sample's attention weights over the encoders; the weighted mixture of
the encodings, through the activation, is concatenated with the context and fed to a
shared trunk.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from gcrl.models.grouped import GroupedLayerNorm, GroupedLinear
from gcrl.models.mlp import (
    MLP,
    TaskNetwork,
    activation,
    norm_and_activate,
    norm_before_activation,
    xavier_linear,
)


class CARE(TaskNetwork):
    """CARE over ``x`` (the state, or state and action for a Q network) and the task
    metadata vector ``c``: ``experts`` encoders of the first ``encoder_layers`` hidden widths,
    a context of ``context_dim``, a shared trunk of the remaining widths. Returns
    ``[B, out_dim]``; :meth:`attention` gives the weights."""

    def __init__(
        self,
        in_dim: int,
        cond_dim: int,
        hidden_dims: list[int],
        out_dim: int,
        *,
        experts: int = 4,
        encoder_layers: int = 1,
        context_dim: int = 64,
        activation_name: str = "gelu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = 1
        self.out_dim = out_dim
        self.experts = experts
        encoder_dims = hidden_dims[:encoder_layers]
        # Every expert's first layer in one matmul: block e of the output is expert e's.
        self.first = nn.Linear(in_dim, experts * encoder_dims[0])
        bound = math.sqrt(6.0 / (in_dim + encoder_dims[0]))  # Xavier, per expert
        nn.init.uniform_(self.first.weight, -bound, bound)
        nn.init.zeros_(self.first.bias)
        self.norms = nn.ModuleList(
            GroupedLayerNorm(experts, width) if layer_norm else nn.Identity()
            for width in encoder_dims[:-1]
        )
        self.layers = nn.ModuleList(
            GroupedLinear(experts, a, b) for a, b in itertools.pairwise(encoder_dims)
        )
        self.act = activation(activation_name)
        self.norm_first = norm_before_activation()
        self.mixture_norm = nn.LayerNorm(encoder_dims[-1]) if layer_norm else nn.Identity()
        self.context = MLP(cond_dim, [context_dim], context_dim, activation_name=activation_name)
        self.gate = xavier_linear(context_dim, self.experts)
        self.trunk = MLP(
            encoder_dims[-1] + context_dim,
            hidden_dims[encoder_layers:],
            out_dim,
            activation_name=activation_name,
            layer_norm=layer_norm,
        )

    def attention(self, c: torch.Tensor) -> torch.Tensor:
        """Each sample's weights over the encoders, ``[B, experts]``, summing to one."""
        return torch.softmax(self.gate(self.context(c)), dim=-1)

    def encodings(self, x: torch.Tensor) -> torch.Tensor:
        """Every encoder's encoding of every sample, ``[B, experts, width]``: the output of
        its last (linear) layer, before the mixture's activation."""
        h = self.first(x).view(len(x), self.experts, -1)
        if not self.layers:
            return h
        h = h.transpose(0, 1)  # [experts, B, width]: one batched matmul per later layer
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = layer(norm_and_activate(h, norm, self.act, self.norm_first))
        return h.transpose(0, 1)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, head: torch.Tensor | None = None
    ) -> torch.Tensor:
        context = self.context(c)
        weights = torch.softmax(self.gate(context), dim=-1)  # [B, experts]
        if self.layers:
            mixture = torch.bmm(weights.unsqueeze(1), self.encodings(x)).squeeze(1)
        else:
            mixture = self._linear_mixture(x, weights)
        mixture = norm_and_activate(mixture, self.mixture_norm, self.act, self.norm_first)
        return self.trunk(torch.cat([mixture, context], dim=-1))

    def _linear_mixture(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_e weights_e (x W_e + b_e)`` for single-layer experts, as one matmul:
        ``[w_1 x, ..., w_E x] @ [W_1; ...; W_E]`` (the batched ``[B, 1, E] @ [B, E, width]``
        product of :meth:`encodings` is several times slower on a CPU). ``[B, width]``."""
        width = self.first.out_features // self.experts
        stacked = self.first.weight.view(self.experts, width, -1).transpose(1, 2)
        scaled = (weights.unsqueeze(-1) * x.unsqueeze(1)).flatten(1)  # [B, experts * in]
        bias = weights @ self.first.bias.view(self.experts, width)
        return torch.addmm(bias, scaled, stacked.reshape(-1, width))

    def last_shared_layer(self) -> nn.Linear | None:
        return self.trunk.last_linear()

    def output_layer(self) -> nn.Module:
        return self.trunk.output_layer()
