"""Offline relabeling of a whole file: :func:`relabel_file` (numpy and h5py only).

Reads any supported format chunk by chunk (native files are streamed, so files larger than
memory work), writes the original rows (unless ``keep_original=False``) and the relabeled
copies with their provenance (``infos/source_index``, ``infos/relabel_strategy``) to a native
file, and returns a :class:`RelabelSummary`. The output appears only once complete; the input
is only read. ``gcrl relabel`` is this function behind an argument parser::

    from gcrl.relabel import relabel_file

    summary = relabel_file("play.hdf5", "her.hdf5", strategy="future", k=4)
    print("\\n".join(summary.lines()))                 # what `gcrl relabel` prints
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gcrl.datasets.loading import root_attributes
from gcrl.datasets.native_format import FORMAT_NAME, NativeReader, NativeWriter
from gcrl.datasets.sources import CHUNK_ROWS, Source
from gcrl.datasets.trajectories import DESIRED_GOAL, Trajectories, replace_fields
from gcrl.errors import ConfigError, DataError, MissingKeyError, option
from gcrl.io import refuse_output_among_inputs
from gcrl.relabel.codes import code_table, relabel_code
from gcrl.relabel.expand import (
    RELABEL_STRATEGY,
    SOURCE_INDEX,
    TASK_EXPANSIONS,
    ExpansionStats,
    expand_goals,
    expand_tasks,
    split_at_goal_changes,
    with_provenance,
)
from gcrl.relabel.goals import Truncation, goal_expansions
from gcrl.relabel.instructions import HindsightFn, hindsight_episodes, hindsight_function
from gcrl.relabel.references import GOAL_REFERENCES, GoalReferences, draw_goal_references
from gcrl.relabel.reward_fns import (
    TaskRewards,
    goal_reward_fn,
    stored_task_rewards,
    task_rewards_from,
)
from gcrl.relabel.rewards import TOLERANCE_ATTRS, GoalReward, recorded_tolerance
from gcrl.relabel.tasks import TaskSelection, draw_tasks, episode_returns, uniform_other_tasks

#: The offline strategy relabeling episodes with the task they accomplished.
HINDSIGHT_INSTRUCTION = "hindsight-instruction"


def relabel_strategies() -> tuple[str, ...]:
    """Every strategy :func:`relabel_file` takes: the goal ones, the task ones, then
    ``hindsight-instruction``."""
    return (*goal_expansions(), *TASK_EXPANSIONS, HINDSIGHT_INSTRUCTION)


@dataclass
class RelabelSummary:
    """What :func:`relabel_file` did. Shares are fractions in [0, 1]."""

    strategy: str
    output: Path
    keep_original: bool
    stats: ExpansionStats = field(default_factory=ExpansionStats)
    #: Goal strategies: how success was judged.
    reward: GoalReward | None = None
    #: Goal strategies: where the tolerance came from (an option, the dataset, the default).
    tolerance_source: str = ""
    #: Task strategies: the task names, by id.
    task_names: tuple[str, ...] = ()

    @property
    def rows_in(self) -> int:
        """Rows read from the source."""
        return self.stats.rows_in

    @property
    def rows_out(self) -> int:
        """Rows written: the originals (when kept) and the relabeled copies."""
        return self.stats.rows_out

    @property
    def relabeled(self) -> int:
        """Relabeled copies written."""
        return self.stats.relabeled

    @property
    def success_before(self) -> float:
        """Goal strategies: share of source rows that reach their stored goal."""
        return self.stats.share(self.stats.successes_before, self.stats.rows_in)

    @property
    def success_after(self) -> float:
        """Goal strategies: share of relabeled rows that reach their new goal."""
        return self.stats.share(self.stats.successes_after, self.stats.relabeled)

    @property
    def shared_per_task(self) -> dict[str, int]:
        """Task strategies: episodes shared with each task, by task name."""
        return {self.task_names[t]: n for t, n in sorted(self.stats.per_task.items())}

    def lines(self) -> list[str]:
        """The summary ``gcrl relabel`` prints."""
        s = self.stats
        original = self.rows_in if self.keep_original else 0
        out = [
            f"relabel {self.strategy}: {self.rows_in:,} rows in -> {self.rows_out:,} rows out "
            f"({original:,} original, {self.relabeled:,} relabeled)"
        ]
        if self.reward is not None:
            state = "s'" if self.reward.judged_on == "next" else "s"
            rule = "index" if self.reward.tolerance is None else f"within {self.reward.tolerance}"
            rule += f" on {state}"
            if self.reward.tolerance is not None and self.tolerance_source:
                rule += f", {self.tolerance_source}"
            out.append(
                f"goal reached ({rule}): {self.success_before:.1%} of source rows, "
                f"{self.success_after:.1%} of relabeled rows"
            )
        elif self.strategy == HINDSIGHT_INSTRUCTION:
            out.append(
                f"{s.episodes_relabeled:,} episodes relabeled with the task they accomplished; "
                f"mean reward {s.share(s.reward_after, self.relabeled):.4g} per relabeled row"
            )
        else:
            out.append(
                f"mean reward: {s.share(s.reward_before, self.rows_in):.4g} per source "
                f"row, {s.share(s.reward_after, self.relabeled):.4g} per relabeled row; "
                f"episodes shared per task: {json.dumps(self.shared_per_task)}"
            )
        out.append(f"wrote {self.output}")
        return out


def relabel_file(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    strategy: str,
    k: int = 4,
    seed: int = 0,
    keep_original: bool = True,
    format: str | None = None,
    goal_key: str = "achieved_goal",
    reward: GoalReward | None = None,
    gamma: float = 0.99,
    truncation: Truncation = "renormalise",
    reward_fn: Any = None,
    selection: TaskSelection | None = None,
    hindsight_fn: str | HindsightFn | None = None,
    within_goal_segments: bool = False,
    compression: str = "lzf",
    chunk_rows: int = CHUNK_ROWS,
    overwrite: bool = False,
    progress: bool | None = None,
) -> RelabelSummary:
    """Relabel ``source`` (any supported format) into the native file ``output``.

    Args:
        strategy: a goal strategy (``final``, ``future``, ``geometric``, ``episode``,
            ``random``: every row gets ``k`` new goals) or a task strategy (``random-task``,
            ``zero-reward``: each episode is shared with ``k`` other tasks; ``high-reward``:
            with the tasks ``selection`` picks).
        k: copies per row (goal strategies) or tasks per episode.
        seed: seeds the one generator every draw comes from.
        keep_original: also write the source rows.
        format: the source's format (default: detected).
        goal_key: the observation key of the achieved goal.
        reward: how goal success is judged (default: on s', within the tolerance the
            source records, see :func:`gcrl.relabel.rewards.recorded_tolerance`).
        gamma, truncation: the ``geometric`` strategy's.
        reward_fn: ``MODULE:NAME`` or the object itself. Goal strategies: a function of
            ``(observations, actions, next_observations)`` returning ``[n]`` (it replaces the
            reward values; success still follows ``reward``). Task strategies: one returning
            ``[n, tasks]``, or a list (or dict by task name) of per-task functions; default:
            the ``infos/task_rewards`` column.
        selection: the ``high-reward`` rule.
        within_goal_segments: goal strategies draw within each pursuit of one stored goal
            (the episode cut where ``desired_goal`` changes), not the whole episode.
        hindsight_fn: ``hindsight-instruction`` (required there): ``MODULE:NAME`` (or the
            function) giving a chunk's :class:`~gcrl.relabel.instructions.HindsightTasks`,
            for BabyAI ``gcrl.envs.babyai:hindsight_instructions``; each episode that
            accomplished another task is also written, cut where it did, as that task's.
        compression, chunk_rows, overwrite: output compression (``lzf``, ``gzip``, ``none``),
            rows read per chunk, and whether an existing output may be replaced.
        progress: show a progress bar (default: only on a terminal).

    Returns the summary; raises a one-line :class:`gcrl.errors.GcrlError` for bad input, and
    then writes nothing.
    """
    if strategy not in relabel_strategies():
        raise ConfigError(
            f"{option('strategy')}: unknown {strategy!r}; choose one of "
            f"{', '.join(relabel_strategies())}"
        )
    if k < 1:
        raise ConfigError(f"{option('k')}: must be >= 1, got {k}")
    if chunk_rows < 1:
        raise ConfigError(f"{option('chunk_rows')}: must be >= 1, got {chunk_rows}")
    refuse_output_among_inputs([source], output)
    is_goal = strategy in goal_expansions()
    source_attrs = root_attributes(source)
    tolerance_source = "given"
    if reward is None:
        tolerance, tolerance_source = recorded_tolerance(source_attrs)
        reward = GoalReward(tolerance)
    if strategy == "high-reward" and selection is None:
        selection = TaskSelection()  # raises: the rule must be chosen
    instruction_fn = None
    if strategy == HINDSIGHT_INSTRUCTION:
        instruction_fn = hindsight_function(hindsight_fn)[1]  # fails before anything is written
    options: dict[str, Any] = {
        "k": k,
        "seed": seed,
        "keep_original": keep_original,
        "reward_fn": reward_fn
        if reward_fn is None or isinstance(reward_fn, str)
        else repr(reward_fn),
    }
    if is_goal:
        options |= {
            "gamma": gamma,
            "truncation": truncation,
            "goal_key": goal_key,
            "tolerance": reward.tolerance,
            "judged_on": reward.judged_on,
            "negative_rewards": reward.negative,
            "within_goal_segments": within_goal_segments,
        }
    else:
        options |= {
            rule: getattr(selection, rule, None) for rule in ("top_k", "percentile", "temperature")
        }
    rng = np.random.default_rng(seed)
    with Source(source, format) as opened:
        by_reference = is_goal and opened.image_observations
        if by_reference:
            _check_references_apply(opened, keep_original, reward_fn, within_goal_segments)
            # Images are never compared within a tolerance: the goal is reached at its row.
            reward = GoalReward(None, "next", reward.negative)
            tolerance_source = "index"
            options |= {"goal_references": True, "tolerance": None}
        elif is_goal:
            _check_copies_fit(k, min(chunk_rows, opened.num_transitions))
        summary = RelabelSummary(
            strategy,
            Path(output),
            keep_original,
            reward=reward if is_goal else None,
            tolerance_source=tolerance_source,
            task_names=tuple(t.name for t in opened.tasks),
        )
        attrs = {
            # The environment's own success radius stays true of the relabeled rows.
            **{key: source_attrs[key] for key in TOLERANCE_ATTRS if key in source_attrs},
            **({"tolerance": reward.tolerance} if is_goal and reward.tolerance is not None else {}),
            "source": str(source),
            "source_format": opened.format,
            "relabel_strategy": strategy,
            "relabel_strategies": code_table(),
            "relabel_options": options,
        }
        run = _Run(opened, strategy, k, keep_original, chunk_rows, rng, summary.stats, progress)
        with NativeWriter(
            output, overwrite=overwrite, compression=compression, attrs=attrs
        ) as writer:
            if by_reference:
                run.goal_references(writer, gamma, truncation, reward.negative)
            elif is_goal:
                run.goals(
                    writer, goal_key, reward, reward_fn, gamma, truncation, within_goal_segments
                )
            elif instruction_fn is not None:
                run.instructions(writer, instruction_fn)
            else:
                run.tasks(writer, reward_fn, selection)
            summary.stats.rows_out = writer.num_transitions
    return summary


@dataclass
class _Run:
    """One relabeling pass over an opened source."""

    source: Source
    strategy: str
    k: int
    keep_original: bool
    chunk_rows: int
    rng: np.random.Generator
    stats: ExpansionStats
    progress: bool | None

    def chunks(self, label: str) -> Iterator[tuple[int, Trajectories]]:
        """The source's chunks, counted on a progress bar."""
        bar = tqdm(
            total=self.source.num_transitions,
            unit="row",
            unit_scale=True,
            desc=label,
            disable=None if self.progress is None else not self.progress,
        )
        with bar:
            for first_row, chunk in self.source.chunks(self.chunk_rows):
                yield first_row, chunk
                bar.update(len(chunk))

    def write(self, writer: NativeWriter, chunk: Trajectories, first_row: int) -> None:
        """The original rows of ``chunk``, when they are kept."""
        if self.keep_original:
            writer.append(with_provenance(chunk, first_row))
        self.stats.rows_in += len(chunk)

    # ----------------------------------------------------------------- goals
    def goals(
        self,
        writer: NativeWriter,
        goal_key: str,
        reward: GoalReward,
        reward_fn: Any,
        gamma: float,
        truncation: Truncation,
        within_goal_segments: bool,
    ) -> None:
        fn = None if reward_fn is None else goal_reward_fn(reward_fn)
        pool = self.source.goal_states(goal_key) if self.strategy == "random" else None
        for first_row, chunk in self.chunks(self.strategy):
            _check_goal_key(self.source, chunk, goal_key)
            copies = expand_goals(
                split_at_goal_changes(chunk) if within_goal_segments else chunk,
                first_row=first_row,
                strategy=self.strategy,
                k=self.k,
                rng=self.rng,
                goal_key=goal_key,
                reward=reward,
                reward_fn=fn,
                gamma=gamma,
                truncation=truncation,
                random_goal_pool=pool,
                stats=self.stats,
            )
            self.write(writer, chunk, first_row)
            writer.append(copies)

    def goal_references(
        self, writer: NativeWriter, gamma: float, truncation: Truncation, negative: bool
    ) -> None:
        """Image data: the rows once, and ``k`` goal references per row (see
        :mod:`gcrl.relabel.references`)."""
        for first_row, chunk in self.chunks(self.strategy):
            references = draw_goal_references(
                chunk,
                first_row=writer.num_transitions,  # where this chunk's rows land
                strategy=self.strategy,
                k=self.k,
                rng=self.rng,
                gamma=gamma,
                truncation=truncation,
                negative_rewards=negative,
            )
            self.write(writer, chunk, first_row)
            writer.append_table(GOAL_REFERENCES, references.columns())
            self.stats.relabeled += len(references)
            self.stats.successes_before += int(np.count_nonzero(chunk.terminals))
            self.stats.successes_after += int(np.count_nonzero(references.terminals))

    # ----------------------------------------------------------------- instructions
    def instructions(self, writer: NativeWriter, fn: HindsightFn) -> None:
        code = relabel_code(HINDSIGHT_INSTRUCTION)
        for first_row, chunk in self.chunks(self.strategy):
            table = fn(chunk)
            copies = hindsight_episodes(chunk, table)
            self.write(writer, chunk, first_row)
            if copies is None:
                continue
            rows = np.flatnonzero(table.relabelable)
            infos = dict(copies.infos)
            infos[SOURCE_INDEX] = rows + first_row
            infos[RELABEL_STRATEGY] = np.full(len(rows), code, dtype=np.uint8)
            writer.append(replace_fields(copies, infos=infos))
            self.stats.relabeled += len(rows)
            self.stats.episodes_relabeled += copies.num_episodes
            self.stats.reward_after += float(copies.rewards.sum(dtype=np.float64))
            self.stats.reward_before += float(chunk.rewards.sum(dtype=np.float64))

    # ----------------------------------------------------------------- tasks
    def tasks(self, writer: NativeWriter, reward_fn: Any, selection: TaskSelection | None) -> None:
        source = self.source
        num_tasks = len(source.tasks)
        if num_tasks < 2:
            raise DataError(
                f"{source.path}: tasks: {option('strategy')} {self.strategy} shares episodes "
                f"between tasks, but the dataset has {num_tasks}"
            )
        stored = stored_task_rewards(
            source.path, len(source.tasks), zeros=self.strategy == "zero-reward"
        )
        rewards = task_rewards_from(reward_fn, source.tasks, stored)
        targets: np.ndarray | None = None
        if selection is not None:
            targets = self._high_reward_targets(rewards, selection)
        first_episode = 0
        for first_row, chunk in self.chunks(self.strategy):
            episode_tasks = _episode_tasks(chunk)
            if targets is None:  # random-task, zero-reward: k other tasks, uniformly
                chosen = draw_tasks(
                    uniform_other_tasks(episode_tasks, num_tasks),
                    self.k,
                    self.rng,
                    exclude=episode_tasks,
                )
            else:
                chosen = targets[first_episode : first_episode + chunk.num_episodes]
            copies = expand_tasks(
                chunk,
                first_row=first_row,
                strategy=self.strategy,
                targets=chosen,
                task_rewards=rewards,
                stats=self.stats,
            )
            self.write(writer, chunk, first_row)
            if copies is not None:
                writer.append(copies)
            first_episode += chunk.num_episodes
        if writer.num_transitions == 0:
            raise DataError(
                f"{source.path}: no episode was shared and {option('keep_original')} is off"
            )

    def _high_reward_targets(self, rewards: TaskRewards, selection: TaskSelection) -> np.ndarray:
        """First pass: every episode's return under every task, then the selection rule."""
        returns, tasks = [], []
        for _, chunk in self.chunks("returns"):
            returns.append(episode_returns(rewards(chunk), chunk.episode_starts))
            tasks.append(_episode_tasks(chunk))
        all_returns, episode_tasks = np.concatenate(returns), np.concatenate(tasks)
        q = selection.probabilities(all_returns)
        draws = all_returns.shape[1] if selection.draws_every_kept_task else self.k
        return draw_tasks(q, draws, self.rng, exclude=episode_tasks)


