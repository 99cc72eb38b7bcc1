"""``gcrl relabel SOURCE OUT.hdf5 --strategy S``: offline relabeling into the native format.

Reads any supported format chunk by chunk (native files are streamed, so files larger than
memory work), writes the original rows (unless ``--no-keep-original``) and the relabeled
copies with their provenance (``infos/source_index``, ``infos/relabel_strategy``), and prints
a summary. The output appears only once complete; the input is only read.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gcrl.datasets.loading import format_names
from gcrl.datasets.native_format import COMPRESSIONS, NativeWriter
from gcrl.datasets.sources import CHUNK_ROWS, Source
from gcrl.datasets.trajectories import Trajectories
from gcrl.errors import ConfigError, DataError, GcrlError, MissingKeyError, RewardFunctionError
from gcrl.io import refuse_output_among_inputs
from gcrl.relabel.expand import (
    GOAL_EXPANSIONS,
    RELABEL_STRATEGIES,
    TASK_EXPANSIONS,
    ExpansionStats,
    expand_goals,
    expand_tasks,
    with_provenance,
)
from gcrl.relabel.rewards import GoalReward, check_rewards
from gcrl.relabel.tasks import (
    draw_tasks,
    episode_returns,
    hipi_probabilities,
    percentile_tasks,
    task_reward_matrix,
    top_k_tasks,
    uniform_other_tasks,
)

#: Info column holding per-task rewards ``[N, M]`` when no ``--reward-fn`` is given.
TASK_REWARDS_KEY = "task_rewards"


def add_parser(commands: Any) -> None:
    """Register the ``relabel`` subcommand."""
    parser = commands.add_parser(
        "relabel",
        help="expand a dataset with hindsight-goal or task relabeled copies",
        description=(
            "Write SOURCE's rows plus relabeled copies to OUT.hdf5 (native format). Goal "
            f"strategies ({', '.join(GOAL_EXPANSIONS)}) give every row --k new goals; task "
            f"strategies ({', '.join(TASK_EXPANSIONS)}) share whole episodes with other tasks."
        ),
    )
    parser.add_argument("source", metavar="SOURCE", help="input dataset (any supported format)")
    parser.add_argument("output", metavar="OUT.hdf5", help="output file (native format)")
    parser.add_argument(
        "--strategy",
        required=True,
        metavar="STRATEGY",
        help=f"one of {', '.join(GOAL_EXPANSIONS + TASK_EXPANSIONS)}",
    )
    parser.add_argument(
        "--k",
        type=int,
        default=4,
        help="goal strategies: copies per row; random-task, zero-reward and high-reward with "
        "--temperature: tasks per episode (default 4)",
    )
    goal = parser.add_argument_group("goal strategies")
    goal.add_argument("--gamma", type=float, default=0.99, help="geometric: discount (0.99)")
    goal.add_argument(
        "--truncation",
        choices=("renormalise", "clip"),
        default="renormalise",
        help="geometric: offsets past the episode's end are redrawn (renormalise) or put on "
        "its last state (clip)",
    )
    goal.add_argument(
        "--goal-key",
        default="achieved_goal",
        help="observation key of the achieved goal (default achieved_goal)",
    )
    goal.add_argument(
        "--tolerance",
        type=float,
        default=0.5,
        help="success when the achieved goal is within this distance of the goal (0.5)",
    )
    goal.add_argument(
        "--judged-on",
        choices=("next", "current"),
        default="next",
        help="state whose achieved goal decides success: s' (next, default) or s (current)",
    )
    goal.add_argument("--negative-rewards", action="store_true", help="rewards -1/0 instead of 0/1")
    parser.add_argument(
        "--reward-fn",
        metavar="MODULE:NAME",
        help="goal strategies: fn(observations, actions, next_observations) -> rewards [n]; "
        "task strategies: the same returning [n, tasks], or a list (or dict by task name) of "
        "per-task functions. MODULE may be a file path. Default: goal success, or the "
        f"infos/{TASK_REWARDS_KEY} column for tasks",
    )
    task = parser.add_argument_group("high-reward selection (one rule)")
    task.add_argument("--top-k", type=int, help="share with the K highest-return tasks")
    task.add_argument(
        "--percentile",
        type=float,
        help="share with the tasks under which the episode ranks at or above P (0-100) among "
        "all episodes (Generalized Hindsight's AIR; with --top-k, the K best ranked)",
    )
    task.add_argument(
        "--temperature",
        type=float,
        help="draw --k tasks from HIPI's softmax over returns normalised per task",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--keep-original",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write the source rows (default: yes)",
    )
    parser.add_argument(
        "--format", choices=format_names(), help="format of SOURCE (default: detect)"
    )
    parser.add_argument("--compression", choices=COMPRESSIONS, default="lzf")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    parser.set_defaults(handler=run)


def run(options: argparse.Namespace) -> int:
    """Relabel ``options.source`` into ``options.output``; prints a summary."""
    strategy = options.strategy
    if strategy not in GOAL_EXPANSIONS + TASK_EXPANSIONS:
        raise ConfigError(
            f"--strategy: unknown {strategy!r}; choose one of "
            f"{', '.join(GOAL_EXPANSIONS + TASK_EXPANSIONS)}"
        )
    if options.k < 1:
        raise ConfigError(f"--k: must be >= 1, got {options.k}")
    refuse_output_among_inputs([options.source], options.output)
    reward_object = import_object(options.reward_fn) if options.reward_fn else None
    rng = np.random.default_rng(options.seed)
    stats = ExpansionStats()
    with Source(options.source, options.format) as source:
        attrs = {
            "source": str(options.source),
            "source_format": source.format,
            "relabel_strategy": strategy,
            "relabel_strategies": list(RELABEL_STRATEGIES),
            "relabel_options": {
                key: getattr(options, key)
                for key in ("k", "seed", "keep_original", "reward_fn")
                + (
                    (
                        "gamma",
                        "truncation",
                        "goal_key",
                        "tolerance",
                        "judged_on",
                        "negative_rewards",
                    )
                    if strategy in GOAL_EXPANSIONS
                    else ("top_k", "percentile", "temperature")
                )
            },
        }
        with NativeWriter(
            options.output, overwrite=options.force, compression=options.compression, attrs=attrs
        ) as writer:
            if strategy in GOAL_EXPANSIONS:
                _relabel_goals(source, writer, options, reward_object, rng, stats)
            else:
                _relabel_tasks(source, writer, options, reward_object, rng, stats)
            stats.rows_out = writer.num_transitions
    _print_summary(options, source, stats)
    return 0


# --------------------------------------------------------------------- goals
def _relabel_goals(
    source: Source,
    writer: NativeWriter,
    options: argparse.Namespace,
    reward_object: Any,
    rng: np.random.Generator,
    stats: ExpansionStats,
) -> None:
    reward = GoalReward(options.tolerance, options.judged_on, options.negative_rewards)
    reward_fn = None
    if reward_object is not None:
        reward_fn = _guarded(options.reward_fn, _callable(options.reward_fn, reward_object))
    pool = source.goal_states(options.goal_key) if options.strategy == "random" else None
    with _progress(source, options.strategy) as bar:
        for first_row, chunk in source.chunks(options.chunk_rows):
            _check_goal_key(source, chunk, options.goal_key)
            copies = expand_goals(
                chunk,
                first_row=first_row,
                strategy=options.strategy,
                k=options.k,
                rng=rng,
                goal_key=options.goal_key,
                reward=reward,
                reward_fn=reward_fn,
                gamma=options.gamma,
                truncation=options.truncation,
                random_goal_pool=pool,
                stats=stats,
            )
            if options.keep_original:
                writer.append(with_provenance(chunk, first_row))
            writer.append(copies)
            stats.rows_in += len(chunk)
            bar.update(len(chunk))


def _check_goal_key(source: Source, chunk: Trajectories, key: str) -> None:
    observations = chunk.observations
    if not isinstance(observations, dict):
        raise MissingKeyError(
            f"{source.path}: observations: goal relabeling needs dict observations with "
            f"{key!r} and 'desired_goal', found an array"
        )
    for needed, option in ((key, "--goal-key"), ("desired_goal", "")):
        if needed not in observations:
            raise MissingKeyError(
                f"{source.path}: observations/{needed}: no such key{f' ({option})' * bool(option)}"
                f"; the observations hold {', '.join(sorted(observations))}"
            )


# --------------------------------------------------------------------- tasks
def _relabel_tasks(
    source: Source,
    writer: NativeWriter,
    options: argparse.Namespace,
    reward_object: Any,
    rng: np.random.Generator,
    stats: ExpansionStats,
) -> None:
    num_tasks = len(source.tasks)
    if num_tasks < 2:
        raise DataError(
            f"{source.path}: tasks: --strategy {options.strategy} shares episodes between "
            f"tasks, but the dataset has {num_tasks}"
        )
    task_rewards = _task_rewards(source, options, reward_object)
    targets: np.ndarray | None = None
    if options.strategy == "high-reward":
        targets = _high_reward_targets(source, options, task_rewards, rng)
    first_episode = 0
    with _progress(source, options.strategy) as bar:
        for first_row, chunk in source.chunks(options.chunk_rows):
            episode_tasks = _episode_tasks(chunk)
            if targets is None:  # random-task, zero-reward: k other tasks, uniformly
                chosen = draw_tasks(
                    uniform_other_tasks(episode_tasks, num_tasks),
                    options.k,
                    rng,
                    exclude=episode_tasks,
                )
            else:
                chosen = targets[first_episode : first_episode + chunk.num_episodes]
            copies = expand_tasks(
                chunk,
                first_row=first_row,
                strategy=options.strategy,
                targets=chosen,
                task_rewards=task_rewards,
                stats=stats,
            )
            if options.keep_original:
                writer.append(with_provenance(chunk, first_row))
            if copies is not None:
                writer.append(copies)
            first_episode += chunk.num_episodes
            stats.rows_in += len(chunk)
            bar.update(len(chunk))
    if writer.num_transitions == 0:
        raise DataError(f"{source.path}: no episode was shared and --no-keep-original was given")


def _high_reward_targets(
    source: Source,
    options: argparse.Namespace,
    task_rewards: Callable[[Trajectories], np.ndarray] | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """First pass: every episode's return under every task, then the selection rule."""
    if task_rewards is None:
        raise ConfigError(
            f"--strategy high-reward: needs --reward-fn or an infos/{TASK_REWARDS_KEY} column"
        )
    returns, tasks = [], []
    with _progress(source, "returns") as bar:
        for _, chunk in source.chunks(options.chunk_rows):
            returns.append(episode_returns(task_rewards(chunk), chunk.episode_starts))
            tasks.append(_episode_tasks(chunk))
            bar.update(len(chunk))
    all_returns, episode_tasks = np.concatenate(returns), np.concatenate(tasks)
    num_tasks = all_returns.shape[1]
    if options.temperature is not None:
        q, draws = hipi_probabilities(all_returns, options.temperature), options.k
    elif options.percentile is not None:
        if not 0 <= options.percentile <= 100:
            raise ConfigError(f"--percentile: must lie in [0, 100], got {options.percentile}")
        q = percentile_tasks(all_returns, k=options.top_k, min_percentile=options.percentile)
        draws = num_tasks
    elif options.top_k is not None:
        if options.top_k < 1:
            raise ConfigError(f"--top-k: must be >= 1, got {options.top_k}")
        q, draws = top_k_tasks(all_returns, options.top_k), num_tasks
    else:
        raise ConfigError(
            "--strategy high-reward: choose the selection rule with --top-k K, "
            "--percentile P or --temperature T"
        )
    return draw_tasks(q, draws, rng, exclude=episode_tasks)


