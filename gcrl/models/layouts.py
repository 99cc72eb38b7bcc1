"""How a conditioned network divides into shared and task-specific parts (its layout).

Chosen by name in a config (``Agent(layout=..., layout_options=...)``); every layout
is a :class:`~gcrl.models.mlp.TaskNetwork` with the same ``forward(x, c, head)``, so every
algorithm's policies and value networks take any of them:

- ``shared``: one MLP over ``[x, c]`` (:class:`~gcrl.models.mlp.ConditionedMLP`);
- ``heads``: a shared trunk with one output layer per task;
- ``independent``: one whole MLP per task, run as batched matmuls over the task axis;
- ``task_encoders``: the first ``encoder_layers`` hidden layers per task, the rest shared;
- ``task_encoder``: a shared state encoder and a task encoder of ``c`` (``context_dim``
  wide), concatenated into a shared trunk;
- ``care``: CARE's mixture of ``experts`` state encoders weighted by the task metadata
  (:mod:`gcrl.models.care`);
- ``soft_modular``: soft modularization's routed modules (:mod:`gcrl.models.soft_modular`).

``hidden_dims`` keeps its meaning in every layout: the widths of the layers from input to
output, of which the first ``encoder_layers`` form the encoder(s) where a layout has one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.models.care import CARE
from gcrl.models.grouped import GroupedLinear, GroupedStack, TaskGroups
from gcrl.models.mlp import MLP, ConditionedMLP, TaskNetwork, activation
from gcrl.models.soft_modular import SoftModularNetwork

LAYOUTS = (
    "shared",
    "heads",
    "independent",
    "task_encoders",
    "task_encoder",
    "care",
    "soft_modular",
)
#: Layouts with parts per task id: their networks need each sample's task id.
TASK_ID_LAYOUTS = frozenset({"heads", "independent", "task_encoders"})
#: Layouts whose task-specific parts come from the task vector: they need a task signal.
SIGNAL_LAYOUTS = frozenset({"task_encoder", "care", "soft_modular"})


@dataclass(frozen=True)
class Layout:
    """A layout and its options (plain data: it is stored in checkpoints as a dict).

    Attributes:
        kind: one of :data:`LAYOUTS`.
        encoder_layers: ``task_encoders``, ``task_encoder``, ``care``: how many of the
            hidden layers form the encoder(s); the rest form the shared trunk.
        context_dim: ``task_encoder``, ``care``: width of the task encoder's output.
        experts: ``care``: the number of state encoders mixed.
        modules: ``soft_modular``: modules per layer.
        module_dim: ``soft_modular``: width of each module (0: the first hidden width over
            ``modules``).
    """

    kind: str = "shared"
    encoder_layers: int = 1
    context_dim: int = 64
    experts: int = 4
    modules: int = 4
    module_dim: int = 0

    def __post_init__(self) -> None:
        if self.kind not in LAYOUTS:
            raise ConfigError(f"layout: unknown {self.kind!r}; choose one of {', '.join(LAYOUTS)}")
        for name in ("encoder_layers", "context_dim", "experts", "modules"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"layout_options.{name}: must be at least 1")
        if self.module_dim < 0:
            raise ConfigError("layout_options.module_dim: must be 0 (automatic) or more")

    @classmethod
    def parse(cls, kind: str, options: Mapping[str, Any] | None = None) -> Layout:
        """The layout ``kind`` with ``options``; a one-line error names an unknown option."""
        known = {f.name for f in fields(cls)} - {"kind"}
        for key in options or {}:
            if key not in known:
                raise ConfigError(
                    f"layout_options.{key}: not an option; choose from {', '.join(sorted(known))}"
                )
        return cls(kind=kind, **{k: int(v) for k, v in (options or {}).items()})

    @classmethod
    def from_dict(cls, record: Mapping[str, Any] | None) -> Layout:
        """The layout a network's ``config`` records (None: ``shared``)."""
        if not record:
            return cls()
        return cls(**record)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def uses_task_ids(self) -> bool:
        """Whether the networks read each sample's task id."""
        return self.kind in TASK_ID_LAYOUTS


def conditioned_network(
    in_dim: int,
    cond_dim: int,
    hidden_dims: Sequence[int],
    out_dim: int,
    *,
    conditioning: str = "concat",
    num_heads: int = 1,
    layout: Mapping[str, Any] | None = None,
    activation_name: str = "gelu",
    layer_norm: bool = False,
) -> TaskNetwork:
    """The network of ``layout`` (a :class:`Layout` as a dict; None: shared, or a shared
    trunk with ``num_heads`` heads): ``forward(x [B, in_dim], c [B, cond_dim], head [B])
    -> [B, out_dim]``. ``num_heads`` is the number of tasks for the task-id layouts."""
    spec = Layout.from_dict(layout)
    hidden = list(hidden_dims)
    if not hidden:
        raise ConfigError("hidden_dims: at least one hidden layer is needed")
    common: dict[str, Any] = {"activation_name": activation_name, "layer_norm": layer_norm}
    if spec.kind in ("shared", "heads"):
        return ConditionedMLP(
            in_dim,
            cond_dim,
            hidden,
            out_dim,
            conditioning=conditioning,
            num_heads=num_heads,
            **common,
        )
    if conditioning != "concat":
        raise ConfigError(f"conditioning {conditioning}: only the shared and heads layouts take it")
    if spec.kind in SIGNAL_LAYOUTS and cond_dim == 0:
        raise ConfigError(f"layout {spec.kind}: its task parts read the task signal; set one")
    if spec.kind in TASK_ID_LAYOUTS and num_heads < 2:
        raise ConfigError(f"layout {spec.kind}: needs data of several tasks")
    if spec.kind == "independent":
        return IndependentMLP(num_heads, in_dim + cond_dim, hidden, out_dim, **common)
    if spec.kind in ("task_encoders", "task_encoder", "care") and spec.encoder_layers >= len(
        hidden
    ):
        raise ConfigError(
            f"layout_options.encoder_layers: {spec.encoder_layers} of {len(hidden)} hidden "
            "layers leaves no shared trunk"
        )
    if spec.kind == "task_encoders":
        return TaskEncodersMLP(
            num_heads, in_dim + cond_dim, hidden, out_dim, spec.encoder_layers, **common
        )
    if spec.kind == "task_encoder":
        return TaskEncoderMLP(
            in_dim, cond_dim, hidden, out_dim, spec.encoder_layers, spec.context_dim, **common
        )
    if spec.kind == "care":
        return CARE(
            in_dim,
            cond_dim,
            hidden,
            out_dim,
            experts=spec.experts,
            encoder_layers=spec.encoder_layers,
            context_dim=spec.context_dim,
            **common,
        )
    return SoftModularNetwork(
        in_dim,
        cond_dim,
        hidden,
        out_dim,
        modules=spec.modules,
        module_dim=spec.module_dim,
        **common,
    )