#: Bytes a relabeled copy of a row takes at the least (its row index and goal, in float32).
MIN_COPY_BYTES = 16


def read_goal_references(source: str | os.PathLike[str], num_rows: int) -> GoalReferences | None:
    """The goal references a native file holds (written by ``gcrl relabel`` on image data),
    checked against its ``num_rows`` rows; None for any other source."""
    if root_attributes(source).get("format") != FORMAT_NAME:
        return None
    with NativeReader(source) as reader:
        columns = reader.table(GOAL_REFERENCES)
    if columns is None:
        return None
    try:
        return GoalReferences.from_columns(columns, num_rows)
    except DataError as err:
        raise err.with_source(source) from None


def _check_copies_fit(k: int, chunk: int) -> None:
    """Refuse a ``k`` whose copies of one chunk cannot fit in the memory available now."""
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):  # not on this platform: nothing to check against
        return
    need = k * chunk * MIN_COPY_BYTES
    if need > available:
        raise ConfigError(
            f"{option('k')}: {k:,} copies of a {chunk:,}-row chunk need at least "
            f"{need / 2**30:,.0f} GiB, {available / 2**30:,.1f} GiB are free; lower "
            f"{option('k')} (or {option('chunk_rows')})"
        )


def _check_references_apply(
    source: Source,
    keep_original: bool,
    reward_fn: Any,
    within_goal_segments: bool,
) -> None:
    """Refuse the options that relabeling camera images by reference cannot honour."""
    where = f"{source.path}: camera-image observations are relabeled by reference"
    if not keep_original:
        raise ConfigError(f"{where}; the copies need the rows (drop {option('no_keep_original')})")
    if reward_fn is not None:
        raise ConfigError(f"{where}; {option('reward_fn')} needs the copies' values")
    if within_goal_segments:
        raise ConfigError(f"{where}; {option('within_goal_segments')} needs stored goals")


def _check_goal_key(source: Source, chunk: Trajectories, key: str) -> None:
    observations = chunk.observations
    if not isinstance(observations, dict):
        raise MissingKeyError(
            f"{source.path}: observations: goal relabeling needs dict observations with "
            f"{key!r} and {DESIRED_GOAL!r}, found an array"
        )
    for needed, name in ((key, option("goal_key")), (DESIRED_GOAL, "")):
        if needed not in observations:
            raise MissingKeyError(
                f"{source.path}: observations/{needed}: no such key{f' ({name})' * bool(name)}"
                f"; the observations hold {', '.join(sorted(observations))}"
            )


def _episode_tasks(chunk: Trajectories) -> np.ndarray:
    assert chunk.task_ids is not None
    return chunk.task_ids[chunk.episode_starts]