def _episode_tasks(chunk: Trajectories) -> np.ndarray:
    assert chunk.task_ids is not None
    return chunk.task_ids[chunk.episode_starts]


def _task_rewards(
    source: Source, options: argparse.Namespace, reward_object: Any
) -> Callable[[Trajectories], np.ndarray] | None:
    """The ``[n, M]`` reward matrix of a chunk, from --reward-fn or the stored column."""
    num_tasks, spec = len(source.tasks), options.reward_fn
    if reward_object is None:

        def stored(chunk: Trajectories) -> np.ndarray:
            if TASK_REWARDS_KEY not in chunk.infos:
                if options.strategy == "zero-reward":
                    return np.zeros((len(chunk), num_tasks), dtype=np.float32)
                raise MissingKeyError(
                    f"{source.path}: infos/{TASK_REWARDS_KEY}: no such key; give --reward-fn"
                )
            matrix = chunk.infos[TASK_REWARDS_KEY]
            if matrix.shape != (len(chunk), num_tasks):
                raise DataError(
                    f"{source.path}: infos/{TASK_REWARDS_KEY}: shape {matrix.shape}, "
                    f"expected ({len(chunk)}, {num_tasks}) (rows x tasks)"
                )
            return matrix.astype(np.float32, copy=False)

        return stored
    if isinstance(reward_object, Mapping):
        missing = [t.name for t in source.tasks if t.name not in reward_object]
        if missing:
            raise RewardFunctionError(f"--reward-fn {spec}: no function for tasks {missing}")
        reward_object = [reward_object[t.name] for t in source.tasks]
    if isinstance(reward_object, Sequence) and not isinstance(reward_object, str):
        if len(reward_object) != num_tasks:
            raise RewardFunctionError(
                f"--reward-fn {spec}: {len(reward_object)} functions for {num_tasks} tasks"
            )
        fns = [_callable(spec, fn) for fn in reward_object]
        return lambda chunk: _guarded(spec, task_reward_matrix)(
            chunk.observations, chunk.actions, chunk.next_observations, fns
        )
    fn = _callable(spec, reward_object)

    def matrix(chunk: Trajectories) -> np.ndarray:
        out = _guarded(spec, fn)(chunk.observations, chunk.actions, chunk.next_observations)
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (len(chunk), num_tasks):
            raise RewardFunctionError(
                f"--reward-fn {spec}: returned shape {out.shape}, expected "
                f"({len(chunk)}, {num_tasks}) (rows x tasks)"
            )
        return check_rewards(out.reshape(-1), out.size, f"--reward-fn {spec}").reshape(out.shape)

    return matrix


