"""Hindsight goal strategies: properties over random episode layouts, and their distributions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from gcrl.errors import ConfigError
from gcrl.relabel import (
    GOAL_STRATEGIES,
    KEEP,
    EpisodeIndex,
    GoalMixture,
    episode_goals,
    final_goals,
    future_goals,
    geometric_goals,
)

layouts = st.lists(st.integers(1, 8), min_size=1, max_size=8)
P_MIN = 1e-4  # chi-square tests fail below this p-value (seeded, so never by chance)


def draw_all(lengths: list[int], strategy: str, seed: int, **options: object) -> tuple:
    """Goals for every state of every episode, ``reps`` draws each."""
    index = EpisodeIndex.from_starts(np.cumsum([0, *lengths[:-1]]), sum(lengths))
    states = np.arange(index.num_states).repeat(5)
    episodes = index.episode_of_state(states)
    first, last = index.first_state[episodes], index.last_state[episodes]
    mixture = GoalMixture.only(strategy, **options)
    before = states.copy()
    goals = mixture.sample(states, first, last, index.num_states, np.random.default_rng(seed))
    assert np.array_equal(states, before), "the input was modified"
    return states, first, last, goals


@pytest.mark.parametrize("strategy", [s for s in GOAL_STRATEGIES if s not in ("original",)])
@settings(max_examples=40, deadline=None)
@given(lengths=layouts, seed=st.integers(0, 2**16))
def test_goals_stay_in_their_episode_and_are_deterministic(
    strategy: str, lengths: list[int], seed: int
) -> None:
    states, first, last, goals = draw_all(lengths, strategy, seed)
    again = draw_all(lengths, strategy, seed)[3]
    assert np.array_equal(goals, again), "same seed, different goals"
    if strategy == "random":
        assert ((goals >= 0) & (goals < sum(lengths) + len(lengths))).all()
        return
    assert ((goals >= first) & (goals <= last)).all(), "a goal left its episode"
    if strategy == "current":
        assert np.array_equal(goals, states)
    if strategy == "final":
        assert np.array_equal(goals, last)
    if strategy in ("future", "geometric"):
        assert (goals >= states).all(), f"{strategy} went backwards"
        # Exclusive of the current state, except at the last state (which has no future).
        assert ((goals > states) | (states == last)).all()


@settings(max_examples=40, deadline=None)
@given(lengths=layouts, seed=st.integers(0, 2**16))
def test_future_inclusive_and_geometric_clip_never_go_backwards(
    lengths: list[int], seed: int
) -> None:
    for strategy, options in (
        ("future", {"inclusive": True}),
        ("geometric", {"truncation": "clip"}),
    ):
        states, _, last, goals = draw_all(lengths, strategy, seed, **options)
        assert ((goals >= states) & (goals <= last)).all()


def test_length_one_episodes_have_two_states() -> None:
    index = EpisodeIndex.from_starts([0, 1, 2], num_rows=3)
    assert index.first_state.tolist() == [0, 2, 4] and index.last_state.tolist() == [1, 3, 5]
    rng = np.random.default_rng(0)
    states = index.state_of_row(np.arange(3))
    goals = future_goals(states, index.first_state, index.last_state, rng)
    assert goals.tolist() == [1, 3, 5], "the only future state of s_0 is s_1"
    assert final_goals(states, index.first_state, index.last_state).tolist() == [1, 3, 5]


@settings(max_examples=60, deadline=None)
@given(lengths=layouts, seed=st.integers(0, 2**16))
def test_gather_states_matches_a_per_episode_loop(lengths: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    index = EpisodeIndex.from_starts(np.cumsum([0, *lengths[:-1]]), n)
    obs, nxt = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    expected = []
    for start, end in zip(index.starts, index.ends, strict=True):
        expected += [obs[start], *nxt[start:end]]  # s_0, then s_1..s_L from next observations
    states = rng.integers(0, index.num_states, size=50)
    got = index.gather_states(obs, nxt, states)
    np.testing.assert_array_equal(got, np.array(expected)[states])
    episodes = index.episode_of_state(states)
    np.testing.assert_array_equal(index.gather_states(obs, nxt, states, episodes), got)


# --------------------------------------------------------------------- distributions
def chi_square_p(observed: np.ndarray, probabilities: np.ndarray) -> float:
    expected = probabilities / probabilities.sum() * observed.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def offsets_from(strategy_fn: object, index: int, last: int, size: int, **options: object):
    rng = np.random.default_rng(1)
    idx = np.full(size, index)
    goals = strategy_fn(idx, np.zeros(size, np.int64), np.full(size, last), rng, **options)
    return np.bincount(goals - index, minlength=last - index + 1)


def test_future_is_uniform_over_the_states_after() -> None:
    counts = offsets_from(future_goals, 3, 12, 90_000)
    assert counts[0] == 0
    assert chi_square_p(counts[1:], np.ones(9)) > P_MIN
    inclusive = offsets_from(future_goals, 3, 12, 100_000, inclusive=True)
    assert chi_square_p(inclusive, np.ones(10)) > P_MIN


@pytest.mark.parametrize("gamma", [0.5, 0.9])
def test_geometric_renormalised_and_clipped(gamma: float) -> None:
    left = 8
    k = np.arange(1, left + 1)
    renormalised = offsets_from(geometric_goals, 2, 2 + left, 100_000, gamma=gamma)
    assert renormalised[0] == 0
    assert chi_square_p(renormalised[1:], (1 - gamma) * gamma ** (k - 1)) > P_MIN
    clipped = offsets_from(geometric_goals, 2, 2 + left, 100_000, gamma=gamma, truncation="clip")
    expected = (1 - gamma) * gamma ** (k - 1)
    expected[-1] = gamma ** (left - 1)  # the tail's mass lands on the last state
    assert chi_square_p(clipped[1:], expected) > P_MIN
    # The two differ where it matters: the clipped one piles mass on the last state.
    assert clipped[-1] > renormalised[-1]


def test_geometric_chi_square_rejects_a_wrong_gamma() -> None:
    """The distribution test has power: it tells gamma 0.9 from 0.85."""
    counts = offsets_from(geometric_goals, 0, 8, 100_000, gamma=0.9)
    k = np.arange(1, 9)
    assert chi_square_p(counts[1:], 0.15 * 0.85 ** (k - 1)) < P_MIN


def test_mixture_proportions_follow_the_weights() -> None:
    mixture = GoalMixture.ogbench_value()
    codes = mixture.choose(100_000, np.random.default_rng(3))
    names = list(GOAL_STRATEGIES)  # codes index the mixture's strategies, in registry order
    counts = np.bincount(
        [names.index(mixture.strategies[c].name) for c in codes], minlength=len(names)
    )
    weights = np.array([mixture.weights.get(s, 0.0) for s in GOAL_STRATEGIES])
    used = weights > 0
    assert (counts[~used] == 0).all()
    assert chi_square_p(counts[used], weights[used]) > P_MIN
    # And the goals drawn follow the codes: current goals equal the state.
    index = EpisodeIndex.from_starts([0, 50], num_rows=100)
    rows = np.random.default_rng(4).integers(0, 100, size=20_000)
    states = index.state_of_row(rows)
    e = index.episode_of_row[rows]
    rng = np.random.default_rng(5)
    codes = mixture.choose(len(rows), rng)
    goals = mixture.sample(states, index.first_state[e], index.last_state[e], 102, rng, codes)
    chosen = [s.name for s in mixture.strategies]
    current = codes == chosen.index("current")
    assert np.array_equal(goals[current], states[current])
    geometric = codes == chosen.index("geometric")
    assert (goals[geometric] > states[geometric])[
        states[geometric] < index.last_state[e][geometric]
    ].all()


def test_presets() -> None:
    assert GoalMixture.ogbench_value().truncation == "clip"
    assert GoalMixture.ogbench_actor().weights == {"future": 1.0}
    her = GoalMixture.her(k=4)
    codes = her.choose(50_000, np.random.default_rng(0))
    assert abs((codes == 0).mean() - 0.2) < 0.01
    goals = her.sample(
        np.zeros(10, np.int64),
        np.zeros(10, np.int64),
        np.full(10, 5),
        6,
        np.random.default_rng(0),
        np.zeros(10, np.int8),
    )
    assert (goals == KEEP).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda: GoalMixture({"future": 0.5}),
        lambda: GoalMixture({"futur": 1.0}),
        lambda: GoalMixture({"future": 1.5, "final": -0.5}),
        lambda: geometric_goals(np.zeros(1, np.int64), 0, 3, np.random.default_rng(), gamma=1.0),
        lambda: geometric_goals(
            np.zeros(1, np.int64), 0, 3, np.random.default_rng(), truncation="wrap"
        ),
    ],
)
def test_bad_parameters_raise_config_errors(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]


def test_episode_goals_cover_the_past() -> None:
    rng = np.random.default_rng(0)
    goals = episode_goals(np.full(5000, 4), np.full(5000, 2), np.full(5000, 7), rng)
    assert set(np.unique(goals)) == set(range(2, 8))
