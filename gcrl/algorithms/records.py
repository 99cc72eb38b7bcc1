"""What rebuilds and calls an agent: the constructor arguments it records (its ``config``,
which checkpoints hold) and :class:`Acting`, one of its policies."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gcrl.tasks.signals import TaskSignal


@dataclass(frozen=True)
class Acting:
    """One policy of an agent, as :class:`gcrl.policy.LoadedPolicy` calls it.

    Attributes:
        act: ``act(observations, goals, task_ids, *, text_embeddings)`` on network inputs,
            returning actions ``[B, action dim]`` (``[B]`` indices for discrete actions).
        signal: the task signal it reads (what the caller must give: goals, ids, texts).
        num_heads: its task-id copies (above 1, task ids are needed).
    """

    act: Callable[..., torch.Tensor]
    signal: TaskSignal
    num_heads: int


def constructor_arguments(agent: nn.Module, base: type) -> dict[str, Any]:
    """The keyword arguments that rebuild ``agent``, read while its ``__init__`` chain runs
    (as Lightning's ``save_hyperparameters`` reads them): those of the outermost
    ``__init__`` (its ``**kwargs`` flattened), then the defaults of the base class (the options
    every algorithm forwards to it: ``base``'s)."""
    frame = inspect.currentframe()
    outer = None
    caller = frame.f_back if frame is not None else None
    while caller is not None and caller.f_code.co_name == "__init__":
        if caller.f_locals.get("self") is not agent:
            break
        outer, caller = caller, caller.f_back
    out: dict[str, Any] = {}
    if outer is not None:
        info = inspect.getargvalues(outer)
        out.update({name: info.locals[name] for name in info.args[1:]})
        if info.keywords:
            out.update(info.locals[info.keywords])
    base_init = vars(base)["__init__"]  # its own, not a subclass's
    for name, parameter in inspect.signature(base_init).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            out.setdefault(name, parameter.default)
    return out
