"""The one Lightning adapter: :class:`AgentModule` trains any :class:`~gcrl.algorithms.Agent`.

It owns what Lightning needs and no algorithm should: the update paths
(:mod:`gcrl.learner.updates`: automatic, eager manual, compiled, PCGrad / GradNorm, several
updates per batch), the loss logging (:mod:`gcrl.learner.metrics`), validation, and the
checkpoint's metadata. The agent's networks are registered as the module's own children, so
a checkpoint's ``state_dict`` keys are the agent's (``actor.net...``) and
:func:`gcrl.load_policy` loads them into a rebuilt agent without Lightning.

>>> from gcrl.algorithms import BC                                  # doctest: +SKIP
>>> trainer.fit(AgentModule(BC(spec=datamodule.spec)), datamodule)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch

from gcrl.algorithms.agent import Agent
from gcrl.errors import ConfigError
from gcrl.learner.updates import UpdatePaths
from gcrl.spec import CHECKPOINT_KEY
from gcrl.training.batch import Batch


def class_path(cls: type) -> str:
    """``module.Class``, as checkpoints and configs name a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


class AgentModule(UpdatePaths):
    """A LightningModule training ``agent``.

    Reading an attribute the module does not have reads the agent's (``module.actor``,
    ``module.losses(batch)``, ``module.spec``), so callbacks and scripts written against an
    algorithm keep working; :attr:`agent` is the agent itself. The hyperparameters (and a
    checkpoint's ``hyper_parameters``) are the agent's :attr:`~gcrl.algorithms.Agent.config`.
    """

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        if not isinstance(agent, Agent):
            raise ConfigError(f"model: {type(agent).__name__} is not a gcrl agent (Agent subclass)")
        if next(agent.buffers(recurse=False), None) is not None:
            raise ConfigError(
                f"{type(agent).__name__}: keep buffers in submodules; moving the adapter to a "
                "device replaces a buffer set on the agent itself only on the adapter"
            )
        for name, child in agent.named_children():
            self.add_module(name, child)
        for name, parameter in agent.named_parameters(recurse=False):  # QRL's log_lam
            self.register_parameter(name, parameter)
        object.__setattr__(self, "agent", agent)  # not a child: its children are ours
        self.compile_step = agent.compile_step
        self._compiled: Any = None
        self._whole_step: Any = None  # the compiled update (gcrl.learner.compiled)
        self._training_objective: tuple[str, ...] | None = None  # set at each update
        self._updates_per_batch = 1  # the data module's, read when fitting starts
        self._multitask: Any = None
        self._multitask_state: dict[str, Any] | None = None  # from a checkpoint
        # Manual optimisation (PCGrad, GradNorm, compiled steps, several updates per batch)
        # is switched on in configure_optimizers: after Lightning's check that refuses
        # trainer.gradient_clip_val under manual optimisation (the module applies it itself).
        self.automatic_optimization = True
        self.save_hyperparameters(agent.config)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            agent = self.__dict__.get("agent")
            if agent is None:
                raise
            return getattr(agent, name)

    def train(self, mode: bool = True) -> AgentModule:
        super().train(mode)
        self.agent.training = mode
        return self

    def on_fit_start(self) -> None:
        """Refuse data the agent cannot learn from before training on it."""
        datamodule = getattr(self._trainer, "datamodule", None)
        self.agent.check_training_data(str(getattr(datamodule, "relabel", "none")))

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.agent.all_losses(batch)
        self.log_losses("val/", losses, batch)
        return self.agent.objective_value(losses)

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.agent.all_losses(batch)
        self.log_losses("test/", losses, batch)
        return self.agent.objective_value(losses)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "algorithm": class_path(type(self.agent)),
            "spec": self.agent.spec.to_dict(),
            "networks_version": self.agent.networks_version,
        }
        if self._multitask is not None:  # PCGrad's generator, GradNorm's task weights
            checkpoint[CHECKPOINT_KEY]["multitask"] = self._multitask.state_dict()
        # Losses that draw noise (TD3's target smoothing) take it from torch's generators: a
        # resumed run continues their streams.
        checkpoint[CHECKPOINT_KEY]["torch_rng"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint[CHECKPOINT_KEY]["torch_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the multi-task optimiser's state for when it is built (at the first step),
        and continue torch's random streams where the checkpoint left them."""
        meta = checkpoint.get(CHECKPOINT_KEY, {})
        self._multitask_state = meta.get("multitask")
        rng = meta.get("torch_rng") or {}
        if "cpu" in rng:
            torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


__all__ = ["AgentModule", "class_path"]
