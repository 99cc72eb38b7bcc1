"""Minari alignment, episode by episode, against ``minari``'s own ``iterate_episodes``."""

from __future__ import annotations

import warnings
from pathlib import Path

import minari
import numpy as np
import pytest

from gcrl.datasets import load, load_minari, save
from gcrl.datasets.minari_reader import _episodes_decoded, open_minari


def assert_aligned_with_minari(t, dataset) -> None:  # type: ignore[no-untyped-def]
    episodes = list(dataset.iterate_episodes())
    assert t.num_episodes == len(episodes)
    assert t.num_transitions == sum(len(e) for e in episodes)
    for ours, theirs in zip(t.episodes(), episodes, strict=True):
        steps = len(theirs)
        assert ours.num_transitions == steps
        for key, obs in theirs.observations.items():
            np.testing.assert_array_equal(ours.observations[key], obs[:-1], err_msg=key)
            np.testing.assert_array_equal(ours.next_observations[key], obs[1:], err_msg=key)
        np.testing.assert_array_equal(ours.actions, theirs.actions)
        np.testing.assert_array_equal(ours.rewards, theirs.rewards.astype(np.float32))
        np.testing.assert_array_equal(ours.terminals, theirs.terminations)
        expected_timeouts = theirs.truncations.copy()
        expected_timeouts[-1] |= not theirs.terminations[-1]
        np.testing.assert_array_equal(ours.timeouts, expected_timeouts)
        np.testing.assert_array_equal(ours.infos["success"], theirs.infos["success"][1:])


def test_every_episode_aligned_by_id(pointmaze_minari, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    root, dataset_id = pointmaze_minari
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    t = load(dataset_id)
    assert t.attrs["source_format"] == "minari" and t.attrs["env_id"] == "PointMaze_UMaze-v3"
    assert set(t.observations) == {"observation", "achieved_goal", "desired_goal"}
    assert len(set(t.episode_lengths.tolist())) > 3  # lengths differ: drift would show
    assert_aligned_with_minari(t, minari.load_dataset(dataset_id))


def test_by_path_equals_by_id(pointmaze_minari, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    root, dataset_id = pointmaze_minari
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    by_path = load(root / dataset_id)
    assert by_path.equals(load_minari(dataset_id, progress=False))
    assert load(root / dataset_id / "data").equals(by_path)


def test_decoded_path_matches_bulk_path(pointmaze_minari) -> None:  # type: ignore[no-untyped-def]
    root, dataset_id = pointmaze_minari
    dataset = open_minari(root / dataset_id)
    bulk = load(root / dataset_id)
    decoded = list(_episodes_decoded(dataset))
    for ours, raw in zip(bulk.episodes(), decoded, strict=True):
        np.testing.assert_array_equal(
            ours.observations["observation"], raw["observations/observation"][:-1]
        )
        np.testing.assert_array_equal(ours.actions, raw["actions"])


def test_achieved_goal_of_next_observation_is_the_step_result(pointmaze_minari) -> None:  # type: ignore[no-untyped-def]
    root, dataset_id = pointmaze_minari
    t = load(root / dataset_id)
    # In PointMaze the achieved goal is the x-y position: next row's s equals this row's s'.
    not_last = np.ones(len(t), dtype=bool)
    not_last[t.episode_ends - 1] = False
    rows = np.flatnonzero(not_last)
    np.testing.assert_array_equal(
        t.next_observations["achieved_goal"][rows], t.observations["achieved_goal"][rows + 1]
    )
    np.testing.assert_array_equal(
        t.observations["achieved_goal"], t.observations["observation"][:, :2]
    )


def test_round_trip_through_native(pointmaze_minari, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, dataset_id = pointmaze_minari
    t = load(root / dataset_id)
    assert load(save(t, tmp_path / "n.hdf5")).equals(t)


def test_box_observations_stay_arrays(minari_root: Path) -> None:
    import gymnasium as gym
    from minari.data_collector.episode_buffer import EpisodeBuffer

    env = gym.make("Pendulum-v1", max_episode_steps=12)
    rng = np.random.default_rng(0)
    buffers = []
    for episode in range(4):
        obs, _ = env.reset(seed=episode)
        observations, actions = [obs], []
        for _ in range(5 + episode):
            action = rng.uniform(-2, 2, size=1).astype(np.float32)
            obs, *_ = env.step(action)
            observations.append(obs)
            actions.append(action)
        steps = len(actions)
        buffers.append(
            EpisodeBuffer(
                id=episode,
                observations=np.stack(observations),
                actions=np.stack(actions),
                rewards=list(rng.normal(size=steps)),
                terminations=[False] * steps,
                truncations=[False] * (steps - 1) + [True],
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = minari.create_dataset_from_buffers("test/pendulum-v0", buffers, env=env)
    t = load("test/pendulum-v0")
    assert isinstance(t.observations, np.ndarray) and t.observations.shape == (26, 3)
    for ours, theirs in zip(t.episodes(), dataset.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(ours.observations, theirs.observations[:-1])
        np.testing.assert_array_equal(ours.next_observations, theirs.observations[1:])
