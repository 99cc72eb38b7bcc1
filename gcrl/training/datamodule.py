"""Trajectories for Lightning: whole relabeled batches drawn by :mod:`gcrl.relabel`.

No per-item ``__getitem__`` plus collate: each step draws a batch of indices at once and
relabels it with the numpy samplers. The bulky columns (flat observations, next observations,
actions) are held as tensors on the training device when they fit (:class:`DeviceData`) and
gathered there by row; only the row numbers and the small relabeled columns (goals, rewards,
masks, task ids) cross to the device each step. Otherwise the numpy batch becomes tensors
(``torch.from_numpy``, no copy) that Lightning moves to the device. Either way a step gets a
:class:`~gcrl.training.batch.Batch`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from gcrl.datasets.frames import stack_frames
from gcrl.datasets.loading import load
from gcrl.datasets.mapped import memory_mapped
from gcrl.datasets.summary import episodes_description
from gcrl.datasets.trajectories import DESIRED_GOAL, Trajectories
from gcrl.errors import ConfigError, DatasetNotFoundError, GcrlError
from gcrl.relabel import GoalMixture, GoalReward, GoalSampler, RowSampler, Subgoal
from gcrl.relabel.instructions import (
    InstructionRelabel,
    hindsight_table,
    with_hindsight_tasks,
)
from gcrl.relabel.offline import read_goal_references
from gcrl.relabel.pipeline import BatchSampler, BatchStep, KeepStoredGoals, Pipeline
from gcrl.relabel.references import ReferenceSampler
from gcrl.relabel.rewards import recorded_tolerance
from gcrl.relabel.sharing import SharingConfig
from gcrl.spec import InputSpec
from gcrl.training.augment import ImageShift, random_shift
from gcrl.training.batch import Batch, DeviceData, action_tensor, float_tensor, input_tensor
from gcrl.training.needs import DataNeeds
from gcrl.training.sharing import TaskScores

#: ``ogbench``: OGBench's value/actor goal mixtures and reward (index equality on s, -1/0).
#: ``her``: HER future goals (``her_k`` per kept one), success within ``tolerance`` on s'.
#: ``none``: stored goals and rewards. ``auto``: ``none`` for a file ``gcrl relabel`` wrote
#: (its hindsight copies are already relabeled), else ``ogbench`` for goal-conditioned data
#: (dict observations holding ``goal_key``, or array observations with ``goal_dims``), else
#: ``none``; the choice and its reason are printed when the data module is built.
RELABEL_MODES = ("auto", "ogbench", "her", "none")
#: The goal sets every batch carries (with ``none``, both are the stored goal).
GOAL_SETS = ("value", "actor")
#: ``auto``: keep the data on the device when it takes at most :data:`DEVICE_SHARE` of the
#: device's free memory (always on CPU); ``always`` / ``never``.
DEVICE_DATA_MODES = ("auto", "always", "never")
DEVICE_SHARE = 0.5


def goal_sets(
    relabel: str,
    her_k: int,
    value_goals: Mapping[str, float] | None = None,
    extra: Mapping[str, Subgoal] | None = None,
) -> dict[str, GoalMixture | Subgoal | str]:
    """The goal sets a relabel mode draws (``value`` carries the rewards); ``value_goals``
    replaces the weights of OGBench's value mixture (its geometric part keeps discount 0.99,
    clipped to the episode's last state); ``extra`` adds an algorithm's subgoal sets
    (:class:`gcrl.training.needs.DataNeeds`)."""
    sets: dict[str, GoalMixture | Subgoal | str]
    if relabel == "ogbench":
        value = GoalMixture.ogbench_value()
        if value_goals is not None:
            value = GoalMixture(dict(value_goals), value.gamma, value.truncation)
        sets = {"value": value, "actor": GoalMixture.ogbench_actor()}
    else:
        sets = {"value": GoalMixture.her(her_k), "actor": "value"}
    sets.update(extra or {})
    return sets


class TrajectoryDataModule(L.LightningDataModule):
    """Batches of ``batch_size`` transitions from ``path`` (any supported format).

    Args:
        path: the dataset.
        batch_size: transitions per batch.
        relabel: goal relabeling: ``auto`` (default: ``none`` for a file ``gcrl relabel``
            wrote, else ``ogbench`` for goal-conditioned data, else ``none``), ``ogbench``
            (OGBench's value and actor goal mixtures, -1/0 rewards by index equality on s),
            ``her`` (HER future goals, 0/1 rewards within ``tolerance`` on s') or ``none``
            (the stored goals and rewards).
        observation_keys: dict observations: the keys concatenated into the state input
            (default ``["observation"]``).
        goal_key: dict observations: the achieved-goal key goals are drawn from.
        goal_dims: array observations: the dimensions forming the goal (default: all, as
            OGBench does); a goal-free dataset needs neither.
        her_k: ``her`` mode: hindsight goals per row kept with its stored goal (HER's k, 4).
        tolerance: ``her`` mode: a goal is reached when the achieved goal of s' lies within
            this distance of it (default: the radius the dataset records, ``success_radius``
            or ``tolerance``, else 0.5; :func:`gcrl.relabel.rewards.recorded_tolerance`).
        value_goals: ``ogbench`` mode: the value goals' mixture weights by strategy, over
            the algorithm's own (its ``data_needs``: CRL ``{geometric: 1.0}``, QRL
            ``{random: 1.0}``; else OGBench's ``{current: 0.2, geometric: 0.5, random:
            0.3}``).
        task_sharing: share rows with other tasks of a multi-task dataset inside each batch:
            ``none``, ``random``, ``high-reward``, ``zero-reward``, ``conservative``
            (:mod:`gcrl.relabel.sharing`); composes with every ``relabel`` mode (shared rows
            keep their stored goal and take the target task's reward).
        task_relabel_ratio: share of each batch tried for sharing (default 0.5 with a
            ``task_sharing`` mode; a ratio without a mode means ``random``).
        task_reward_fn: ``MODULE:NAME`` of a function ``(observations, actions,
            next_observations) -> [n, tasks]`` giving every row's reward under every task
            (default: the ``infos/task_rewards`` column).
        sharing_top_k: the ``high-reward`` rule (set exactly one of the three,
            :class:`gcrl.relabel.TaskSelection`): the k tasks of highest return.
        sharing_percentile: the ``high-reward`` rule: tasks whose return is at least this
            percentile of their returns (Generalized Hindsight).
        sharing_temperature: the ``high-reward`` rule: tasks drawn by a softmax of returns at
            this temperature (HIPI).
        conservative_percentile: ``conservative`` keeps a share when the current critic's
            score of it under the target task is at least this percentile of that task's own
            rows' scores.
        conservative_refresh: ``conservative``: the thresholds are recomputed every this
            many steps (nothing is shared before the first).
        instruction_relabel_ratio: share of each batch tried for hindsight instructions:
            rows of episodes that accomplished another task take that task, with its reward
            (:mod:`gcrl.relabel.instructions`; the hindsight tasks join the task table).
        hindsight_fn: ``MODULE:NAME`` of the function computing the hindsight tasks, needed
            with ``instruction_relabel_ratio`` (BabyAI GoTo missions:
            ``gcrl.envs.babyai:hindsight_instructions``, which the BabyAI configs name).
        normalize: standardise observations and goals by the dataset's per-dimension mean
            and standard deviation (stored in the spec, so checkpoints and
            :func:`gcrl.load_policy` apply the same); rewards and relabeling see raw values.
        device_data: hold observations and actions on the training device and gather
            batches there: ``auto`` (when they take at most half its free memory; always on
            CPU), ``always`` or ``never``.
        val_fraction: share of episodes held out for validation (by episodes, seeded).
        updates_per_batch: optimiser steps per Lightning step: each batch holds this many
            batches of ``batch_size`` rows, drawn at once, and the model steps on each in
            turn (Lightning's per-step hooks then run once for all of them; logs stay
            labelled by optimiser step). Training switches to manual optimisation, so
            ``trainer.gradient_clip_val`` is applied by the model (norm clipping only);
            ``every_n_train_steps`` of a checkpoint callback should be a multiple of it.
        steps_per_epoch: batches per training epoch (the data is sampled, so an epoch is
            only a unit of logging and validation).
        val_batches: batches per validation run (with ``val_fraction``).
        seed: all sampling is drawn from generators seeded by it (and the rank).
        data_command: the command that makes the file at ``path`` (the shipped configs name
            theirs): a missing file's error says to run it.
        memory_map: train on a native file larger than memory: its columns are memory-mapped
            (:func:`gcrl.datasets.mapped.memory_mapped`, which writes an uncompressed cache
            once), batches read only their rows, and nothing copies the whole dataset:
            ``device_data`` becomes ``never``; ``val_fraction`` and hindsight instructions,
            which copy it, are refused.
        memory_map_dir: where ``memory_map`` keeps its cache (default:
            ``$XDG_CACHE_HOME/gcrl/mapped``).
        image_shift_probability: camera-image data: the probability that a training batch
            is augmented by random shifts (:mod:`gcrl.training.augment`; OGBench's
            ``p_aug``, 0.5 in its visual configurations); 0 (default) never shifts, and
            validation batches never are.
        image_shift_padding: the largest shift, in pixels (OGBench: 3).
        frame_stack: camera-image data: each state is its last this many frames, stacked along
            channels (:func:`gcrl.datasets.frames.stack_frames`: never across an episode's
            start; goals drawn from states are stacks too, as in OGBench). Held in memory
            stacked (``frame_stack`` times the images' bytes); evaluation keeps the frames.
    """

    def __init__(
        self,
        path: str,
        batch_size: int = 1024,
        relabel: str = "auto",
        observation_keys: list[str] | None = None,
        goal_key: str = "achieved_goal",
        goal_dims: list[int] | None = None,
        her_k: int = 4,
        tolerance: float | None = None,
        value_goals: dict[str, float] | None = None,
        task_sharing: str = "none",
        task_relabel_ratio: float | None = None,
        task_reward_fn: str | None = None,
        sharing_top_k: int | None = None,
        sharing_percentile: float | None = None,
        sharing_temperature: float | None = None,
        conservative_percentile: float = 50.0,
        conservative_refresh: int = 1000,
        instruction_relabel_ratio: float = 0.0,
        hindsight_fn: str | None = None,
        normalize: bool = False,
        device_data: str = "auto",
        val_fraction: float = 0.0,
        updates_per_batch: int = 1,
        steps_per_epoch: int = 1000,
        val_batches: int = 8,
        seed: int = 0,
        data_command: str | None = None,
        memory_map: bool = False,
        memory_map_dir: str | None = None,
        image_shift_probability: float = 0.0,
        image_shift_padding: int = 3,
        frame_stack: int = 1,
    ) -> None:
        super().__init__()
        if relabel not in RELABEL_MODES:
            raise ConfigError(f"relabel: unknown {relabel!r}; choose one of {RELABEL_MODES}")
        if device_data not in DEVICE_DATA_MODES:
            raise ConfigError(
                f"device_data: unknown {device_data!r}; choose one of {DEVICE_DATA_MODES}"
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction: must lie in [0, 1), got {val_fraction}")
        if updates_per_batch < 1:
            raise ConfigError(f"updates_per_batch: must be at least 1, got {updates_per_batch}")
        self.save_hyperparameters()
        self.path = path
        self.batch_size = batch_size
        self.observation_keys = observation_keys or ["observation"]
        self.goal_key = goal_key
        self.goal_dims = goal_dims
        self.her_k = her_k
        self.value_goals = value_goals
        self.tolerance = tolerance
        self._tolerance_source = "given"
        self.device_data = device_data
        self.val_fraction = val_fraction
        self.updates_per_batch = updates_per_batch
        self.steps_per_epoch = steps_per_epoch
        self.val_batches = val_batches
        self.seed = seed
        if memory_map:
            for name, value in (
                ("val_fraction", val_fraction),
                ("instruction_relabel_ratio", instruction_relabel_ratio),
            ):
                if value:
                    raise ConfigError(
                        f"memory_map: {name} must be 0 with a memory-mapped dataset (it copies "
                        f"the data), got {value}"
                    )
            self.device_data = "never"
        try:
            self.data = memory_mapped(path, memory_map_dir) if memory_map else load(path)
        except DatasetNotFoundError as err:
            if data_command is None:
                raise
            raise DatasetNotFoundError(f"{err}; make it with `{data_command}`") from None
        if frame_stack != 1:
            if memory_map:
                raise ConfigError("frame_stack: stacks are held in memory; not with memory_map")
            try:
                self.data = stack_frames(self.data, frame_stack)
            except GcrlError as err:
                raise err.with_source(path) from None
        if tolerance is None:
            self.tolerance, self._tolerance_source = recorded_tolerance(self.data.attrs)
        self.instruction_relabel_ratio = instruction_relabel_ratio
        if instruction_relabel_ratio:
            self.data = with_hindsight_tasks(self.data, hindsight_fn)
            # Built here once so that a bad ratio fails now, not when the first batch is drawn.
            table = InstructionRelabel(hindsight_table(self.data), instruction_relabel_ratio)
            rank_zero_info(
                f"data: hindsight instructions from {hindsight_fn}: "
                f"{table.hindsight.relabelable.mean():.1%} of rows have one; "
                f"{instruction_relabel_ratio:.0%} of each batch tried"
            )
        observations = self.data.observations
        is_dict = isinstance(observations, dict)
        self.relabel, reason = self._choose_relabel(relabel, goal_dims)
        #: Image data relabeled by ``gcrl relabel``: its copies, by reference.
        self.references = read_goal_references(path, self.data.num_transitions)
        if self.references is not None:
            if self.relabel != "none":
                rank_zero_info(
                    f"data: note: relabel {self.relabel} draws goals anew; the file's "
                    f"{len(self.references):,} goal references are not used"
                )
                self.references = None
            elif val_fraction:
                raise ConfigError(
                    f"val_fraction: {path} holds goal references to its rows, which a split "
                    "by episodes would break; use 0"
                )
            else:
                reason = f"{reason}; {len(self.references):,} goal references (image copies)"
        within = (
            f", goals reached within {self.tolerance} ({self._tolerance_source})"
            if self.relabel == "her"
            else ""
        )
        rank_zero_info(
            f"data: {path}: {self.data.num_transitions:,} transitions in "
            f"{episodes_description(self.data)}; relabel {self.relabel} ({reason}){within}"
        )
        if self.relabel != "none" and is_dict and self.goal_key not in observations:
            raise ConfigError(f"relabel {self.relabel}: {path} holds no goals (goal_key/dims)")
        try:
            self.spec = InputSpec.from_data(
                self.data,
                observation_keys=self.observation_keys,
                goal_key=goal_key,
                goal_dims=goal_dims,
                goals=self.relabel != "none" or self.references is not None,
                normalize=normalize,
            )
        except GcrlError as err:
            raise err.with_source(path) from None
        if frame_stack != 1:
            if not self.spec.images:
                raise ConfigError(f"frame_stack: {path} holds no camera images to stack")
            self.spec = replace(self.spec, frame_stack=frame_stack)
        self.image_shift: ImageShift | None = None
        if image_shift_probability:
            if not self.spec.images:
                raise ConfigError(
                    f"image_shift_probability: {path} holds no camera images to shift"
                )
            self.image_shift = ImageShift(image_shift_probability, image_shift_padding)
        self.sharing = SharingConfig.build(
            task_sharing,
            ratio=task_relabel_ratio,
            reward_fn=task_reward_fn,
            top_k=sharing_top_k,
            percentile=sharing_percentile,
            temperature=sharing_temperature,
            conservative_percentile=conservative_percentile,
            conservative_refresh=conservative_refresh,
        )
        if self.sharing is not None:
            self.sharing.check(self.data, path)
            rank_zero_info(f"data: task sharing {self.sharing.describe()}")
        self.train_data: Trajectories = self.data
        self.val_data: Trajectories | None = None
        self._device_data: dict[tuple[int, torch.device], DeviceData] = {}
        #: Conservative sharing: each dataset's scores (by ``id``), refreshed as it is drawn.
        self._task_scores: dict[int, TaskScores] = {}
        self._told: set[str] = set()  # the goal-need lines already logged
        #: The algorithm's data needs, when set by hand (see :meth:`algorithm_needs`).
        self.needs: DataNeeds | None = None

    def _choose_relabel(self, relabel: str, goal_dims: list[int] | None) -> tuple[str, str]:
        """The relabel mode to use and why (``auto`` decided from the data)."""
        written_by = self.data.attrs.get("relabel_strategy")
        if relabel != "auto":
            if written_by is not None and relabel != "none":
                rank_zero_info(
                    f"data: note: {self.path} was written by gcrl relabel ({written_by}); "
                    f"relabel {relabel} relabels its copies a second time"
                )
            return relabel, "as configured"
        if written_by is not None:
            return "none", f"auto: {self.path} was written by gcrl relabel ({written_by})"
        observations = self.data.observations
        if isinstance(observations, dict):
            if self.goal_key in observations:
                return "ogbench", f"auto: the observations hold {self.goal_key!r}"
            return "none", f"auto: the observations hold no {self.goal_key!r}"
        if goal_dims is not None:
            return "ogbench", "auto: goal_dims is set"
        return "none", "auto: array observations without goal_dims"

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        """Split episodes into training and validation data (seeded, by episodes)."""
        if self.val_fraction > 0 and self.val_data is None and self.data.num_episodes > 1:
            rng = np.random.default_rng(self.seed)
            order = rng.permutation(self.data.num_episodes)
            held_out = max(1, round(self.val_fraction * self.data.num_episodes))
            self.val_data = self.data.select_episodes(np.sort(order[:held_out]))
            self.train_data = self.data.select_episodes(np.sort(order[held_out:]))

    def train_dataloader(self) -> BatchStream:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        # Each rank draws its own indices; epochs continue the same stream.
        rng = np.random.default_rng([self.seed, rank])
        data = self.train_data
        store = self.on_device(data)
        return BatchStream(
            self, data, self.steps_per_epoch, rng, store, self.updates_per_batch, augment=True
        )

    def val_dataloader(self) -> FixedBatches:
        if self.val_data is None:
            return FixedBatches([])
        rng = np.random.default_rng([self.seed, 1 << 20])  # the same batches every time
        stream = BatchStream(
            self, self.val_data, self.val_batches, rng, self.on_device(self.val_data)
        )
        return FixedBatches(list(stream))

    def test_dataloader(self) -> FixedBatches:
        return self.val_dataloader()

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        return batch.to(device) if isinstance(batch, Batch) else batch

    # ----------------------------------------------------------------- batches
    @property
    def device(self) -> torch.device:
        """The training device: the trainer's, else CPU."""
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def on_device(self, data: Trajectories) -> DeviceData | None:
        """``data``'s observations and actions on :attr:`device` (built once), or None when
        ``device_data`` or the memory rule says to gather batches in numpy."""
        device = self.device
        key = (id(data), device)
        if key in self._device_data:
            return self._device_data[key]
        if self.device_data == "never" or (
            # The flat state then holds relabeled goals, which only the numpy batch has.
            self.relabel != "none" and DESIRED_GOAL in self.observation_keys
        ):
            return None
        if self.device_data == "auto" and device.type == "cuda":
            # Two state columns of the spec's width (float32, or uint8 images), the actions.
            per_value = 1 if self.spec.images else 4
            size = 2 * per_value * data.num_transitions * self.spec.observation_dim
            size += data.actions.nbytes
            free, _ = torch.cuda.mem_get_info(device)
            if size > DEVICE_SHARE * free:
                return None
        spec = self.spec
        states = (spec.state(data.observations), spec.state(data.next_observations))
        store = DeviceData(*states, data.actions, spec, device)
        self._device_data[key] = store
        return store

    def sampler(
        self, data: Trajectories, rng: np.random.Generator, needs: DataNeeds | None = None
    ) -> Pipeline:
        """The numpy pipeline for ``data`` (:mod:`gcrl.relabel.pipeline`): a
        :class:`GoalSampler` or :class:`RowSampler`, then hindsight instructions and task
        sharing when they are set. ``needs``: the algorithm's (default: those of the model
        the trainer fits, see :meth:`algorithm_needs`)."""
        value_goals, extra = self._goal_needs(self.algorithm_needs() if needs is None else needs)
        base: BatchSampler
        if self.references is not None:
            base = ReferenceSampler(data, self.references, rng)
        elif self.relabel in ("ogbench", "her"):
            base = GoalSampler(
                data,
                goal_key=self.goal_key,
                goal_dims=None if isinstance(data.observations, dict) else self.goal_dims,
                goal_sets=goal_sets(self.relabel, self.her_k, value_goals, extra),
                reward=GoalReward.ogbench()
                if self.relabel == "ogbench"
                else GoalReward(self.tolerance),
                seed=rng,
            )
        else:
            base = RowSampler(data, rng)
        steps: list[BatchStep] = []
        if self.instruction_relabel_ratio:
            steps.append(InstructionRelabel(hindsight_table(data), self.instruction_relabel_ratio))
        if self.sharing is not None:
            scores = self.task_scores_of(data) if self.conservative else None
            steps.append(self.sharing.sharing(data, self.path, scores))
            stored_goals = self._stored_goals(data)
            if stored_goals is not None:
                steps.append(KeepStoredGoals(stored_goals))
        return Pipeline(base, steps, rng)

    def algorithm_needs(self) -> DataNeeds:
        """:attr:`needs` when set (to draw an algorithm's batches outside ``gcrl fit``:
        ``dm.needs = model.data_needs``), else those of the model the trainer fits, else
        none."""
        if self.needs is not None:
            return self.needs
        model = getattr(self.trainer, "lightning_module", None) if self.trainer else None
        needs = getattr(model, "data_needs", None)
        return needs if isinstance(needs, DataNeeds) else DataNeeds()

    def _goal_needs(
        self, needs: DataNeeds
    ) -> tuple[Mapping[str, float] | None, dict[str, Subgoal]]:
        """The value mixture and extra goal sets to draw: the algorithm's ``needs``, with this
        module's ``value_goals`` over its mixture (a one-line error when its subgoals cannot
        be drawn)."""
        extra = dict(needs.goal_sets)
        if extra and self.relabel not in ("ogbench", "her"):
            raise ConfigError(
                f"relabel {self.relabel}: the algorithm reads subgoals ({', '.join(extra)}), "
                "which are drawn with goals; use relabel ogbench"
            )
        value_goals = self.value_goals or needs.value_goals
        lines = [f"data: goal set {name}: {goal.steps} steps ahead" for name, goal in extra.items()]
        if value_goals is not None and self.relabel == "ogbench":
            source = "data.value_goals" if self.value_goals else "the algorithm's"
            lines.insert(0, f"data: value goals {dict(value_goals)} ({source})")
        for line in lines:  # once each: the training and validation samplers share them
            if line not in self._told:
                self._told.add(line)
                rank_zero_info(line)
        return value_goals, extra

    @property
    def conservative(self) -> bool:
        """Whether shares are filtered by the critic's scores (``task_sharing:
        conservative``)."""
        return self.sharing is not None and self.sharing.mode == "conservative"

    def task_scores_of(self, data: Trajectories) -> TaskScores:
        """The conservative scores of ``data``, one per dataset (the training and validation
        data keep their own), refreshed as the critic trains (see :class:`TaskScores`)."""
        assert self.sharing is not None
        scores = self._task_scores.get(id(data))
        if scores is None:
            scores = self._task_scores[id(data)] = TaskScores(
                self,
                data,
                self.sharing.conservative_percentile,
                self.sharing.refresh,
                seed=self.seed,
            )
        return scores

    def _stored_goals(self, data: Trajectories) -> np.ndarray | None:
        """The stored goals (``desired_goal``) shared rows keep under goal relabeling."""
        if self.relabel == "none" or not isinstance(data.observations, dict):
            return None
        return data.observations.get(DESIRED_GOAL)

    def to_batch(
        self,
        data: Trajectories,
        batch: dict[str, Any],
        store: DeviceData | None = None,
        updates: int = 1,
        shifts: np.ndarray | None = None,
    ) -> Batch:
        """The numpy batch as a :class:`Batch` (for ``updates`` optimiser steps); with a
        ``store``, observations and actions are gathered from it by ``rows`` (the numpy batch
        may lack them) and every tensor is on its device. ``shifts`` (``[B, 2]``, from
        :meth:`ImageShift.draw`) shift every image of each row, there."""
        spec = self.spec
        rows = batch["rows"]
        n = len(rows)
        source = batch.get("source_task_ids")
        small = {
            "rewards": float_tensor(batch["rewards"]),
            "masks": float_tensor(batch["masks"]),
            "task_ids": torch.from_numpy(
                np.asarray(batch["task_ids"], dtype=np.int64)
                if "task_ids" in batch
                else np.zeros(n, dtype=np.int64)
            ),
        }
        if source is not None:  # task sharing: each row's own task
            small["source_task_ids"] = torch.from_numpy(np.asarray(source, dtype=np.int64))
        goals: dict[str, torch.Tensor] = {}
        goal_states: dict[str, torch.Tensor] = {}
        if "value_goals" in batch:
            for name in [key.removesuffix("_goals") for key in batch if key.endswith("_goals")]:
                goals[name] = input_tensor(spec.network_goals(batch[f"{name}_goals"], n))
                if f"{name}_states" in batch:
                    goal_states[name] = input_tensor(spec.network_state(batch[f"{name}_states"]))
        elif spec.goal_dim:
            assert isinstance(data.observations, dict)
            stored = data.observations[DESIRED_GOAL].take(rows, axis=0)
            goals = dict.fromkeys(GOAL_SETS, input_tensor(spec.network_goals(stored, n)))
        if store is not None:
            observations, next_observations, actions = store.gather(rows)

            def move(t: torch.Tensor) -> torch.Tensor:
                return t.to(store.device, non_blocking=True)

            small = {k: move(v) for k, v in small.items()}
            goals = {k: move(v) for k, v in goals.items()}
            goal_states = {k: move(v) for k, v in goal_states.items()}
        else:
            observations = input_tensor(spec.network_state(batch["observations"]))
            next_observations = input_tensor(spec.network_state(batch["next_observations"]))
            actions = action_tensor(batch["actions"], spec.discrete)
        if shifts is not None:
            assert self.image_shift is not None and spec.image_shape is not None
            offsets, padding = torch.from_numpy(shifts), self.image_shift.padding

            def shift(t: torch.Tensor) -> torch.Tensor:
                return random_shift(t, spec.image_shape, offsets, padding)  # type: ignore[arg-type]

            observations, next_observations = shift(observations), shift(next_observations)
            if spec.goal_image:
                goals = {k: shift(v) for k, v in goals.items()}
            goal_states = {k: shift(v) for k, v in goal_states.items()}
        return Batch(
            observations=observations,
            actions=actions,
            next_observations=next_observations,
            goals=goals,
            goal_states=goal_states,
            updates=updates,
            **small,
        )


class BatchStream:
    """``steps`` batches from ``data`` per pass, drawn and relabeled a whole batch at a time
    (``updates`` batches of the module's ``batch_size`` in one draw, for as many optimiser
    steps).

    Resumable (Lightning's ``state_dict`` / ``load_state_dict`` of a training iterable): the
    state is the random generator's state before the first batch not yet trained on, and that
    batch's position in the epoch, so a run resumed from any checkpoint draws the batches an
    uninterrupted run draws. Lightning fetches one batch ahead of the one it trains on, so the
    stream keeps the generator's state before each batch of the current pass (and, with
    conservative sharing, the thresholds then and the keep decisions the batch drawn ahead
    was given, which a resumed run gives it again).
    """

    def __init__(
        self,
        module: TrajectoryDataModule,
        data: Trajectories,
        steps: int,
        rng: np.random.Generator,
        store: DeviceData | None = None,
        updates: int = 1,
        *,
        augment: bool = False,
    ) -> None:
        self.module = module
        self.data = data
        self.steps = steps
        self.updates = updates
        self.rng = rng
        #: The module's image shifts, when this stream augments (training batches only).
        self.image_shift = module.image_shift if augment else None
        self.numpy_sampler = module.sampler(data, rng)
        self.store = store
        self.scores = module.task_scores_of(data) if module.conservative else None
        #: Generator state (and conservative sharing's thresholds) before batch ``i`` of the
        #: current pass, for the last few ``i``.
        self._states: dict[int, dict[str, Any]] = {}
        #: Conservative sharing's keep decisions for batch ``i``, for the last few ``i``.
        self._decisions: dict[int, list[np.ndarray]] = {}
        self._start = 0  # position the next pass starts at (a resumed pass starts mid-epoch)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Batch]:
        gather = self.store is None
        start, self._start = self._start, 0
        self._states, self._decisions = {}, {}
        for position in range(start, self.steps):
            if self.scores is not None:
                self.scores.refresh_if_due()
            self._remember(position)
            rows = self.module.batch_size * self.updates  # every update's rows in one draw
            batch = self.numpy_sampler.sample(rows, gather=gather)
            if self.scores is not None:
                self._decisions[position] = self.scores.take_decisions()
                self._decisions.pop(position - 8, None)
            shifts = None if self.image_shift is None else self.image_shift.draw(rows, self.rng)
            yield self.module.to_batch(self.data, batch, self.store, self.updates, shifts)
        self._remember(self.steps)

    def _snapshot(self) -> dict[str, Any]:
        """The generator's state now (and conservative sharing's thresholds)."""
        state: dict[str, Any] = {"rng": dict(self.rng.bit_generator.state)}
        if self.scores is not None:
            state["scores"] = self.scores.state_dict()
        return state

    def _remember(self, position: int) -> None:
        self._states[position] = self._snapshot()
        self._states.pop(position - 8, None)

    def state_dict(self) -> dict[str, Any]:
        """Where to resume: the position in the epoch of the next batch to train on (the
        batches Lightning has processed in this epoch) and the generator state before it."""
        trainer = self.module.trainer
        position = max(self._states, default=0)  # without a trainer: all drawn were used
        if trainer is not None:
            # A _ProcessedTracker at run time (typed as its base class).
            current = trainer.fit_loop.epoch_loop.batch_progress.current
            position = int(getattr(current, "processed"))  # noqa: B009
        saved = self._states.get(position) or self._snapshot()
        state: dict[str, Any] = {"position": position % self.steps, **saved}
        if position in self._decisions:  # drawn ahead: scored by the critic of a step before
            state["decisions"] = [d.tolist() for d in self._decisions[position]]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next pass draws the rest of the epoch."""
        self.rng.bit_generator.state = state["rng"]
        self._start = int(state["position"])
        if self.scores is not None and "scores" in state:
            self.scores.load_state_dict(state["scores"], state.get("decisions", []))


class FixedBatches:
    """Batches drawn once (validation: the same held-out batches every time)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)