class IndependentMLP(TaskNetwork):
    """One MLP per task over ``[x, c]``, every task's rows in one batched matmul per layer.

    Task ``t``'s network is ``layers[i].weight[t]`` (``[in, out]``) and its biases; its
    outputs equal those of an :class:`~gcrl.models.mlp.MLP` holding the transposed weights.
    Returns ``[B, out_dim]``.
    """

    def __init__(
        self,
        num_tasks: int,
        in_dim: int,
        hidden_dims: list[int],
        out_dim: int,
        *,
        activation_name: str = "gelu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = num_tasks
        self.out_dim = out_dim
        self.stack = GroupedStack(num_tasks, in_dim, hidden_dims, activation_name, layer_norm)
        self.head = GroupedLinear(num_tasks, self.stack.width, out_dim)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, head: torch.Tensor | None = None
    ) -> torch.Tensor:
        groups = _groups(head, self.num_heads)
        block = groups.pack(torch.cat([x, c], dim=-1))
        return groups.unpack(self.head(self.stack(block)))

    def task_specific_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def last_shared_layer(self) -> nn.Linear | None:
        return None

    def output_layer(self) -> nn.Module:
        return self.head


class TaskEncodersMLP(TaskNetwork):
    """A per-task encoder (the first ``encoder_layers`` hidden layers, grouped) over
    ``[x, c]``, then a shared trunk and output layer. Returns ``[B, out_dim]``."""

    def __init__(
        self,
        num_tasks: int,
        in_dim: int,
        hidden_dims: list[int],
        out_dim: int,
        encoder_layers: int,
        *,
        activation_name: str = "gelu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = num_tasks
        self.out_dim = out_dim
        self.encoders = GroupedStack(
            num_tasks, in_dim, hidden_dims[:encoder_layers], activation_name, layer_norm
        )
        self.trunk = MLP(
            self.encoders.width,
            hidden_dims[encoder_layers:],
            out_dim,
            activation_name=activation_name,
            layer_norm=layer_norm,
        )

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, head: torch.Tensor | None = None
    ) -> torch.Tensor:
        groups = _groups(head, self.num_heads)
        encoded = groups.unpack(self.encoders(groups.pack(torch.cat([x, c], dim=-1))))
        return self.trunk(encoded)

    def task_specific_parameters(self) -> list[nn.Parameter]:
        return list(self.encoders.parameters())

    def last_shared_layer(self) -> nn.Linear | None:
        return self.trunk.last_linear()

    def output_layer(self) -> nn.Module:
        return self.trunk.output_layer()


class TaskEncoderMLP(TaskNetwork):
    """A shared state encoder over ``x`` (the first ``encoder_layers`` hidden layers) and a
    task encoder over ``c`` (one hidden layer, output ``context_dim``), concatenated into a
    shared trunk. Returns ``[B, out_dim]``."""

    def __init__(
        self,
        in_dim: int,
        cond_dim: int,
        hidden_dims: list[int],
        out_dim: int,
        encoder_layers: int,
        context_dim: int,
        *,
        activation_name: str = "gelu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = 1
        self.out_dim = out_dim
        encoder_dims = hidden_dims[:encoder_layers]
        self.state_encoder = MLP(
            in_dim,
            encoder_dims[:-1],
            encoder_dims[-1],
            activation_name=activation_name,
            layer_norm=layer_norm,
        )
        self.task_encoder = MLP(
            cond_dim, [context_dim], context_dim, activation_name=activation_name
        )
        self.act = activation(activation_name)
        self.trunk = MLP(
            encoder_dims[-1] + context_dim,
            hidden_dims[encoder_layers:],
            out_dim,
            activation_name=activation_name,
            layer_norm=layer_norm,
        )

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, head: torch.Tensor | None = None
    ) -> torch.Tensor:
        state = self.act(self.state_encoder(x))
        return self.trunk(torch.cat([state, self.task_encoder(c)], dim=-1))

    def last_shared_layer(self) -> nn.Linear | None:
        return self.trunk.last_linear()

    def output_layer(self) -> nn.Module:
        return self.trunk.output_layer()


def _groups(task_ids: torch.Tensor | None, num_tasks: int) -> TaskGroups:
    if task_ids is None:
        raise ConfigError("a network with parts per task: task ids are needed")
    return TaskGroups(task_ids, num_tasks)


__all__ = [
    "LAYOUTS",
    "IndependentMLP",
    "Layout",
    "TaskEncoderMLP",
    "TaskEncodersMLP",
    "conditioned_network",
]
