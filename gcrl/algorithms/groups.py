"""Parameter groups: which parameters an algorithm's losses train, at which learning rate,
and how often (TD3's delayed actor: every second update)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from gcrl.errors import ConfigError


@dataclass(frozen=True)
class ParameterGroup:
    """Parameters trained by some of the losses.

    Attributes:
        name: the group's name (``actor``, ``critic``); Adam's param group records it.
        losses: the per-sample losses whose means train it (summed into the objective on
            the updates where the group is active).
        modules: the attribute names of the modules it holds; None: every trainable
            parameter no other group holds (the task signal's, a dynamics model's).
        lr: its Adam learning rate (None: the algorithm's ``learning_rate``).
        every: it is updated on every ``every``-th optimiser step, the steps ``k`` with
            ``(k + 1) % every == 0`` (1: every step); on the others its losses are left out
            of the objective, its parameters get no gradient and Adam leaves them as they are.
    """

    name: str
    losses: tuple[str, ...]
    modules: tuple[str, ...] | None = None
    lr: float | None = None
    every: int = 1

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"{self.name}: update interval must be at least 1, got {self.every}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"{self.name}: learning rate must be above 0, got {self.lr}")

    def active(self, step: int) -> bool:
        """Whether the group is updated at optimiser step ``step`` (counted from 0)."""
        return (step + 1) % self.every == 0


def group_parameters(
    model: nn.Module, groups: Sequence[ParameterGroup]
) -> list[list[nn.Parameter]]:
    """The trainable parameters of each group of ``model``, in order; a parameter held by
    two groups, or by none when no group takes the rest, is a :class:`ConfigError`."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    taken: dict[int, str] = {}
    out: list[list[nn.Parameter]] = []
    for group in groups:
        if group.modules is None:
            out.append([])
            continue
        params = []
        for attr in group.modules:
            for p in getattr(model, attr).parameters():
                if not p.requires_grad:
                    continue
                if id(p) in taken:
                    raise ConfigError(f"{group.name}: {attr} is already in {taken[id(p)]}")
                taken[id(p)] = group.name
                params.append(p)
        out.append(params)
    rest = [p for p in trainable if id(p) not in taken]
    catch_all = [i for i, g in enumerate(groups) if g.modules is None]
    if len(catch_all) > 1:
        raise ConfigError("parameter groups: only one group may take the rest (modules None)")
    if catch_all:
        out[catch_all[0]] = rest
    elif rest:
        raise ConfigError(f"parameter groups: {len(rest)} parameters are in no group")
    return out


__all__ = ["ParameterGroup", "group_parameters"]
