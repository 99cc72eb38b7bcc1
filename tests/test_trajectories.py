from __future__ import annotations

import numpy as np
import pytest

from gcrl.datasets import Task, Trajectories, concatenate
from gcrl.errors import (
    DataError,
    EmptyDatasetError,
    EmptyEpisodeError,
    EpisodeBoundaryError,
    LengthMismatchError,
    NonFiniteError,
)

from .conftest import make_trajectories


def fields_of(t: Trajectories) -> dict:
    return {
        "observations": t.observations,
        "actions": t.actions,
        "rewards": t.rewards,
        "terminals": t.terminals,
        "timeouts": t.timeouts,
        "next_observations": t.next_observations,
        "episode_starts": t.episode_starts,
    }


def test_dtypes_and_derived_boundaries() -> None:
    t = make_trajectories([3, 1, 4])
    assert t.rewards.dtype == np.float32
    assert t.terminals.dtype == bool and t.timeouts.dtype == bool
    assert t.num_transitions == 8 and t.num_episodes == 3
    assert t.episode_lengths.tolist() == [3, 1, 4]
    assert t.episode_ids.tolist() == [0, 0, 0, 1, 2, 2, 2, 2]
    assert t.episode_ends.tolist() == [3, 4, 8]


def test_next_observations_never_cross_episodes() -> None:
    t = make_trajectories([3, 1, 4])
    obs, nxt = t.observations, t.next_observations
    assert np.array_equal(obs[:, 0], nxt[:, 0])  # same episode
    assert np.array_equal(nxt[:, 1], obs[:, 1] + 1)  # one step later


def test_episode_views_do_not_copy() -> None:
    t = make_trajectories([3, 2, 4], goal=True, task=0)
    ep = t.episode(1)
    assert ep.num_transitions == 2 and ep.episode_starts.tolist() == [0]
    assert np.shares_memory(ep.actions, t.actions)
    assert np.shares_memory(ep.observations["observation"], t.observations["observation"])
    assert np.all(ep.observations["observation"][:, 0] == 1)
    assert t.episode(-1).num_transitions == 4
    assert [e.num_transitions for e in t.episodes()] == [3, 2, 4]
    two = t.rows(3, 9)
    assert two.num_episodes == 2 and two.episode_starts.tolist() == [0, 2]
    with pytest.raises(IndexError):
        t.rows(1, 5)  # not on episode boundaries


def test_select_episodes_copies_in_given_order() -> None:
    t = make_trajectories([3, 2, 4])
    sub = t.select_episodes([2, 0])
    assert sub.episode_lengths.tolist() == [4, 3]
    assert sub.observations[:, 0].tolist() == [2] * 4 + [0] * 3
    assert sub.equals(concatenate([t.episode(2), t.episode(0)]))


def test_equals_detects_any_difference() -> None:
    a = make_trajectories([3, 2], goal=True)
    b = make_trajectories([3, 2], goal=True)
    assert a.equals(b)
    changed = dict(b.observations)
    changed["desired_goal"] = changed["desired_goal"] + 1
    c = Trajectories(**{**fields_of(b), "observations": changed, "infos": b.infos})
    assert not a.equals(c)


@pytest.mark.parametrize(
    ("change", "error", "key"),
    [
        (lambda f: f.update(rewards=f["rewards"][:-1]), LengthMismatchError, "rewards"),
        (
            lambda f: f.update(episode_starts=np.array([0, 3, 3])),
            EmptyEpisodeError,
            "episode_starts",
        ),
        (lambda f: f.update(episode_starts=np.array([1])), EpisodeBoundaryError, "episode_starts"),
        (
            lambda f: f.update(terminals=np.eye(1, 5, 1, dtype=bool)[0]),
            EpisodeBoundaryError,
            "terminals",
        ),
        (
            lambda f: f.update(timeouts=np.zeros(5, dtype=bool)),
            EpisodeBoundaryError,
            "the last of its episode",
        ),
        (lambda f: f["actions"].__setitem__((2, 0), np.nan), NonFiniteError, "actions"),
        (lambda f: f["observations"].__setitem__((4, 1), np.inf), NonFiniteError, "observations"),
        (
            lambda f: f.update(next_observations=f["next_observations"][:, :2]),
            DataError,
            "next_obs",
        ),
    ],
)
def test_invalid_records_are_refused(change, error, key) -> None:  # type: ignore[no-untyped-def]
    t = make_trajectories([3, 2])
    fields = {k: np.array(v, copy=True) for k, v in fields_of(t).items()}
    change(fields)
    with pytest.raises(error, match=key):
        Trajectories(**fields)


def test_empty_dataset_is_refused() -> None:
    with pytest.raises(EmptyDatasetError):
        Trajectories(
            observations=np.zeros((0, 2)),
            actions=np.zeros((0, 1)),
            rewards=np.zeros(0),
            terminals=np.zeros(0),
            timeouts=np.zeros(0),
            next_observations=np.zeros((0, 2)),
            episode_starts=np.zeros(0),
        )


def test_task_ids_must_index_the_table() -> None:
    t = make_trajectories([2, 2])
    with pytest.raises(DataError, match="task_ids"):
        Trajectories(**fields_of(t), task_ids=np.array([0, 0, 1, 1]), tasks=(Task("a"),))
    with pytest.raises(DataError, match="task_ids"):
        Trajectories(**fields_of(t), tasks=(Task("a"),))


def test_concatenate_assigns_tasks_in_order_of_first_appearance() -> None:
    a, b, c = (make_trajectories([2, 3], seed=s) for s in range(3))
    out = concatenate(
        [a, b, c], tasks=[Task("push", "push the puck"), Task("reach", "reach"), Task("push")]
    )
    assert out.tasks == (Task("push", "push the puck"), Task("reach", "reach"))
    assert out.task_ids.tolist() == [0] * 5 + [1] * 5 + [0] * 5
    assert out.episode_starts.tolist() == [0, 2, 5, 7, 10, 12]
    assert np.array_equal(out.actions[5:10], b.actions)
    # Re-concatenating labelled parts merges their tables by name, in table order.
    again = concatenate([out.select_episodes([2, 3]), out.select_episodes([0, 1])])
    assert again.tasks == out.tasks
    assert again.task_ids.tolist() == [1] * 5 + [0] * 5


def test_concatenate_refuses_conflicting_inputs() -> None:
    a = make_trajectories([2])
    with pytest.raises(DataError, match="two texts"):
        concatenate([a, a], tasks=[Task("x", "one"), Task("x", "two")])
    with pytest.raises(DataError, match="observations"):
        concatenate([a, make_trajectories([2], goal=True)])
    with pytest.raises(DataError, match="no task"):
        concatenate([a, make_trajectories([2], task=1)])