# --------------------------------------------------------------------- helpers
def import_object(spec: str) -> Any:
    """The object named by ``module:name`` (``module`` may be a dotted name or a .py path)."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise RewardFunctionError(f"--reward-fn {spec}: expected MODULE:NAME")
    try:
        if module_name.endswith(".py") or "/" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise RewardFunctionError(f"--reward-fn {spec}: no such file {path}")
            loaded = importlib.util.spec_from_file_location(path.stem, path)
            assert loaded is not None and loaded.loader is not None
            module = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")  # modules beside the caller, as `python -m` would find
            module = importlib.import_module(module_name)
    except GcrlError:
        raise
    except Exception as err:
        raise RewardFunctionError(
            f"--reward-fn {spec}: cannot import {module_name!r}: {type(err).__name__}: {err}"
        ) from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise RewardFunctionError(
            f"--reward-fn {spec}: module {module_name!r} has no attribute {name!r}"
        ) from None


def _callable(spec: str, obj: Any) -> Callable[..., Any]:
    if not callable(obj):
        raise RewardFunctionError(f"--reward-fn {spec}: {obj!r} is not callable")
    return obj


def _guarded(spec: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose exceptions become one-line RewardFunctionErrors naming ``spec``."""

    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except GcrlError as err:
            raise RewardFunctionError(f"--reward-fn {spec}: {err}") from None
        except Exception as err:
            raise RewardFunctionError(
                f"--reward-fn {spec}: raised {type(err).__name__}: {err}"
            ) from None

    return call


