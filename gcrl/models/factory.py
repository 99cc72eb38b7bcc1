"""One factory for every network of an algorithm: the task signal's width, the layout and
the head count are applied the same way to actors, Q and V ensembles and the unconditioned
encoders of bilinear critics (CRL), so no algorithm assembles them by hand.

Each algorithm builds its networks through :class:`NetworkFactory` (``Agent.network_factory``);
a layout that cannot apply to a network (one that reads no task vector under a layout whose
task parts come from the task vector) is a one-line :class:`~gcrl.errors.ConfigError` naming
the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gcrl.errors import ConfigError
from gcrl.models.critics import ValueEnsemble
from gcrl.models.encoders import ImageEncoder, image_encoder
from gcrl.models.layouts import LAYOUTS, SIGNAL_LAYOUTS, Layout
from gcrl.models.policies import Policy

#: The hidden widths of every network unless an algorithm or config says otherwise
#: (OGBench's agents' default).
DEFAULT_HIDDEN_DIMS = (512, 512, 512)


@dataclass(frozen=True)
class NetworkFactory:
    """Builds an algorithm's networks with one conditioning.

    Attributes:
        owner: the algorithm's name, for error messages.
        cond_dim: width of the task vector (the task signal's output).
        layout: the :class:`~gcrl.models.layouts.Layout` as a dict (as networks record it).
        num_heads: task-id copies for the layouts with parts per task id (else 1).
        conditioning: ``concat`` or ``film``.
        activation: the hidden layers' activation.
        hidden_dims: the algorithm's ``hidden_dims`` option (None: :data:`DEFAULT_HIDDEN_DIMS`).
    """

    owner: str
    cond_dim: int
    layout: dict[str, Any] = field(default_factory=lambda: Layout().to_dict())
    num_heads: int = 1
    conditioning: str = "concat"
    activation: str = "gelu"
    hidden_dims: Sequence[int] | None = None

    @property
    def kind(self) -> str:
        """The layout's name."""
        return str(self.layout["kind"])

    def dims(self, override: Sequence[int] | None = None) -> list[int]:
        """``override`` (a per-network option) when given, else the algorithm's widths."""
        chosen = override or self.hidden_dims or DEFAULT_HIDDEN_DIMS
        return [int(d) for d in chosen]

    def require(self, *kinds: str, reason: str) -> None:
        """Refuse the layout unless it is one of ``kinds``, saying ``reason``."""
        if self.kind not in kinds:
            raise ConfigError(
                f"{self.owner}: {reason}, so the {self.kind} layout cannot apply; "
                f"use {' or '.join(kinds)}"
            )

    def policy(
        self,
        kind: str,
        obs_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int] | None = None,
        *,
        cond_dim: int | None = None,
        const_std: bool = True,
        layer_norm: bool = False,
    ) -> Policy:
        """``pi(a | s, c)`` of ``kind`` (gaussian, deterministic, categorical) in the layout;
        ``cond_dim`` replaces the task vector's width (a subgoal representation)."""
        return Policy(
            kind,
            obs_dim,
            self.cond_dim if cond_dim is None else cond_dim,
            action_dim,
            self.dims(hidden_dims),
            const_std=const_std,
            conditioning=self.conditioning,
            num_heads=self.num_heads,
            layout=self.layout,
            activation_name=self.activation,
            layer_norm=layer_norm,
        )

    def values(
        self,
        size: int,
        in_dim: int,
        hidden_dims: Sequence[int] | None = None,
        out_dim: int = 1,
        *,
        layer_norm: bool = True,
    ) -> ValueEnsemble:
        """``size`` conditioned value networks (``V(s, c)``, ``Q(s, c, a)`` with the action in
        ``in_dim``, or ``out_dim`` discrete Q-values), each in the layout."""
        return ValueEnsemble(
            size,
            in_dim,
            self.cond_dim,
            self.dims(hidden_dims),
            out_dim,
            conditioning=self.conditioning,
            num_heads=self.num_heads,
            layout=self.layout,
            activation_name=self.activation,
            layer_norm=layer_norm,
        )

    def encoders(
        self,
        size: int,
        in_dim: int,
        out_dim: int,
        hidden_dims: Sequence[int] | None = None,
        *,
        layer_norm: bool = True,
        name: str = "encoder",
    ) -> ValueEnsemble:
        """``size`` encoders of ``in_dim`` inputs into ``out_dim`` values that read no task
        vector (a bilinear critic's ``phi(s, a)`` and ``psi(g)``): per task in the task-id
        layouts; the layouts whose task parts read the task vector cannot apply."""
        readable = [k for k in LAYOUTS if k not in SIGNAL_LAYOUTS]
        self.require(*readable, reason=f"its {name} reads no task vector")
        return ValueEnsemble(
            size,
            in_dim,
            0,
            self.dims(hidden_dims),
            out_dim,
            num_heads=self.num_heads,
            layout=self.layout,
            activation_name=self.activation,
            layer_norm=layer_norm,
        )

    def image_encoder(self, kind: str, image_shape: Sequence[int], features: int) -> ImageEncoder:
        """An image encoder (:mod:`gcrl.models.encoders`: ``impala``, ``impala_small``,
        ``conv``) of images of ``image_shape`` into ``features`` values. It reads no task
        vector and is one network for every task, whatever the layout: the layout divides the
        networks that read its features."""
        return image_encoder(kind, image_shape, features)


def parameter_count(module: Any) -> int:
    """The number of trainable values of ``module`` (a ``torch.nn.Module``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["DEFAULT_HIDDEN_DIMS", "NetworkFactory", "parameter_count"]
