"""Task sharing inside training batches: each mode's shares and rewards counted over many
batches against its formula, composition with goal relabeling, conservative filtering by the
critic's scores, and the offline expansion drawing the same distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gcrl.datasets import Task, concatenate, load, save
from gcrl.datasets.trajectories import Trajectories, replace_fields
from gcrl.errors import ConfigError, MissingKeyError
from gcrl.relabel import RowSampler, ScoreFilter, TaskSampler, TaskSharing, relabel_file
from gcrl.relabel.pipeline import KeepStoredGoals, Pipeline
from gcrl.relabel.tasks import TaskSelection, episode_returns
from gcrl.training.datamodule import TrajectoryDataModule

from .conftest import make_trajectories

NUM_TASKS = 3
BATCH = 256
BATCHES = 120


def uneven(lengths: tuple[list[int], ...] = ([6, 6, 6, 6], [5, 5], [4])) -> Trajectories:
    """Three tasks with 24, 10 and 4 rows; ``infos/task_rewards[i, m] = 100 * m + i`` (so a
    reward names its row and task) and stored rewards ``-1 - i``."""
    parts = [make_trajectories(sizes, goal=True, seed=s) for s, sizes in enumerate(lengths)]
    data = concatenate(parts, [Task(f"task{i}", f"do task {i}") for i in range(len(lengths))])
    n = data.num_transitions
    matrix = 100.0 * np.arange(NUM_TASKS)[None, :] + np.arange(n)[:, None]
    infos = dict(data.infos) | {"task_rewards": matrix.astype(np.float32)}
    return Trajectories(
        observations=data.observations,
        actions=data.actions,
        rewards=-1.0 - np.arange(n, dtype=np.float32),
        terminals=data.terminals,
        timeouts=data.timeouts,
        next_observations=data.next_observations,
        episode_starts=data.episode_starts,
        task_ids=data.task_ids,
        tasks=data.tasks,
        infos=infos,
    )


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.hdf5"
    save(uneven(), path)
    return path


def draw(path: Path, batches: int = BATCHES, **options: object) -> list[dict]:
    module = TrajectoryDataModule(str(path), batch_size=BATCH, relabel="none", **options)  # type: ignore[arg-type]
    sampler = module.sampler(module.data, np.random.default_rng(0))
    return [sampler.sample(BATCH) for _ in range(batches)]


def pair_counts(batches: list[dict]) -> np.ndarray:
    """``[source, target]`` counts of shared rows."""
    counts = np.zeros((NUM_TASKS, NUM_TASKS))
    for b in batches:
        shared = b["shared"]
        np.add.at(counts, (b["source_task_ids"][shared], b["task_ids"][shared]), 1)
    return counts


def within(observed: np.ndarray, expected: np.ndarray, total: float) -> None:
    """Counts agree with their expectation within 5 binomial standard deviations."""
    p = expected / total
    sigma = np.sqrt(total * p * (1 - p)) + 1e-9
    assert (np.abs(observed - expected) <= 5 * sigma + 1).all(), (observed, expected)


def test_random_sharing_draws_other_tasks_uniformly_with_their_true_rewards(
    tasks_file: Path,
) -> None:
    data = load(tasks_file)
    batches = draw(tasks_file, task_sharing="random", task_relabel_ratio=0.5)
    for b in batches:
        rows, shared = b["rows"], b["shared"]
        assert shared.sum() == BATCH // 2  # every tried row has another task to go to
        assert (b["source_task_ids"] == data.task_ids[rows]).all()
        assert (b["task_ids"][shared] != b["source_task_ids"][shared]).all()
        expected = 100 * b["task_ids"][shared] + rows[shared]
        np.testing.assert_array_equal(b["rewards"][shared], expected)
        np.testing.assert_array_equal(b["rewards"][~shared], data.rewards[rows[~shared]])
        np.testing.assert_array_equal(b["task_ids"][~shared], data.task_ids[rows[~shared]])
    # Formula: P(source s) = rows of s / N, then uniform over the M - 1 others.
    share_of = np.bincount(data.task_ids, minlength=NUM_TASKS) / data.num_transitions
    total = BATCHES * BATCH // 2
    expected = np.outer(share_of, np.ones(NUM_TASKS)) / (NUM_TASKS - 1) * total
    np.fill_diagonal(expected, 0)
    within(pair_counts(batches), expected, total)


def test_zero_reward_sharing_zeroes_shared_rewards_and_never_touches_own_rows(
    tasks_file: Path,
) -> None:
    data = load(tasks_file)
    batches = draw(tasks_file, task_sharing="zero-reward", task_relabel_ratio=0.3)
    for b in batches:
        rows, shared = b["rows"], b["shared"]
        assert shared.sum() == round(0.3 * BATCH)
        assert (b["rewards"][shared] == 0).all()
        np.testing.assert_array_equal(b["rewards"][~shared], data.rewards[rows[~shared]])
        np.testing.assert_array_equal(b["task_ids"][~shared], data.task_ids[rows[~shared]])
        np.testing.assert_array_equal(b["masks"], 1.0 - data.terminals[rows])


def test_high_reward_sharing_follows_the_rule_over_episode_returns(tasks_file: Path) -> None:
    data = load(tasks_file)
    returns = episode_returns(data.infos["task_rewards"], data.episode_starts)
    q = TaskSelection(temperature=30.0).probabilities(returns)
    own = data.task_ids[data.episode_starts]
    q[np.arange(len(q)), own] = 0
    q /= q.sum(axis=1, keepdims=True)
    batches = draw(tasks_file, task_sharing="high-reward", sharing_temperature=30.0)
    # Formula: each shared row's target ~ q[its episode] (own task excluded).
    episode_of = np.repeat(np.arange(data.num_episodes), data.episode_lengths)
    expected = np.zeros((data.num_episodes, NUM_TASKS))
    observed = np.zeros_like(expected)
    for b in batches:
        shared = b["shared"]
        episodes = episode_of[b["rows"][shared]]
        np.add.at(observed, (episodes, b["task_ids"][shared]), 1)
        np.add.at(expected, episodes, q[episodes])
    within(observed, expected, BATCHES * BATCH // 2)
    with pytest.raises(ConfigError, match="sharing_top_k: only task_sharing high-reward"):
        draw(tasks_file, task_sharing="random", sharing_top_k=1)
    with pytest.raises(ConfigError, match="choose the selection rule"):
        draw(tasks_file, task_sharing="high-reward")


def test_conservative_filter_keeps_shares_at_or_above_the_target_tasks_threshold() -> None:
    data = uneven()
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(data.num_transitions, NUM_TASKS)).astype(np.float32)
    keep = ScoreFilter()
    sharing = TaskSharing(data, task_rewards=data.infos["task_rewards"], ratio=1.0, keep=keep)
    rows = rng.integers(0, data.num_transitions, 4000)
    batch = {
        "rows": rows,
        "task_ids": data.task_ids[rows],
        "rewards": data.rewards[rows],
        "masks": np.ones(len(rows), np.float32),
    }
    assert not sharing.apply(batch, rng)["shared"].any(), "nothing before the first scores"
    keep.update(scores, data.task_ids, percentile=60)
    thresholds = [np.percentile(scores[data.task_ids == m, m], 60) for m in range(NUM_TASKS)]
    np.testing.assert_allclose(keep.thresholds, thresholds)
    proposals = []
    original = sharing.propose
    sharing.propose = lambda r, g: proposals.append(original(r, g)) or proposals[-1]  # type: ignore[method-assign]
    out = sharing.apply(batch, np.random.default_rng(1))
    positions, targets = proposals[0]
    above = scores[rows[positions], targets] >= np.take(thresholds, targets)
    assert above.any() and not above.all()
    np.testing.assert_array_equal(np.flatnonzero(out["shared"]), np.sort(positions[above]))
    kept_targets = dict(zip(positions[above], targets[above], strict=True))
    for position in np.flatnonzero(out["shared"]):
        assert out["task_ids"][position] == kept_targets[position]
    dropped = positions[~above]
    np.testing.assert_array_equal(out["task_ids"][dropped], data.task_ids[rows[dropped]])


def test_sharing_composes_with_goal_relabeling(tasks_file: Path) -> None:
    data = load(tasks_file)
    module = TrajectoryDataModule(
        str(tasks_file), batch_size=BATCH, relabel="ogbench", task_sharing="random"
    )
    batch = module.sampler(module.data, np.random.default_rng(0)).sample(BATCH)
    shared = batch["shared"]
    rows = batch["rows"]
    stored = data.observations["desired_goal"][rows[shared]]
    np.testing.assert_array_equal(batch["value_goals"][shared], stored)
    np.testing.assert_array_equal(batch["actor_goals"][shared], stored)
    np.testing.assert_array_equal(
        batch["rewards"][shared], 100 * batch["task_ids"][shared] + rows[shared]
    )
    assert set(np.unique(batch["rewards"][~shared])) <= {-1.0, 0.0}, "OGBench's goal rewards"


def test_training_draws_through_the_relabel_pipeline_as_task_sampler_does(tasks_file: Path) -> None:
    """One pipeline: the data module's sampler is gcrl.relabel's Pipeline of a RowSampler and
    TaskSharing, and it draws exactly what gcrl.relabel.TaskSampler draws with the same
    generator state (the sampler a JAX code base would use)."""
    module = TrajectoryDataModule(
        str(tasks_file), batch_size=BATCH, relabel="none", task_sharing="random"
    )
    pipeline = module.sampler(module.data, np.random.default_rng(5))
    assert isinstance(pipeline, Pipeline) and isinstance(pipeline.base, RowSampler)
    assert [type(step) for step in pipeline.steps] == [TaskSharing]
    data = load(tasks_file)
    alone = TaskSampler(
        data, task_rewards=data.infos["task_rewards"], ratio=0.5, seed=np.random.default_rng(5)
    )
    for _ in range(3):
        ours, theirs = pipeline.sample(BATCH), alone.sample(BATCH)
        for key in ("rows", "task_ids", "rewards", "masks", "shared", "source_task_ids"):
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    goals = TrajectoryDataModule(str(tasks_file), relabel="ogbench", task_sharing="random")
    steps = goals.sampler(goals.data, np.random.default_rng(0)).steps
    assert [type(step) for step in steps] == [TaskSharing, KeepStoredGoals]


def test_sharing_needs_tasks_and_rewards(tmp_path: Path, tasks_file: Path) -> None:
    single = tmp_path / "single.hdf5"
    save(make_trajectories([5, 5], goal=True, task=0), single)
    with pytest.raises(ConfigError, match=r"task_sharing random: .* 1 task"):
        TrajectoryDataModule(str(single), task_sharing="random")
    plain = tmp_path / "plain.hdf5"
    data = load(tasks_file)
    infos = {k: v for k, v in data.infos.items() if k != "task_rewards"}
    save(replace_fields(data, infos=infos), plain)
    with pytest.raises(MissingKeyError, match=r"infos/task_rewards.*task_reward_fn"):
        draw(plain, task_sharing="random")
    draw(plain, batches=1, task_sharing="zero-reward")  # zero rewards need none


def test_offline_task_expansion_gives_the_on_the_fly_distribution(
    tmp_path: Path, tasks_file: Path
) -> None:
    """Rows drawn uniformly from the expanded file and on-the-fly batches with the matching
    ratio give the same (source task, target task, reward) distribution."""
    data = load(tasks_file)
    for strategy, mode in (("random-task", "random"), ("zero-reward", "zero-reward")):
        out = tmp_path / f"{strategy}.hdf5"
        relabel_file(tasks_file, out, strategy=strategy, k=NUM_TASKS - 1, seed=0)
        expanded = load(out)
        source_rows = expanded.infos["source_index"]
        rng = np.random.default_rng(0)
        picked = rng.integers(0, expanded.num_transitions, BATCHES * BATCH)
        offline = np.zeros((NUM_TASKS, NUM_TASKS))
        np.add.at(offline, (data.task_ids[source_rows[picked]], expanded.task_ids[picked]), 1)
        ratio = (NUM_TASKS - 1) / NUM_TASKS
        batches = draw(tasks_file, task_sharing=mode, task_relabel_ratio=ratio)
        online = pair_counts(batches)
        for b in batches:
            unshared = ~b["shared"]
            np.add.at(online, (b["task_ids"][unshared], b["task_ids"][unshared]), 1)
        within(online, offline, BATCHES * BATCH)
        copies = expanded.infos["relabel_strategy"] > 0
        expected = np.where(
            mode == "zero-reward",
            0.0,
            100 * expanded.task_ids[copies] + source_rows[copies],
        )
        np.testing.assert_array_equal(expanded.rewards[copies], expected)
