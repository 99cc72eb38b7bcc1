"""The Meta-World MT10 recipe and suite, on the real simulator and scripted policies."""

from __future__ import annotations

import argparse

import metaworld  # noqa: F401  (the envs extra: a missing one fails, not skips)
import numpy as np
import pytest

from gcrl.cli.collect import add_options, options_from
from gcrl.datasets.trajectories import Trajectories, concatenate
from gcrl.envs.base import Step
from gcrl.envs.collection import reported
from gcrl.envs.metaworld import (
    RECIPE,
    SUITES,
    TASKS,
    MetaWorldOptions,
    make_expert,
    make_play_env,
)
from gcrl.errors import ConfigError, RenderError, command_line_names

STEPS = 50
pytestmark = pytest.mark.filterwarnings("ignore:Constant.s. may be too high:UserWarning")


def recipe_options(*args: str) -> MetaWorldOptions:
    """Options as ``gcrl collect`` builds them from its command line."""
    parser = argparse.ArgumentParser()
    add_options(parser, MetaWorldOptions)
    parser.set_defaults(episodes=1)
    with command_line_names():  # errors name options as the command line spells them
        return options_from(MetaWorldOptions, parser.parse_args(list(args)))


def collect(*args: str) -> tuple[list[Trajectories], int]:
    """The recipe's parts and the transitions ``gcrl collect`` reports to its progress bar."""
    counted: list[int] = []
    parts = list(reported(RECIPE.collect(recipe_options(*args)), counted.append))
    return parts, sum(counted)


@pytest.fixture(scope="module")
def small() -> tuple[list[Trajectories], int]:
    return collect("--max-steps", str(STEPS), "--seed", "0")


def test_recipe_produces_ten_tasks_with_valid_rows(small: tuple[list[Trajectories], int]) -> None:
    parts, counted = small
    assert len(parts) == len(TASKS) == 10
    for part in parts:
        assert part.tasks == TASKS
        assert part.num_episodes == 1 and len(part) == STEPS
    data = concatenate(parts)
    n = 10 * STEPS
    assert counted == n == len(data)
    assert data.tasks == TASKS
    np.testing.assert_array_equal(data.task_ids, np.repeat(np.arange(10), STEPS))
    texts = [t.text for t in data.tasks]
    assert all(texts) and len(set(texts)) == 10
    assert len({t.name for t in data.tasks}) == 10
    assert isinstance(data.observations, np.ndarray)
    assert data.observations.shape == (n, 39) and data.observations.dtype == np.float32
    assert data.actions.shape == (n, 4) and data.actions.dtype == np.float32
    assert np.all(np.abs(data.actions) <= 1.0)
    assert np.isfinite(data.rewards).all() and (data.rewards >= 0).all()
    assert data.infos["success"].shape == (n,) and data.infos["success"].dtype == bool
    assert not data.terminals.any()
    np.testing.assert_array_equal(np.flatnonzero(data.timeouts), np.arange(1, 11) * STEPS - 1)


def test_observations_follow_next_observations(small: tuple[list[Trajectories], int]) -> None:
    for part in small[0]:
        assert isinstance(part.observations, np.ndarray)
        assert isinstance(part.next_observations, np.ndarray)
        np.testing.assert_array_equal(part.observations[1:], part.next_observations[:-1])
        # the goal (last 3 values) is visible and constant within an episode
        goal = part.observations[:, -3:]
        assert np.abs(goal).sum() > 0
        np.testing.assert_array_equal(goal, np.broadcast_to(goal[0], goal.shape))


