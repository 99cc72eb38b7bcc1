"""Task relabeling: selection rules over episode returns, task draws, conservative sharing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gcrl.errors import ConfigError, RewardFunctionError
from gcrl.relabel import (
    conservative_share,
    draw_tasks,
    episode_returns,
    hipi_probabilities,
    percentile_ranks,
    percentile_tasks,
    task_reward_matrix,
    top_k_tasks,
    uniform_other_tasks,
)
from gcrl.relabel.expand import expand_tasks

from .conftest import make_trajectories

returns_matrices = st.integers(2, 12).flatmap(
    lambda e: st.integers(2, 6).flatmap(
        lambda m: arrays(np.float64, (e, m), elements=st.integers(-50, 50).map(float))
    )
)


@settings(max_examples=80, deadline=None)
@given(returns=returns_matrices, temperature=st.floats(0.1, 10))
def test_hipi_rows_sum_to_one_and_ignore_per_task_offsets(
    returns: np.ndarray, temperature: float
) -> None:
    q = hipi_probabilities(returns, temperature)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-9)
    assert (q >= 0).all()
    shifted = returns.copy()
    shifted[:, 1] += 123.0  # a task whose rewards are all higher by a constant
    np.testing.assert_allclose(hipi_probabilities(shifted, temperature), q, atol=1e-9)


def test_hipi_at_low_temperature_is_the_arg_max_of_normalised_returns() -> None:
    rng = np.random.default_rng(0)
    returns = rng.normal(size=(20, 4)) * 5
    q = hipi_probabilities(returns, temperature=1e-4)
    normalised = returns - returns.max(axis=0)
    np.testing.assert_array_equal(q.argmax(axis=1), normalised.argmax(axis=1))
    np.testing.assert_allclose(q.max(axis=1), 1.0, atol=1e-6)
    # Not the raw arg-max: task 3 is easy everywhere, yet it does not take every episode.
    easy = returns.copy()
    easy[:, 3] += 100
    assert (easy.argmax(axis=1) == 3).all()
    assert not (hipi_probabilities(easy, 1e-4).argmax(axis=1) == 3).all()


@settings(max_examples=80, deadline=None)
@given(returns=returns_matrices, task=st.integers(0, 1), k=st.integers(1, 3))
def test_percentile_selection_is_invariant_to_a_monotone_transform(
    returns: np.ndarray, task: int, k: int
) -> None:
    transformed = returns.copy()
    column = transformed[:, task]
    transformed[:, task] = column**3 + 5 * column - 3  # strictly increasing, exact in float64
    np.testing.assert_array_equal(percentile_ranks(transformed), percentile_ranks(returns))
    np.testing.assert_array_equal(
        percentile_tasks(transformed, k=k, min_percentile=40),
        percentile_tasks(returns, k=k, min_percentile=40),
    )


def test_percentile_ranks_and_air_keep_easy_tasks_from_taking_everything() -> None:
    returns = np.array([[1.0, 100.0], [2.0, 101.0], [3.0, 99.0]])
    ranks = percentile_ranks(returns)
    np.testing.assert_allclose(ranks[:, 0], [100 / 6, 50, 500 / 6])
    air = percentile_tasks(returns, k=1)
    # Task 1 has the larger return everywhere, but episode 2 ranks best under task 0.
    assert air.argmax(axis=1).tolist() == [1, 1, 0]
    none = percentile_tasks(returns, k=None, min_percentile=90)
    assert (none.sum(axis=1) == 0).all()


@settings(max_examples=80, deadline=None)
@given(returns=returns_matrices, k=st.integers(1, 4))
def test_top_k_contains_the_arg_max(returns: np.ndarray, k: int) -> None:
    q = top_k_tasks(returns, k)
    chosen = q > 0
    assert (chosen.sum(axis=1) == min(k, returns.shape[1])).all()
    assert chosen[np.arange(len(returns)), returns.argmax(axis=1)].all()
    np.testing.assert_allclose(q.sum(axis=1), 1.0)


@settings(max_examples=60, deadline=None)
@given(returns=returns_matrices, k=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_draw_tasks_distinct_never_excluded_never_impossible(
    returns: np.ndarray, k: int, seed: int
) -> None:
    q = top_k_tasks(returns, 2)
    own = np.zeros(len(q), dtype=np.int64)
    drawn = draw_tasks(q, k, np.random.default_rng(seed), exclude=own)
    for row, tasks in zip(q, drawn, strict=True):
        real = tasks[tasks >= 0]
        assert len(set(real.tolist())) == len(real)
        assert 0 not in real and (row[real] > 0).all()
        assert len(real) == min(k, int((row[1:] > 0).sum()))
    again = draw_tasks(q, k, np.random.default_rng(seed), exclude=own)
    np.testing.assert_array_equal(drawn, again)


def test_draw_tasks_follows_the_probabilities() -> None:
    q = np.tile([0.1, 0.6, 0.3], (60_000, 1))
    drawn = draw_tasks(q, 1, np.random.default_rng(0))[:, 0]
    np.testing.assert_allclose(np.bincount(drawn) / len(drawn), [0.1, 0.6, 0.3], atol=0.01)


def test_uniform_other_tasks_excludes_own_task() -> None:
    q = uniform_other_tasks(np.array([0, 2]), 3)
    np.testing.assert_allclose(q, [[0, 0.5, 0.5], [0.5, 0.5, 0]])
    with pytest.raises(ConfigError, match="at least 2 tasks"):
        uniform_other_tasks(np.array([0]), 1)


def test_conservative_share_keeps_scores_above_the_target_tasks_percentile() -> None:
    own_scores = np.concatenate([np.arange(100.0), np.arange(100.0) + 1000])
    own_tasks = np.repeat([0, 1], 100)
    scores = np.array([50.0, 49.0, 1049.5, 1020.0, 99.0])
    targets = np.array([0, 0, 1, 1, 2])  # task 2 has no data of its own: nothing kept
    keep = conservative_share(scores, targets, own_scores, own_tasks, percentile=50)
    assert keep.tolist() == [True, False, True, False, False]


def test_episode_returns_and_reward_matrix() -> None:
    data = make_trajectories([3, 2], goal=True)
    fns = [
        lambda o, a, n: n["achieved_goal"][:, 1],  # the step reached
        lambda o, a, n: np.ones(len(a)),
    ]
    matrix = task_reward_matrix(data.observations, data.actions, data.next_observations, fns)
    assert matrix.shape == (5, 2) and matrix.dtype == np.float32
    np.testing.assert_allclose(episode_returns(matrix, data.episode_starts), [[6, 3], [3, 2]])
    with pytest.raises(RewardFunctionError, match="task 1"):
        task_reward_matrix(
            data.observations,
            data.actions,
            data.next_observations,
            [fns[0], lambda o, a, n: np.ones(2)],
        )


def test_expand_tasks_copies_episodes_with_the_target_tasks_rewards() -> None:
    data = make_trajectories([3, 2, 4], goal=True)
    data = type(data)._trusted(
        **{
            **data.__dict__,
            "task_ids": np.array([0] * 5 + [1] * 4),
            "tasks": (data.tasks or ()) + _tasks(3),
        }
    )
    matrix = np.arange(27, dtype=np.float32).reshape(9, 3)
    targets = np.array([[1, 2], [-1, -1], [0, -1]])
    copies = expand_tasks(
        data,
        first_row=100,
        strategy="random-task",
        targets=targets,
        task_rewards=lambda chunk: matrix,
    )
    assert copies is not None
    assert copies.episode_lengths.tolist() == [3, 3, 4]
    assert copies.task_ids.tolist() == [1] * 3 + [2] * 3 + [0] * 4
    source = copies.infos["source_index"] - 100
    np.testing.assert_array_equal(copies.rewards, matrix[source, copies.task_ids])
    np.testing.assert_array_equal(copies.actions, data.actions[source])
    zero = expand_tasks(
        data, first_row=0, strategy="zero-reward", targets=targets, task_rewards=None
    )
    assert zero is not None and (zero.rewards == 0).all()


def _tasks(m: int) -> tuple:
    from gcrl.datasets import Task

    return tuple(Task(f"t{i}") for i in range(m))


# --------------------------------------------------------------------- on the fly
def multitask(lengths: list[int], tasks: int = 3):  # type: ignore[no-untyped-def]
    from gcrl.datasets import Task, concatenate

    parts = [make_trajectories(lengths, goal=True, seed=s) for s in range(tasks)]
    return concatenate(parts, [Task(f"task{i}") for i in range(tasks)])


def test_task_sampler_shares_with_other_tasks_and_their_rewards() -> None:
    from gcrl.relabel import TaskSampler

    data = multitask([4, 2, 5])
    matrix = np.random.default_rng(0).normal(size=(data.num_transitions, 3)).astype(np.float32)
    before = data.task_ids.copy()
    sampler = TaskSampler(data, task_rewards=matrix, ratio=0.75, seed=1)
    batch = sampler.sample(200)
    rows, shared = batch["rows"], batch["shared"]
    assert shared.sum() == 150, "every tried row has another task to go to"
    assert (batch["task_ids"][shared] != data.task_ids[rows[shared]]).all()
    np.testing.assert_array_equal(batch["task_ids"][~shared], data.task_ids[rows[~shared]])
    np.testing.assert_array_equal(
        batch["rewards"][shared], matrix[rows[shared], batch["task_ids"][shared]]
    )
    np.testing.assert_array_equal(batch["rewards"][~shared], data.rewards[rows[~shared]])
    np.testing.assert_array_equal(data.task_ids, before)
    again = TaskSampler(data, task_rewards=matrix, ratio=0.75, seed=1).sample(200)
    np.testing.assert_array_equal(again["task_ids"], batch["task_ids"])

    # Per-task reward functions give the same rewards as their matrix.
    fns = [lambda o, a, n, m=m: matrix[_row_of(data, n), m] for m in range(3)]
    by_fn = TaskSampler(data, task_rewards=fns, ratio=0.75, seed=1).sample(200)
    np.testing.assert_array_equal(by_fn["rewards"], batch["rewards"])


def _row_of(data, next_observations):  # type: ignore[no-untyped-def]
    """Row of each next observation (its observation values are unique in the test data)."""
    keys = data.next_observations["observation"]
    lookup = {k.tobytes(): i for i, k in enumerate(keys)}
    return np.array([lookup[k.tobytes()] for k in next_observations["observation"]])


def test_task_sampler_selection_zero_reward_and_conservative_hook() -> None:
    from gcrl.relabel import TaskSampler

    data = multitask([3, 3])
    only_task_2 = np.zeros((data.num_episodes, 3))
    only_task_2[:, 2] = 1.0  # episodes of task 2 have nowhere to go
    sampler = TaskSampler(
        data,
        task_rewards=np.ones((data.num_transitions, 3), np.float32),
        selection=only_task_2,
        ratio=1.0,
        zero_reward=True,
        seed=0,
    )
    batch = sampler.sample(300)
    own = data.task_ids[batch["rows"]]
    assert (batch["shared"] == (own != 2)).all()
    assert (batch["task_ids"] == 2).all() and (batch["rewards"][batch["shared"]] == 0).all()

    # The hook sees the proposed shares and vetoes some: keep those from even rows only.
    scores = (np.arange(data.num_transitions) % 2 == 0).astype(float)
    hooked = TaskSampler(
        data,
        task_rewards=np.ones((data.num_transitions, 3), np.float32),
        ratio=1.0,
        seed=0,
        keep_fn=lambda proposal: conservative_share(
            scores[proposal["rows"]],
            proposal["task_ids"],
            scores,
            data.task_ids,
            percentile=50,
        ),
    ).sample(300)
    assert (hooked["shared"] == (hooked["rows"] % 2 == 0)).all()
