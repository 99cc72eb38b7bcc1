"""What every algorithm shares: the input spec, the task signal, the network factory,
checkpoint metadata and acting; the update paths and parameter groups
(:mod:`gcrl.algorithms.updates`) and the loss logging (:mod:`gcrl.algorithms.metrics`) are
its two parts.

An algorithm is a subclass in its own module: it declares the goal sets its losses read
(:attr:`GCRLModule.goal_sets`) and the losses whose means it minimises
(:attr:`GCRLModule.objective`), optionally its parameter groups
(:meth:`GCRLModule.parameter_groups`: learning rate and update interval per group), builds its
networks with :meth:`GCRLModule.network_factory` and implements :meth:`GCRLModule.losses` (a
plain function of a :class:`gcrl.training.Batch`) and :meth:`GCRLModule.act` (raw goals in,
actions out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from gcrl.algorithms.updates import UpdatePaths
from gcrl.errors import ConfigError
from gcrl.models.factory import NetworkFactory
from gcrl.models.layouts import TASK_ID_LAYOUTS, Layout
from gcrl.models.policies import act_by_rule
from gcrl.spec import CHECKPOINT_KEY, NETWORKS_VERSION, InputSpec
from gcrl.tasks.signals import (
    SIGNALS,
    EmbeddingSignal,
    GoalSignal,
    NoSignal,
    OneHotSignal,
    TaskSignal,
    TextSignal,
    task_vectors,
)
from gcrl.training.batch import Batch
from gcrl.training.needs import DataNeeds

#: Options of gcrl 0.1 that its checkpoints hold and that still load (see GCRLModule).
LEGACY_OPTIONS = ("compile_losses", "gradient_clip_val")
#: Multi-task optimisers selectable with ``optim``.
OPTIMS = ("none", "pcgrad", "gradnorm")


class GCRLModule(UpdatePaths):
    """Base class of the algorithms (not used directly).

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
        learning_rate: Adam's learning rate.
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
        optim: ``none``, ``pcgrad`` (gradient surgery over the shared parameters; the layout's
            per-task parts keep their own task's gradient) or ``gradnorm`` (learned task
            weights, norms at the last shared layer: the policy's, or the first value
            network's, last shared hidden layer);
            both take every task's gradient from one backward pass (:mod:`gcrl.optim`) and run
            under Lightning's manual optimisation.
        gradnorm_alpha: GradNorm's restoring factor (1.5).
        compile_step: run the whole update (gradient, clipping, Adam, target networks) as
            one function compiled by ``torch.compile`` (:mod:`gcrl.algorithms.compiled`; on
            CUDA in ``reduce-overhead`` mode, CUDA graphs); with ``optim``, only the losses
            are compiled. None (default): on for CUDA, off elsewhere: on one CPU core it is
            1.3 to 1.4 times as fast at batch 256 / 2 x 256 and no faster at 1024 / 3 x 512
            (``benchmarks/train.py``), and the first step compiles for 10 to 60 s.
            Validation and acting stay eager.
        **legacy: options of gcrl 0.1 that its checkpoints hold: ``compile_losses`` (now
            ``compile_step``) and ``gradient_clip_val`` (now only ``trainer.gradient_clip_val``,
            which under manual optimisation, with ``optim``, ``compile_step`` or
            ``updates_per_batch``, the model applies itself).
    """

    #: The per-sample losses whose means are summed into the training objective.
    objective: ClassVar[tuple[str, ...]] = ()
    #: The goal sets of a batch (``Batch.goals``) the losses read.
    goal_sets: ClassVar[tuple[str, ...]] = ()
    #: What the batches must hold beyond them (value goals, subgoal sets): the data module reads it.
    data_needs: DataNeeds = DataNeeds()
    #: How the algorithm acts, one of :data:`gcrl.models.policies.ACTING_RULES` (see
    #: :func:`~gcrl.models.policies.act_by_rule`): the default :meth:`act_on` follows it, and
    #: :func:`gcrl.load_policy` rebuilds the acting parts by it without the algorithm's class
    #: (nor Lightning). None: the subclass writes its own ``act_on``, and acting needs the class.
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
        **legacy: Any,
    ) -> None:
        super().__init__()
        if spec is None:
            raise ConfigError(
                "spec: the data's shapes are needed; `gcrl fit` links them from the data module, "
                "or pass TrajectoryDataModule(...).spec"
            )
        self.spec = spec if isinstance(spec, InputSpec) else InputSpec.from_dict(spec)
        self.num_tasks = self.spec.num_tasks
        self.learning_rate = learning_rate
        self._compiled: Any = None
        self.active_groups: frozenset[str] = frozenset({"all"})
        self._training_objective: tuple[str, ...] | None = None  # set at each update
        self._whole_step: Any = None  # the compiled update (gcrl.algorithms.compiled)
        self._updates_per_batch = 1  # the data module's, read when fitting starts
        unknown = sorted(set(legacy) - set(LEGACY_OPTIONS))
        if unknown:
            raise ConfigError(f"{unknown[0]}: not an option of {type(self).__name__}")
        self.compile_step: bool | None = True if legacy.get("compile_losses") else compile_step
        if optim not in OPTIMS:
            raise ConfigError(f"optim: unknown {optim!r}; choose one of {', '.join(OPTIMS)}")
        self.optim = optim
        self.gradnorm_alpha = gradnorm_alpha
        self.gradient_clip_val: float | None = legacy.get("gradient_clip_val")
        # Manual optimisation (PCGrad, GradNorm, compiled steps, several updates per batch)
        # is switched on in configure_optimizers: after Lightning's check that refuses
        # trainer.gradient_clip_val under manual optimisation (the model applies it itself).
        self.automatic_optimization = True
        self._multitask: Any = None
        self._multitask_state: dict[str, Any] | None = None  # from a checkpoint
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
        kind = self._signal_kind(task_signal)
        self.signal = self._build_signal(
            kind, task_embedding_dim, goal_encoder_dims, text_model, text_dim
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
                self.spec.observation_dim,
                self.spec.action_dim,
                [256, 256] if dynamics_hidden_dims is None else dynamics_hidden_dims,
                discrete=self.spec.discrete,
                weight=dynamics_weight,
                reward_weight=dynamics_reward_weight,
            )
        self.save_hyperparameters(ignore=["spec"])
        self.hparams["spec"] = self.spec.to_dict()  # plain data: checkpoints load weights_only
        if isinstance(self.signal, TextSignal):
            self.hparams["text_dim"] = self.signal.dim  # restoring needs no language model

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

    def on_fit_start(self) -> None:
        """Refuse a task signal that cannot apply before training on it (checked here, not
        when building: checkpoints of gcrl 0.1.0 trained such models and still load)."""
        datamodule = getattr(self._trainer, "datamodule", None)
        relabel = getattr(datamodule, "relabel", "none")
        hip = self.hip_dynamics
        if hip is not None and hip.reward_weight > 0 and relabel != "none":
            raise ConfigError(
                f"dynamics_reward_weight: the data module relabels goals ({relabel}), so the "
                "rewards depend on goals the dynamics model does not see; set it to 0"
            )
        kind = self.hparams.get("task_signal", "auto")
        if kind in ("onehot", "embedding", "text") and self.num_tasks < 2:
            raise ConfigError(
                f"task_signal {kind}: the data holds {self.num_tasks} task, so the signal "
                "would be a constant; use goal (goal-conditioned data) or none"
            )

    def _build_signal(
        self,
        kind: str,
        embedding_dim: int,
        goal_encoder_dims: list[int] | None,
        text_model: str,
        text_dim: int | None,
    ) -> TaskSignal:
        if kind == "none":
            return NoSignal()
        if kind == "onehot":
            return OneHotSignal(self.num_tasks)
        if kind == "embedding":
            return EmbeddingSignal(self.num_tasks, embedding_dim)
        if kind == "goal":
            return GoalSignal(self.spec.goal_dim, goal_encoder_dims)
        if text_dim is not None:
            return TextSignal(text_model, num_tasks=self.num_tasks, dim=text_dim)
        from gcrl.tasks.text import TextEmbedder

        untexted = [task.name for task in self.spec.tasks if not task.text]
        if untexted:
            raise ConfigError(
                f"task_signal text: tasks {untexted} have no text to embed; give the dataset "
                "task texts (gcrl convert --task NAME --task-text TEXT) or use onehot"
            )
        texts = [task.text for task in self.spec.tasks]
        vectors = TextEmbedder(text_model).embed(texts)
        return TextSignal(text_model, torch.from_numpy(vectors))

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

    # ----------------------------------------------------------------- training
    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.all_losses(batch)
        self.log_losses("val/", losses, batch)
        return self.objective_value(losses)

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.all_losses(batch)
        self.log_losses("test/", losses, batch)
        return self.objective_value(losses)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-sample losses by name (``actor/loss``, ``critic/loss``...), each ``[B]``."""
        raise NotImplementedError

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
        condition = self.condition(observations, goals, task_ids, text_embeddings)
        return self.act_on(observations, condition, self.head_ids(task_ids))

    def act_on(
        self, observations: torch.Tensor, condition: torch.Tensor, heads: torch.Tensor | None
    ) -> torch.Tensor:
        """Greedy actions given the task vector ``[B, signal dim]`` and head ids: by default
        as :attr:`acting_rule` says, with the :attr:`acting_networks`
        (:func:`gcrl.models.policies.act_by_rule`, which :func:`gcrl.load_policy` uses too)."""
        if self.acting_rule is None:
            raise NotImplementedError(f"{type(self).__name__}: no acting_rule and no act_on")
        networks = [getattr(self, name) for name in self.acting_networks]
        return act_by_rule(self.acting_rule, networks, observations, condition, heads)

    def acting_record(self) -> dict[str, Any] | None:
        """What rebuilds the acting parts from a checkpoint (plain data: the rule, the acting
        network's and the task signal's class names and constructor arguments, the number of
        heads); None when this class acts in a way :attr:`acting_rule` does not describe (a
        subclass that overrides ``act`` or ``act_on`` below the class declaring the rule)."""
        for cls in type(self).__mro__:
            if "acting_rule" in vars(cls):
                break
            if "act" in vars(cls) or "act_on" in vars(cls):
                return None
        if self.acting_rule is None:
            return None
        networks = {}
        for name in self.acting_networks:
            network = getattr(self, name)
            networks[name] = {"class": type(network).__name__, "config": network.config}
        return {
            "rule": self.acting_rule,
            "networks": networks,
            "signal_class": type(self.signal).__name__,
            "signal_config": self.signal.config,
            "num_heads": self.num_heads,
        }

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cls = type(self)
        checkpoint[CHECKPOINT_KEY] = {
            "algorithm": f"{cls.__module__}.{cls.__qualname__}",
            "spec": self.spec.to_dict(),
            "networks_version": NETWORKS_VERSION,
        }
        acting = self.acting_record()
        if acting is not None:
            checkpoint[CHECKPOINT_KEY]["acting"] = acting
        if self._multitask is not None:  # PCGrad's generator, GradNorm's task weights
            checkpoint[CHECKPOINT_KEY]["multitask"] = self._multitask.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the multi-task optimiser's state for when it is built (at the first step)."""
        self._multitask_state = checkpoint.get(CHECKPOINT_KEY, {}).get("multitask")
