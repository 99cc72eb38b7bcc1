"""The plain-torch agent every algorithm is: the input spec, the task signal, the network
factory, per-sample losses, parameter groups, target updates and acting. No Lightning: the
one Lightning adapter (:class:`gcrl.learner.AgentModule`) trains any agent, and
:func:`gcrl.load_policy` rebuilds one from a checkpoint to act.

An algorithm is a subclass in its own module: it declares the goal sets its losses read
(:attr:`Agent.goal_sets`), the losses whose means it minimises (:attr:`Agent.objective`),
what its batches must hold (:attr:`Agent.data_needs`), optionally its parameter groups
(:meth:`Agent.parameter_groups`: learning rate and update interval per group), builds its
networks with :meth:`Agent.network_factory` and implements :meth:`Agent.losses` (a plain
function of a :class:`gcrl.training.Batch`) and its acting (an :attr:`Agent.acting_rule`, or
:meth:`Agent.act_on` / :meth:`Agent.act` of its own).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from gcrl.algorithms.groups import ParameterGroup
from gcrl.algorithms.records import Acting, constructor_arguments
from gcrl.errors import ConfigError
from gcrl.models.encoders import ImageEncoder
from gcrl.models.factory import NetworkFactory
from gcrl.models.layouts import TASK_ID_LAYOUTS, Layout
from gcrl.models.mlp import TaskNetwork, layer_norm_before_activation, norm_before_activation
from gcrl.models.policies import act_by_rule
from gcrl.spec import NETWORKS_VERSION, NORM_BEFORE_ACTIVATION_UNTIL, InputSpec
from gcrl.tasks.signals import (
    SIGNALS,
    EmbeddingSignal,
    TextSignal,
    build_signal,
    task_vectors,
)
from gcrl.training.batch import Batch
from gcrl.training.needs import DataNeeds

#: Options of gcrl 0.1 that its checkpoints hold and that still load (see Agent).
LEGACY_OPTIONS = ("compile_losses", "gradient_clip_val")
#: Multi-task optimisers selectable with ``optim``.
OPTIMS = ("none", "pcgrad", "gradnorm")


class Agent(nn.Module):
    """Base class of the algorithms (not used directly): plain torch, trained by
    :class:`gcrl.learner.AgentModule` and rebuilt by :func:`gcrl.load_policy` from its
    :attr:`config`.

    Args:
        spec: the input spec of the data (an :class:`~gcrl.spec.InputSpec`, or its
            :meth:`~gcrl.spec.InputSpec.to_dict`); ``gcrl fit`` links it from the data module.
        task_signal: one of ``auto`` (goal when the data has goals, onehot when it has
            several tasks, else none), ``none``, ``onehot``, ``embedding``, ``goal``, ``text``.
        task_embedding_dim: width of the ``embedding`` signal.
        goal_encoder_dims: hidden widths (last = output) of an MLP over goals; none by default.
        text_model: sentence-transformers model of the ``text`` signal (name or local path).
        text_dim: set when restoring; the embeddings then come from the checkpoint.
        conditioning: ``concat`` or ``film`` (FiLM: the ``shared`` and ``heads`` layouts).
        layout: how every network divides into shared and task-specific parts
            (:mod:`gcrl.models.layouts`): ``shared`` (default), ``heads`` (a shared trunk with
            a head per task), ``independent`` (one network per task, vectorised),
            ``task_encoders`` (per-task encoders, shared trunk), ``task_encoder`` (shared
            state encoder and task encoder), ``care`` (CARE's metadata-weighted mixture of
            encoders) or ``soft_modular`` (soft modularization's routed modules).
        layout_options: the layout's options: ``encoder_layers`` (1), ``context_dim`` (64),
            ``experts`` (4), ``modules`` (4), ``module_dim`` (0: the first hidden width over
            ``modules``); see :class:`gcrl.models.layouts.Layout`.
        multi_head: the ``heads`` layout (kept for configs of gcrl 0.1).
        learning_rate: Adam's learning rate (of the parameter groups that set none).
        dynamics_weight: above 0, a hidden-parameter dynamics model (HiP-MDP) is trained
            beside the algorithm's losses, weighted by this: ``T(s, a, theta_task)`` predicts
            the state change and the reward, with ``theta`` the ``embedding`` signal's task
            vectors, so the tasks' vectors come to encode how their dynamics differ, and a new
            task's vector can be inferred from a few of its transitions
            (:mod:`gcrl.models.dynamics`). Needs ``task_signal: embedding`` and a layout
            without parts per task id (a new task has no id).
        dynamics_reward_weight: the reward term's weight beside the state change's (1; the
            rewards are as stored, not standardised: lower it for large rewards). Must be 0
            when the data module relabels goals, whose rewards the model cannot see.
        dynamics_hidden_dims: the dynamics model's hidden widths (256, 256).
        optim: how the adapter steps the shared parameters: ``none``, ``pcgrad`` (gradient
            surgery over the shared parameters; the layout's per-task parts keep their own
            task's gradient) or ``gradnorm`` (learned task weights, norms at the last shared
            layer: the policy's, or the first value network's, last shared hidden layer);
            both take every task's gradient from one backward pass (:mod:`gcrl.optim`).
        gradnorm_alpha: GradNorm's restoring factor (1.5).
        image_encoder: with camera-image states (``spec.images``: OGBench's ``visual-*``
            data), the encoder every network reads their features from
            (:mod:`gcrl.models.encoders`): ``impala_small`` (OGBench's visual default),
            ``impala`` or ``conv``. One encoder at the agent's input, trained by the whole
            objective; ignored for state data.
        image_features: the image encoder's output width (OGBench: 512).
        share_goal_encoder: image goals go through the observation's encoder (true) or an
            encoder of their own (false).
        compile_step: run the whole update (gradient, clipping, Adam, target networks) as
            one function compiled by ``torch.compile`` (:mod:`gcrl.learner.compiled`; on
            CUDA in ``reduce-overhead`` mode, CUDA graphs); with ``optim`` or several
            parameter groups, only the losses are compiled. None (default): on for CUDA, off
            elsewhere: on one CPU core it is 1.3 to 1.4 times as fast at batch 256 / 2 x 256
            and no faster at 1024 / 3 x 512 (``benchmarks/train.py``), and the first step
            compiles for 10 to 60 s. Validation and acting stay eager.
        **legacy: options of gcrl 0.1 that its checkpoints hold: ``compile_losses`` (now
            ``compile_step``) and ``gradient_clip_val`` (now only ``trainer.gradient_clip_val``,
            which under manual optimisation, with ``optim``, ``compile_step`` or
            ``updates_per_batch``, the adapter applies itself).
    """

    #: The per-sample losses whose means are summed into the training objective.
    objective: ClassVar[tuple[str, ...]] = ()
    #: The goal sets of a batch (``Batch.goals``) the losses read.
    goal_sets: ClassVar[tuple[str, ...]] = ()
    #: What the batches must hold beyond them (value goals, subgoal sets): the data module reads it.
    data_needs: DataNeeds = DataNeeds()
    #: Whether the losses read ``Batch.next_observations`` (image inputs then encode them).
    reads_next_observations: ClassVar[bool] = True
    #: How the algorithm acts, one of :data:`gcrl.models.policies.ACTING_RULES` (see
    #: :func:`~gcrl.models.policies.act_by_rule`), which the default :meth:`act_on` follows;
    #: None: the subclass writes its own ``act_on`` (or ``act``).
    acting_rule: ClassVar[str | None] = None
    #: The attributes holding the networks that act (``Policy`` or ``ValueEnsemble``), in the
    #: order the rule takes them.
    acting_networks: ClassVar[tuple[str, ...]] = ("actor",)

    def __init__(
        self,
        spec: InputSpec | Mapping[str, Any] | None = None,
        task_signal: str = "auto",
        task_embedding_dim: int = 32,
        goal_encoder_dims: list[int] | None = None,
        text_model: str = "all-MiniLM-L6-v2",
        text_dim: int | None = None,
        conditioning: str = "concat",
        multi_head: bool = False,
        layout: str = "shared",
        layout_options: dict[str, int] | None = None,
        learning_rate: float = 3e-4,
        dynamics_weight: float = 0.0,
        dynamics_reward_weight: float = 1.0,
        dynamics_hidden_dims: list[int] | None = None,
        optim: str = "none",
        gradnorm_alpha: float = 1.5,
        compile_step: bool | None = None,
        image_encoder: str = "impala_small",
        image_features: int = 512,
        share_goal_encoder: bool = True,
        **legacy: Any,
    ) -> None:
        super().__init__()
        #: The arguments that rebuild this agent (see :attr:`config`).
        self._arguments = constructor_arguments(self, Agent)
        #: The networks version its networks are built as (:func:`networks_of_version`).
        self.networks_version = (
            NORM_BEFORE_ACTIVATION_UNTIL if norm_before_activation() else NETWORKS_VERSION
        )
        if spec is None:
            raise ConfigError(
                "spec: the data's shapes are needed; `gcrl fit` links them from the data module, "
                "or pass TrajectoryDataModule(...).spec"
            )
        self.spec = spec if isinstance(spec, InputSpec) else InputSpec.from_dict(spec)
        self.num_tasks = self.spec.num_tasks
        self.learning_rate = learning_rate
        #: The names of the parameter groups the current update steps (:meth:`begin_update`).
        self.active_groups: frozenset[str] = frozenset({"all"})
        unknown = sorted(set(legacy) - set(LEGACY_OPTIONS))
        if unknown:
            raise ConfigError(f"{unknown[0]}: not an option of {type(self).__name__}")
        self.compile_step: bool | None = True if legacy.get("compile_losses") else compile_step
        if optim not in OPTIMS:
            raise ConfigError(f"optim: unknown {optim!r}; choose one of {', '.join(OPTIMS)}")
        self.optim = optim
        self.gradnorm_alpha = gradnorm_alpha
        self.gradient_clip_val: float | None = legacy.get("gradient_clip_val")
        self.conditioning = conditioning
        if multi_head and layout not in ("shared", "heads"):
            raise ConfigError(f"multi_head: is the heads layout; it cannot go with {layout}")
        parsed = Layout.parse("heads" if multi_head else layout, layout_options)
        if parsed.kind in TASK_ID_LAYOUTS and self.num_tasks < 2:
            raise ConfigError(
                f"layout {parsed.kind}: parts per task need data of several tasks "
                f"(this data holds {self.num_tasks})"
            )
        #: The networks' layout (plain data, as network configs record it).
        self.layout: dict[str, Any] = parsed.to_dict()
        #: Task-id copies in the task-specific layouts (task ids then select them), else 1.
        self.num_heads = self.num_tasks if parsed.uses_task_ids else 1
        self.task_signal = self._signal_kind(task_signal)
        self._build_image_encoders(image_encoder, image_features, share_goal_encoder)
        self.signal = build_signal(
            self.task_signal,
            self.num_tasks,
            self.goal_dim,
            [(task.name, task.text) for task in self.spec.tasks],
            task_embedding_dim,
            goal_encoder_dims,
            text_model,
            text_dim,
        )
        self.hip_dynamics: Any = None
        if dynamics_weight < 0:
            raise ConfigError(f"dynamics_weight: must be 0 (off) or more, got {dynamics_weight}")
        if dynamics_weight > 0:
            if not isinstance(self.signal, EmbeddingSignal):
                raise ConfigError(
                    "dynamics_weight: the dynamics model's task parameters are the embedding "
                    "signal's vectors; use task_signal embedding"
                )
            if parsed.uses_task_ids:
                raise ConfigError(
                    f"dynamics_weight: the {parsed.kind} layout picks parts by task id, which "
                    "a task inferred from its transitions does not have; use another layout"
                )
            from gcrl.models.dynamics import HiddenParameterDynamics

            self.hip_dynamics = HiddenParameterDynamics(
                self.signal.table,
                self.observation_dim,
                self.spec.action_dim,
                [256, 256] if dynamics_hidden_dims is None else dynamics_hidden_dims,
                discrete=self.spec.discrete,
                weight=dynamics_weight,
                reward_weight=dynamics_reward_weight,
            )

    # ----------------------------------------------------------------- image inputs
    def _build_image_encoders(self, kind: str, features: int, share_goals: bool) -> None:
        """The image encoders of camera-image inputs (none for state data)."""
        self.observation_encoder: ImageEncoder | None = None
        self.goal_encoder: ImageEncoder | None = None
        shape = self.spec.image_shape
        if shape is None:
            return
        factory = NetworkFactory(type(self).__name__, 0)
        self.observation_encoder = factory.image_encoder(kind, shape, features)
        if self.spec.goal_image and not share_goals:
            self.goal_encoder = factory.image_encoder(kind, shape, features)

    @property
    def observation_dim(self) -> int:
        """The width of the state the networks read: the image encoder's features, else the
        spec's flat state."""
        encoder = self.observation_encoder
        return self.spec.observation_dim if encoder is None else encoder.features

    @property
    def goal_dim(self) -> int:
        """The width of the goals the task signal reads (image goals: their features)."""
        if not self.spec.goal_image:
            return self.spec.goal_dim
        return self.observation_dim

    def encode_inputs(
        self, observations: torch.Tensor, goals: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Observations and goals as the networks read them: image ones through their
        encoders, others as they are."""
        if self.observation_encoder is None:
            return observations, goals
        if goals is not None and self.spec.goal_image:
            if self.goal_encoder is None:  # shared: one pass over both
                both = {"observations": observations, "goals": goals}
                encoded = _encode_together(self.observation_encoder, both)
                return encoded["observations"], encoded["goals"]
            goals = self.goal_encoder(goals)
        return self.observation_encoder(observations), goals

    def encode(self, batch: Batch) -> Batch:
        """``batch`` with its image inputs replaced by their features: observations, next
        observations (when :attr:`reads_next_observations`), the goal sets of
        :attr:`goal_sets` and every subgoal state set; other fields as they are. Inputs of
        one encoder go through it in one pass."""
        if self.observation_encoder is None:
            return batch
        through_observation: dict[str, torch.Tensor] = {"observations": batch.observations}
        if self.reads_next_observations:
            through_observation["next_observations"] = batch.next_observations
        for name, states in batch.goal_states.items():
            through_observation[f"state:{name}"] = states
        through_goal: dict[str, torch.Tensor] = {}
        if self.spec.goal_image:
            chosen = [name for name in batch.goals if name in self.goal_sets]
            target = through_observation if self.goal_encoder is None else through_goal
            for name in chosen:
                target[f"goal:{name}"] = batch.goals[name]
        encoded = _encode_together(self.observation_encoder, through_observation)
        if through_goal:
            assert self.goal_encoder is not None
            encoded.update(_encode_together(self.goal_encoder, through_goal))
        goals = dict(batch.goals)
        goals.update({k[5:]: v for k, v in encoded.items() if k.startswith("goal:")})
        return dataclasses.replace(
            batch,
            observations=encoded["observations"],
            next_observations=encoded.get("next_observations", batch.next_observations),
            goals=goals,
            goal_states={k[6:]: v for k, v in encoded.items() if k.startswith("state:")},
        )

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this agent, as plain data (the spec as a
        dict; a text signal's width, so that rebuilding needs no language model): what a
        checkpoint's ``hyper_parameters`` hold."""
        config = dict(self._arguments)
        config["spec"] = self.spec.to_dict()
        if isinstance(self.signal, TextSignal):
            config["text_dim"] = self.signal.dim
        return config

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return next(self.parameters(), torch.zeros(0)).device

    # ----------------------------------------------------------------- task signal
    def _signal_kind(self, task_signal: str) -> str:
        if task_signal == "auto":
            if self.spec.goal_dim:
                return "goal"
            return "onehot" if self.num_tasks > 1 else "none"
        if task_signal not in SIGNALS:
            raise ConfigError(
                f"task_signal: unknown {task_signal!r}; choose auto or one of {', '.join(SIGNALS)}"
            )
        if task_signal == "goal" and not self.spec.goal_dim:
            raise ConfigError("task_signal goal: the data has no goals")
        return task_signal

    def check_training_data(self, relabel: str) -> None:
        """Refuse, before training, data the agent cannot learn from: a task signal that would
        be a constant, or dynamics rewards under relabeled goals (``relabel``: the data
        module's mode). Checked when fitting starts, not when building: checkpoints of gcrl
        0.1.0 trained such models and still load."""
        hip = self.hip_dynamics
        if hip is not None and hip.reward_weight > 0 and relabel != "none":
            raise ConfigError(
                f"dynamics_reward_weight: the data module relabels goals ({relabel}), so the "
                "rewards depend on goals the dynamics model does not see; set it to 0"
            )
        kind = self._arguments.get("task_signal", "auto")
        if kind in ("onehot", "embedding", "text") and self.num_tasks < 2:
            raise ConfigError(
                f"task_signal {kind}: the data holds {self.num_tasks} task, so the signal "
                "would be a constant; use goal (goal-conditioned data) or none"
            )

    def condition(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        text_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The task vector of each sample, ``[B, signal dim]``, from its goal, task id or
        instruction embedding (whichever the signal takes)."""
        return task_vectors(self.signal, observations, goals, task_ids, text_embeddings)

    def batch_condition(self, batch: Batch, goal_set: str) -> torch.Tensor:
        """:meth:`condition` of a batch, with the goals of ``goal_set``."""
        goals = batch.goal(goal_set) if self.signal.uses_goals else None
        return self.condition(batch.observations, goals, batch.task_ids)

    def heads(self, batch: Batch) -> torch.Tensor | None:
        """Task ids selecting the output heads (None with a single head)."""
        return self.head_ids(batch.task_ids)

    def head_ids(self, task_ids: torch.Tensor | None) -> torch.Tensor | None:
        """``task_ids`` when the networks have one head per task, else None."""
        return task_ids if self.num_heads > 1 else None

    def network_factory(
        self, hidden_dims: Sequence[int] | None = None, activation: str = "gelu"
    ) -> NetworkFactory:
        """The factory of this algorithm's networks: its task signal's width, layout, heads
        and conditioning, with ``hidden_dims`` (None: the factory's default) and
        ``activation``."""
        return NetworkFactory(
            type(self).__name__,
            self.signal.dim,
            self.layout,
            self.num_heads,
            self.conditioning,
            activation,
            hidden_dims,
        )

    # ----------------------------------------------------------------- losses and updates
    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-sample losses by name (``actor/loss``, ``critic/loss``...), each ``[B]``."""
        raise NotImplementedError

    def all_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """:meth:`losses` and, with a hidden-parameter dynamics model, its auxiliary losses
        (``hip/...``)."""
        batch = self.encode(batch)
        losses = self.losses(batch)
        if self.hip_dynamics is not None:
            losses.update(self.hip_dynamics.losses(batch))
        return losses

    @property
    def objective_names(self) -> tuple[str, ...]:
        """The losses summed into the objective: :attr:`objective` and the auxiliary ones."""
        return self.objective if self.hip_dynamics is None else (*self.objective, "hip/loss")

    def objective_value(
        self, losses: Mapping[str, torch.Tensor], names: Sequence[str] | None = None
    ) -> torch.Tensor:
        """The training objective: the sum of the means of the losses ``names`` (default:
        every objective loss, :attr:`objective_names`)."""
        chosen = self.objective_names if names is None else names
        return torch.stack([losses[name].mean() for name in chosen]).sum()

    def parameter_groups(self) -> tuple[ParameterGroup, ...]:
        """The parameters each loss trains, with their learning rates and update intervals
        (:class:`~gcrl.algorithms.groups.ParameterGroup`): by default one group of every
        parameter, trained by the whole objective at ``learning_rate`` on every step."""
        return (ParameterGroup("all", self.objective_names),)

    def begin_update(self, step: int) -> tuple[str, ...]:
        """Start optimiser step ``step`` (counted from 0): set :attr:`active_groups` to the
        groups it updates, and return the losses of its objective (theirs)."""
        active = [g for g in self.parameter_groups() if g.active(step)]
        self.active_groups = frozenset(g.name for g in active)
        names = {loss for g in active for loss in g.losses}
        return tuple(n for n in self.objective_names if n in names)

    def update_targets(self) -> None:
        """Update target networks after each optimiser step (none by default)."""

    def task_specific_parameters(self) -> list[nn.Parameter]:
        """The parameters of the layout's per-task parts (PCGrad leaves their gradients)."""
        return [
            p
            for m in self.modules()
            if isinstance(m, TaskNetwork)
            for p in m.task_specific_parameters()
        ]

    def last_shared_layer(self) -> nn.Linear:
        """The layer whose gradient norms GradNorm balances: the policy's (or, without one,
        the first value network's) last shared Linear layer (the last hidden layer of a
        shared MLP)."""
        actor = getattr(self, "actor", None)
        net = getattr(actor, "net", None)
        if not isinstance(net, TaskNetwork):
            net = next(m for m in self.modules() if isinstance(m, TaskNetwork))
        layer = net.last_shared_layer()
        if layer is None:
            raise ConfigError(
                f"optim gradnorm: the {self.layout['kind']} layout shares no layer whose "
                "gradient norms GradNorm could balance"
            )
        return layer

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def act(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        *,
        text_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Greedy actions for network inputs: flat standardised states ``[B, observation
        dim]`` and goals ``[B, goal dim]``, task ids ``[B]`` or instruction embeddings, as the
        task signal needs. By default the task vector is computed once and passed to
        :meth:`act_on`; an algorithm that conditions otherwise (a two-level policy picking a
        subgoal first) overrides this method instead."""
        observations, goals = self.encode_inputs(observations, goals)
        condition = self.condition(observations, goals, task_ids, text_embeddings)
        return self.act_on(observations, condition, self.head_ids(task_ids))

    def act_on(
        self, observations: torch.Tensor, condition: torch.Tensor, heads: torch.Tensor | None
    ) -> torch.Tensor:
        """Greedy actions given the task vector ``[B, signal dim]`` and head ids: by default
        as :attr:`acting_rule` says, with the :attr:`acting_networks`
        (:func:`gcrl.models.policies.act_by_rule`)."""
        if self.acting_rule is None:
            raise NotImplementedError(f"{type(self).__name__}: no acting_rule and no act_on")
        networks = [getattr(self, name) for name in self.acting_networks]
        return act_by_rule(self.acting_rule, networks, observations, condition, heads)

    def policies(self) -> dict[str | None, Acting]:
        """The agent's policies by name: ``None`` is its own (:meth:`act`); an algorithm with
        others adds them (Distral's distilled ``prior``), which
        ``gcrl.load_policy(checkpoint, policy=NAME)`` picks."""
        return {None: Acting(self.act, self.signal, self.num_heads)}


def networks_of_version(version: int) -> contextlib.AbstractContextManager[None]:
    """A context in which agents build their networks as networks version ``version`` built
    them (hidden layers' LayerNorm before the activation up to version 2), so that a
    checkpoint's weights compute what they were trained to:
    ``with networks_of_version(v): agent = cls(**hparams)``."""
    if version <= NORM_BEFORE_ACTIVATION_UNTIL:
        return layer_norm_before_activation()
    return contextlib.nullcontext()


def _encode_together(
    encoder: nn.Module, inputs: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``encoder`` of every input, run once over all of them; by the same names."""
    names = list(inputs)
    features = encoder(torch.cat([inputs[n] for n in names]))
    sizes = [len(inputs[n]) for n in names]
    return dict(zip(names, features.split(sizes), strict=True))
