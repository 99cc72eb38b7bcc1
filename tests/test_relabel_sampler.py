"""On-the-fly relabeling: the goal sampler and HER batch relabeling on real trajectories.

The test data's achieved goal is (episode, step) of the state, so a goal's episode and
position can be read off its value.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcrl.datasets.trajectories import take_rows
from gcrl.errors import MissingKeyError, RewardFunctionError
from gcrl.relabel import (
    EpisodeIndex,
    GoalMixture,
    GoalReward,
    GoalSampler,
    goal_success,
    her_relabel,
)

from .conftest import make_trajectories

layouts = st.lists(st.integers(1, 8), min_size=1, max_size=8)
MIXTURES = {
    "her": GoalMixture.her(k=4),
    "ogbench": GoalMixture.ogbench_value(),
    "final": GoalMixture.only("final"),
    "episode": GoalMixture.only("episode"),
}


@pytest.mark.parametrize("name", list(MIXTURES))
@settings(max_examples=30, deadline=None)
@given(lengths=layouts, seed=st.integers(0, 2**16))
def test_sampled_batches_are_consistent(name: str, lengths: list[int], seed: int) -> None:
    data = make_trajectories(lengths, goal=True, seed=seed % 7)
    before = {k: v.copy() for k, v in data.columns().items()}
    sampler = GoalSampler(data, value_goals=MIXTURES[name], seed=seed)
    batch = sampler.sample(64)
    rows = batch["rows"]
    episode, step = data.observations["achieved_goal"][rows].T
    goal_episode, goal_step = batch["value_goals"].T
    relabeled = batch["relabeled"]
    mixture = MIXTURES[name]

    # Goals never leave their episode (random goals are the exception), nor go backwards
    # for future-type strategies; final is the last state (step = episode length).
    inside = relabeled & (name != "ogbench")
    assert np.array_equal(goal_episode[inside], episode[inside])
    lengths_of = np.array(lengths)[episode.astype(int)]
    goal_lengths = np.array(lengths)[goal_episode[relabeled].astype(int)]
    assert ((goal_step[relabeled] >= 0) & (goal_step[relabeled] <= goal_lengths)).all()
    if name == "her":
        assert (goal_step[relabeled] > step[relabeled]).all(), "future must be after s"
    if name == "final":
        assert np.array_equal(goal_step, lengths_of)

    # Relabeled rewards are the reward function applied to the relabeled data (s', 0.5).
    next_achieved = data.next_observations["achieved_goal"][rows]
    success = goal_success(next_achieved, batch["value_goals"], 0.5)
    np.testing.assert_array_equal(batch["rewards"][relabeled], success[relabeled])
    np.testing.assert_array_equal(batch["terminals"][relabeled], success[relabeled])
    np.testing.assert_array_equal(batch["masks"], 1.0 - batch["terminals"])

    # Rows that keep their goal are unchanged.
    kept = ~relabeled
    assert kept.any() == mixture.uses_original or len(rows) < 20
    np.testing.assert_array_equal(
        batch["value_goals"][kept], data.observations["desired_goal"][rows[kept]]
    )
    np.testing.assert_array_equal(batch["rewards"][kept], data.rewards[rows[kept]])
    np.testing.assert_array_equal(batch["terminals"][kept], data.terminals[rows[kept]])

    # The batch's observations are the rows' (desired goal replaced by the value goal), and
    # s' is the next state of the same episode.
    np.testing.assert_array_equal(
        batch["observations"]["observation"], data.observations["observation"][rows]
    )
    np.testing.assert_array_equal(batch["observations"]["desired_goal"], batch["value_goals"])
    np.testing.assert_array_equal(
        batch["next_observations"]["achieved_goal"], np.stack([episode, step + 1], axis=1)
    )
    np.testing.assert_array_equal(batch["actions"], data.actions[rows])

    # Deterministic, and the data untouched.
    again = GoalSampler(data, value_goals=MIXTURES[name], seed=seed).sample(64)
    for key in ("rows", "value_goals", "rewards", "terminals"):
        np.testing.assert_array_equal(batch[key], again[key])
    for key, value in data.columns().items():
        np.testing.assert_array_equal(value, before[key])


def test_goals_do_not_leak_across_episode_boundaries() -> None:
    """Rows at the end of an episode only ever get their own episode's final state."""
    data = make_trajectories([4, 1, 3], goal=True)
    sampler = GoalSampler(data, value_goals=GoalMixture.only("future"), seed=0)
    last_rows = data.episode_ends - 1
    batch = sampler.sample(0, rows=np.repeat(last_rows, 50))
    expected = np.stack([[0, 4], [1, 1], [2, 3]]).repeat(50, axis=0)
    np.testing.assert_array_equal(batch["value_goals"], expected)
    assert batch["terminals"].all(), "the final state is reached by the last action"