def _progress(source: Source, label: str) -> tqdm[Any]:
    return tqdm(total=source.num_transitions, unit="row", unit_scale=True, desc=label, disable=None)


def _print_summary(options: argparse.Namespace, source: Source, stats: ExpansionStats) -> None:
    original = stats.rows_in if options.keep_original else 0
    print(
        f"relabel {options.strategy}: {stats.rows_in:,} rows in -> {stats.rows_out:,} rows out "
        f"({original:,} original, {stats.relabeled:,} relabeled)"
    )
    if options.strategy in GOAL_EXPANSIONS:
        state = "s'" if options.judged_on == "next" else "s"
        print(
            f"goal reached (within {options.tolerance} on {state}): "
            f"{stats.share(stats.successes_before, stats.rows_in):.1%} of source rows, "
            f"{stats.share(stats.successes_after, stats.relabeled):.1%} of relabeled rows"
        )
    else:
        names = [t.name for t in source.tasks]
        per_task = {names[t]: n for t, n in sorted(stats.per_task.items())}
        print(
            f"mean reward: {stats.share(stats.reward_before, stats.rows_in):.4g} per source "
            f"row, {stats.share(stats.reward_after, stats.relabeled):.4g} per relabeled row; "
            f"episodes shared per task: {json.dumps(per_task)}"
        )
    print(f"wrote {options.output}")