def test_same_seed_same_data_other_seed_differs(small: tuple[list[Trajectories], int]) -> None:
    again, _ = collect("--max-steps", str(STEPS), "--seed", "0")
    for a, b in zip(small[0], again, strict=True):
        for name in ("observations", "actions", "rewards", "next_observations"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        np.testing.assert_array_equal(a.infos["success"], b.infos["success"])
    other, _ = collect("--max-steps", str(STEPS), "--seed", "1")
    for a, b in zip(small[0], other, strict=True):
        assert not np.array_equal(np.asarray(a.observations), np.asarray(b.observations))
        assert not np.array_equal(a.actions, b.actions)


def test_episodes_are_per_task_and_draw_new_variations() -> None:
    parts, counted = collect("--episodes", "2", "--max-steps", "3", "--seed", "5")
    assert counted == 2 * 10 * 3
    assert [int(np.asarray(p.task_ids)[0]) for p in parts] == list(range(10)) * 2
    for first, second in zip(parts[:10], parts[10:], strict=True):
        assert isinstance(first.observations, np.ndarray)
        assert isinstance(second.observations, np.ndarray)
        assert not np.array_equal(first.observations[0], second.observations[0])


@pytest.mark.parametrize("name", ["reach-v3", "drawer-close-v3"])
def test_scripted_expert_succeeds_without_noise(name: str) -> None:
    env = make_play_env(name, seed=3, max_steps=500)
    expert = make_expert(name)
    try:
        obs, _ = env.reset()
        success = False
        for _ in range(500):
            obs, _, _, truncated, info = env.step(expert.get_action(obs))
            success = bool(info["success"])
            if success or truncated:
                break
        assert success, f"{name}: the scripted policy did not succeed in 500 steps"
    finally:
        env.close()


def test_recipe_options_attrs_and_bad_values() -> None:
    options = recipe_options()
    assert options.max_steps == 500
    attrs = RECIPE.attrs(options)
    assert attrs["benchmark"] == "MT10" and attrs["metaworld_version"]
    assert attrs["max_steps"] == 500 and attrs["seed"] == 0 and attrs["noise"] == 0.1
    with pytest.raises(ConfigError, match="--max-steps"):
        next(RECIPE.collect(recipe_options("--max-steps", "0")))
    with pytest.raises(ConfigError, match="--noise"):
        next(RECIPE.collect(recipe_options("--noise", "-1")))


def test_suite_resets_to_every_task_and_steps() -> None:
    suite = SUITES["metaworld-mt10"]()
    assert suite.name == "metaworld-mt10" and suite.max_steps == 500
    assert suite.tasks == TASKS
    env = suite.make_env()
    try:
        for task in range(len(suite.tasks)):
            obs = env.reset(task, seed=0)
            assert isinstance(obs, np.ndarray)
            assert obs.shape == (39,) and obs.dtype == np.float32
            step = env.step(np.zeros(4, dtype=np.float32))
            assert isinstance(step, Step) and not step.done
            assert isinstance(step.observation, np.ndarray) and step.observation.shape == (39,)
            again = env.reset(task, seed=0)
            np.testing.assert_array_equal(obs, again)
            other = env.reset(task, seed=1)
            assert not np.array_equal(obs, other)
        with pytest.raises(ConfigError, match="task"):
            env.reset(10, seed=0)
        with pytest.raises(RenderError, match="render=False"):
            env.render()

        # the expert solves a benchmark variation; the episode ends at the step limit only
        expert = make_expert(TASKS[0].name)
        obs = env.reset(0, seed=7)
        steps: list[Step] = []
        while not steps or not steps[-1].done:
            steps.append(env.step(expert.get_action(obs.astype(np.float64))))
            obs = np.asarray(steps[-1].observation)
        assert len(steps) == 500
        assert any(s.success for s in steps)
    finally:
        env.close()


def test_suite_renders_rgb_frames() -> None:
    env = SUITES["metaworld-mt10"]().make_env(render=True)
    try:
        env.reset(5, seed=0)
        env.step(np.zeros(4, dtype=np.float32))
        try:
            frame = env.render()
        except RenderError as error:  # no offscreen OpenGL on this machine
            pytest.skip(str(error))
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert frame.std() > 0
    finally:
        env.close()