def test_judged_on_s_or_s_prime_and_index_equality() -> None:
    """OGBench judges on s by index; HER on s' by distance. Both on the same draws."""
    data = make_trajectories([5, 5], goal=True)
    rows = np.arange(10)
    current = GoalMixture.only("current")
    # The goal is s itself: reached on s, not on s' (the next state is one step away).
    on_s = GoalSampler(data, value_goals=current, reward=GoalReward.ogbench(), seed=0)
    batch = on_s.sample(0, rows=rows)
    assert batch["terminals"].all() and (batch["rewards"] == 0).all()  # -1/0 rewards
    on_next = GoalSampler(
        data, value_goals=current, reward=GoalReward(tolerance=None), seed=0
    ).sample(0, rows=rows)
    assert not on_next["terminals"].any() and (on_next["rewards"] == 0).all()
    # Tolerance: s' lies 1.0 away from s, so a 1.0 tolerance counts it, 0.99 does not.
    wide = GoalSampler(data, value_goals=current, reward=GoalReward(tolerance=1.0), seed=0)
    narrow = GoalSampler(data, value_goals=current, reward=GoalReward(tolerance=0.99), seed=0)
    assert wide.sample(0, rows=rows)["terminals"].all()
    assert not narrow.sample(0, rows=rows)["terminals"].any()


def test_index_equality_differs_from_tolerance_on_revisited_states() -> None:
    """Goal equality by index says "not reached" when a different state has the same value."""
    data = make_trajectories([6], goal=True)
    achieved = np.zeros((6, 2))  # the agent never moves: every state looks the same
    obs = dict(data.observations, achieved_goal=achieved)
    nxt = dict(data.next_observations, achieved_goal=achieved)
    still = type(data)._trusted(**{**data.__dict__, "observations": obs, "next_observations": nxt})
    final = GoalMixture.only("final")
    by_index = GoalSampler(still, value_goals=final, reward=GoalReward(tolerance=None), seed=0)
    by_distance = GoalSampler(still, value_goals=final, seed=0)
    rows = np.arange(6)
    assert by_index.sample(0, rows=rows)["terminals"].tolist() == [False] * 5 + [True]
    assert by_distance.sample(0, rows=rows)["terminals"].all()


def test_actor_goals_are_drawn_separately() -> None:
    data = make_trajectories([30, 30], goal=True)
    sampler = GoalSampler(
        data,
        value_goals=GoalMixture.ogbench_value(),
        actor_goals=GoalMixture.ogbench_actor(),
        seed=0,
    )
    batch = sampler.sample(500)
    assert not np.array_equal(batch["actor_goals"], batch["value_goals"])
    episode, step = data.observations["achieved_goal"][batch["rows"]].T
    assert np.array_equal(batch["actor_goals"][:, 0], episode)
    assert (batch["actor_goals"][:, 1] > step).all()


def test_array_observations_with_goal_dims_and_task_ids() -> None:
    data = make_trajectories([4, 6], task=0)
    sampler = GoalSampler(data, goal_dims=[0, 1], value_goals=GoalMixture.only("final"), seed=1)
    batch = sampler.sample(32)
    assert batch["observations"].shape == (32, 3)
    np.testing.assert_array_equal(
        batch["value_goals"][:, 1], np.array([4, 6])[batch["value_goals"][:, 0].astype(int)]
    )
    np.testing.assert_array_equal(batch["task_ids"], data.task_ids[batch["rows"]])
    with pytest.raises(MissingKeyError, match="desired_goal"):
        GoalSampler(data, goal_dims=[0, 1], value_goals=GoalMixture.her(), seed=1)
    with pytest.raises(MissingKeyError, match="observations/position"):
        GoalSampler(make_trajectories([3], goal=True), goal_key="position")


@pytest.mark.parametrize("layout", ["strided", "fortran"])
def test_take_rows_copies_only_the_rows_of_a_non_contiguous_array(layout: str) -> None:
    # np.take copies the whole array first when it is not C-contiguous: 16 MB here for 64 rows.
    base = np.arange(2_000_000 * 2, dtype=np.float32).reshape(-1, 2)
    array = np.asfortranarray(base) if layout == "fortran" else base[:, :1]
    assert not array.flags.c_contiguous
    rows = np.random.default_rng(0).integers(0, len(array), 64)
    tracemalloc.start()
    try:
        taken = take_rows(array, rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(taken, array[rows])
    assert peak < 64 * 1024, f"take_rows allocated {peak} bytes for {taken.nbytes}"


def test_goal_dims_as_list_or_slice_give_the_same_batches_from_contiguous_columns() -> None:
    data = make_trajectories([40, 60, 25], obs_dim=5)
    batches = []
    for dims in ([0, 1], slice(0, 2)):
        sampler = GoalSampler(
            data,
            goal_dims=dims,
            value_goals=GoalMixture.ogbench_value(),
            seed=3,  # type: ignore[arg-type]
        )
        assert sampler.achieved.flags.c_contiguous and sampler.next_achieved.flags.c_contiguous
        assert not np.shares_memory(sampler.achieved, data.observations)
        batches.append(sampler.sample(128))
    for key in batches[0]:
        np.testing.assert_array_equal(batches[0][key], batches[1][key], err_msg=key)
    np.testing.assert_array_equal(batches[0]["observations"], data.observations[batches[0]["rows"]])


def test_reward_fn_replaces_rewards_and_is_checked() -> None:
    data = make_trajectories([5, 3], goal=True)

    def negative_distance(obs, actions, next_obs):  # type: ignore[no-untyped-def]
        diff = next_obs["achieved_goal"] - next_obs["desired_goal"]
        return -np.linalg.norm(diff, axis=1)

    sampler = GoalSampler(
        data, value_goals=GoalMixture.only("future"), reward_fn=negative_distance, seed=0
    )
    batch = sampler.sample(40)
    expected = -np.linalg.norm(
        batch["next_observations"]["achieved_goal"] - batch["value_goals"], axis=1
    )
    np.testing.assert_allclose(batch["rewards"], expected, rtol=1e-6)
    # Without gathering, the reward function still sees the batch; the rest is unchanged.
    lean = GoalSampler(
        data, value_goals=GoalMixture.only("future"), reward_fn=negative_distance, seed=0
    ).sample(40, gather=False)
    assert set(lean) == set(batch) - {"observations", "next_observations", "actions"}
    for key, value in lean.items():
        np.testing.assert_array_equal(value, batch[key])
    broken = GoalSampler(
        data, value_goals=GoalMixture.only("future"), reward_fn=lambda o, a, n: np.zeros(3), seed=0
    )
    with pytest.raises(RewardFunctionError, match=r"returned shape \(3,\), expected \(40,\)"):
        broken.sample(40)


# --------------------------------------------------------------------- HER batch relabel
@settings(max_examples=60, deadline=None)
@given(
    lengths=layouts,
    ratio=st.sampled_from([0.0, 0.5, 0.8, 1.0]),
    size=st.integers(1, 50),
    seed=st.integers(0, 2**16),
    strategy=st.sampled_from(["future", "final", "episode", "geometric", "random"]),
)
def test_her_relabel_ratio_and_untouched_rows(
    lengths: list[int], ratio: float, size: int, seed: int, strategy: str
) -> None:
    data = make_trajectories(lengths, goal=True)
    index = EpisodeIndex.from_starts(data.episode_starts, data.num_transitions)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, data.num_transitions, size=size)
    goals = data.observations["desired_goal"][rows]
    rewards, terminals = data.rewards[rows], data.terminals[rows]
    copies = goals.copy(), rewards.copy(), terminals.copy()
    achieved, next_achieved = (
        data.observations["achieved_goal"],
        data.next_observations["achieved_goal"],
    )

    def relabel() -> dict[str, np.ndarray]:
        return her_relabel(
            rows,
            index,
            achieved,
            next_achieved,
            goals=goals,
            rewards=rewards,
            terminals=terminals,
            rng=np.random.default_rng(seed),
            ratio=ratio,
            strategy=strategy,
        )

    out = relabel()
    relabeled = out["relabeled"]
    assert relabeled.sum() == round(ratio * size)
    for new, old in zip((goals, rewards, terminals), copies, strict=True):
        np.testing.assert_array_equal(new, old)  # inputs untouched
    np.testing.assert_array_equal(out["goals"][~relabeled], goals[~relabeled])
    np.testing.assert_array_equal(out["rewards"][~relabeled], rewards[~relabeled])
    success = goal_success(next_achieved[rows], out["goals"], 0.5)
    np.testing.assert_array_equal(out["rewards"][relabeled], success[relabeled])
    np.testing.assert_array_equal(out["terminals"][relabeled], success[relabeled])
    if strategy != "random":
        assert np.array_equal(out["goals"][relabeled, 0], achieved[rows[relabeled], 0])
    if strategy == "future":
        assert (out["goals"][relabeled, 1] > achieved[rows[relabeled], 1]).all()
    again = relabel()
    np.testing.assert_array_equal(again["goals"], out["goals"])
