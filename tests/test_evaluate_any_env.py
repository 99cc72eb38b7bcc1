"""``gcrl evaluate --env`` with any gymnasium id, ``module:EnvId`` and ``minari:DATASET_ID``
(gcrl.envs.gymnasium_suite): real environments, policies trained for a few steps."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import gymnasium_robotics  # noqa: F401  (the eval extra: a missing one fails, not skips)
import minari  # noqa: F401
import numpy as np
import pytest
import torch

from gcrl.algorithms import BC
from gcrl.cli.main import main
from gcrl.datasets import Task, concatenate, save
from gcrl.envs import suite
from gcrl.envs.base import episode_to_trajectories
from gcrl.envs.gymnasium_suite import GymnasiumSuite, is_success
from gcrl.errors import ConfigError
from gcrl.evaluation import evaluate
from gcrl.training import TrajectoryDataModule

from .test_imports import modules_after
from .training_data import fit

torch.set_num_threads(1)

MAZE = "PointMaze_UMaze-v3"


def _train(data: str, tmp: Path, **datamodule: object) -> Path:
    """A BC checkpoint trained for two steps on ``data``."""
    dm = TrajectoryDataModule(data, batch_size=16, steps_per_epoch=2, **datamodule)  # type: ignore[arg-type]
    trainer = fit(BC(spec=dm.spec, hidden_dims=[16]), dm, 2, default_root_dir=tmp)
    trainer.save_checkpoint(tmp / "bc.ckpt")
    return tmp / "bc.ckpt"


@pytest.fixture(scope="module")
def maze_policy(
    pointmaze_minari: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Goal-conditioned BC on the session's PointMaze Minari dataset: dict observations
    (4-d ``observation``, 2-d goals), 2-d continuous actions."""
    root, dataset_id = pointmaze_minari
    return _train(str(root / dataset_id), tmp_path_factory.mktemp("maze"))


@pytest.fixture(scope="module")
def cartpole_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BC on random CartPole-v1 play: array observations, discrete actions, goals drawn from
    observation dims 0 and 2 (cart position, pole angle), OGBench's array convention."""
    tmp = tmp_path_factory.mktemp("cartpole")
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    parts = []
    for episode in range(6):
        obs, _ = env.reset(seed=episode)
        observations, actions, rewards = [obs], [], []
        terminated = truncated = False
        while not (terminated or truncated):
            action = np.int64(rng.integers(2))
            obs, reward, terminated, truncated, _ = env.step(int(action))
            observations.append(obs)
            actions.append(action)
            rewards.append(float(reward))
        parts.append(episode_to_trajectories(observations, actions, rewards, terminated))
    env.close()
    path = save(concatenate(parts), tmp / "cartpole.hdf5")
    return _train(str(path), tmp, goal_dims=[0, 2])


def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    assert main(args) == 2, args
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_a_gymnasium_robotics_id_evaluates_with_its_env_id_in_the_table(
    maze_policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    args = ["evaluate", str(maze_policy), "--env", MAZE, "--episodes", "2", "--num-envs", "2"]
    assert main([*args, "--max-steps", "40", "--seed", "3", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert f"\n{MAZE}  " in table and "mean" in table and "worst" in table
    report = json.loads(out.read_text())
    assert report["suite"] == MAZE and report["seed"] == 3
    (task,) = report["tasks"]
    assert task["name"] == MAZE and task["episodes"] == 2 and task["mean_length"] <= 40
    assert main([*args, "--max-steps", "40", "--seed", "3", "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == report  # seeded resets: the same episodes


def test_success_comes_from_info_and_the_episode_seeds(tmp_path: Path) -> None:
    """A PD controller towards ``desired_goal`` in the open maze reaches every goal (the
    env's ``info["success"]``); standing still reaches none."""
    chosen = suite("PointMaze_Open-v3", max_steps=150)
    assert isinstance(chosen, GymnasiumSuite) and chosen.max_steps == 150

    def towards_goal(observations: dict[str, np.ndarray], tasks: Sequence[Task]) -> np.ndarray:
        position, velocity = observations["observation"][:, :2], observations["observation"][:, 2:]
        return np.clip(10 * (observations["desired_goal"] - position) - velocity, -1, 1)

    def still(observations: dict[str, np.ndarray], tasks: Sequence[Task]) -> np.ndarray:
        return np.zeros((len(tasks), 2))

    report = evaluate(towards_goal, chosen, episodes=2, num_envs=2, seed=1)
    assert report.mean == 1.0 and report.tasks[0].name == "PointMaze_Open-v3"
    assert evaluate(still, chosen, episodes=2, num_envs=2, seed=1).mean == 0.0
    env = chosen.make_env()
    first = env.reset(0, 5)
    again = env.reset(0, 5)
    env.close()
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])  # type: ignore[index]
    assert is_success({"is_success": np.float64(1.0)}) and not is_success({"success": False})


def test_the_environment_of_a_local_minari_dataset(
    maze_policy: Path,
    pointmaze_minari: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, dataset_id = pointmaze_minari
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    out = tmp_path / "m.json"
    args = ["evaluate", str(maze_policy), "--env", f"minari:{dataset_id}", "--episodes", "2"]
    assert main([*args, "--json", str(out)]) == 0
    assert MAZE in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["suite"] == f"minari:{dataset_id}"
    assert report["tasks"][0]["name"] == MAZE
    assert report["tasks"][0]["mean_length"] <= 30  # the recorded env's time limit
    directory = ["--env", f"minari:{root / dataset_id}", "--episodes", "1"]
    assert main([*args[:2], *directory]) == 0  # a dataset directory names it too
    assert MAZE in capsys.readouterr().out
    err = _one_line_error(capsys, [*args[:2], "--env", "minari:test/nothing-v0"])
    assert "--env minari:test/nothing-v0: no local Minari dataset" in err


def test_an_array_env_takes_its_goal_from_the_goal_option(
    cartpole_policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CartPole: array observations, discrete actions, a goal from ``--goal``; videos."""
    out, videos = tmp_path / "c.json", tmp_path / "videos"
    args = ["evaluate", str(cartpole_policy), "--env", "CartPole-v1", "--episodes", "2"]
    outputs = ["--json", str(out), "--video", str(videos), "--max-steps", "25"]
    assert main([*args, "--goal", "0,0", *outputs]) == 0
    assert "CartPole-v1" in capsys.readouterr().out
    task = json.loads(out.read_text())["tasks"][0]
    assert task["episodes"] == 2 and task["success_rate"] == 0.0  # CartPole has no success
    assert 1 <= task["mean_return"] == task["mean_length"] <= 25  # reward 1 per step
    assert [p.name for p in videos.iterdir()] == ["CartPole-v1-0.gif"]
    err = _one_line_error(capsys, args)
    assert "--env CartPole-v1: the policy is goal-conditioned (2-d goals)" in err
    assert "--goal" in err
    err = _one_line_error(capsys, [*args, "--goal", "0,0,0"])
    assert "--env CartPole-v1:" in err and "3 values per goal, the model takes 2" in err


def test_observations_and_actions_that_do_not_fit_the_policy_are_one_line_errors(
    maze_policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate", str(maze_policy), "--episodes", "1", "--num-envs", "1"]
    err = _one_line_error(capsys, [*args, "--env", "Pendulum-v1"])
    assert "--env Pendulum-v1:" in err and "3 values per observation, the model takes 4" in err
    err = _one_line_error(capsys, [*args, "--env", "CartPole-v1", "--goal", "0,0"])
    assert "--env CartPole-v1: the policy's actions (float32 of shape (2,))" in err
    assert "Discrete(2)" in err
    err = _one_line_error(capsys, [*args, "--env", MAZE, "--goal", "1,2"])
    assert f"--goal: {MAZE} gives its own goal" in err
    err = _one_line_error(capsys, [*args, "--env", "pointmaze-medium", "--goal", "1,2"])
    assert "--goal: pointmaze-medium sets its own goals" in err
    from gcrl.envs import suite  # from Python the error names the parameter

    with pytest.raises(ConfigError, match=r"^max_steps: pointmaze-medium sets its own goals"):
        suite("pointmaze-medium", max_steps=5)
    err = _one_line_error(capsys, [*args, "--env", MAZE, "--max-steps", "0"])
    assert "--max-steps: must be at least 1" in err
    videos = ["--env", MAZE, "--max-steps", "2", "--video", str(tmp_path / "v")]
    if main([*args, *videos]) != 0:  # MuJoCo renders only with an offscreen OpenGL
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"gcrl evaluate: error: --video: {MAZE} cannot render")
        assert "\n" not in err
    assert main([*args, "--env", MAZE, "--goal", "1,x"]) == 2  # argparse: usage and error
    assert "expected comma-separated numbers" in capsys.readouterr().err


def test_unknown_names_are_one_line_errors(
    maze_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate", str(maze_policy), "--env"]
    err = _one_line_error(capsys, [*args, "NoSuchEnv-v0"])
    assert "--env: unknown 'NoSuchEnv-v0'; not a gcrl suite (choose one of " in err
    assert "pointmaze-medium" in err and "nor a registered gymnasium id" in err
    err = _one_line_error(capsys, [*args, "CartPol-v1"])
    assert "did you mean 'CartPole-v1'?" in err
    err = _one_line_error(capsys, [*args, "no_such_module:Thing-v0"])
    assert "module 'no_such_module' does not import" in err
    with pytest.raises(ConfigError, match="nor a registered gymnasium id"):
        suite("NoSuchEnv-v0")


def test_module_colon_id_imports_the_module_that_registers_it() -> None:
    chosen = suite("gymnasium_robotics:PointMaze_Open-v3", max_steps=3)
    assert chosen.tasks == (Task("PointMaze_Open-v3"),)
    env = chosen.make_env()
    try:
        observation = env.reset(0, 0)
        assert set(observation) == {"observation", "achieved_goal", "desired_goal"}
        assert env.step(np.zeros(2, dtype=np.float32)).done is False
    finally:
        env.close()


def test_gcrl_envs_imports_gymnasium_only_for_a_gymnasium_suite() -> None:
    assert "gymnasium" not in modules_after("import gcrl.envs, gcrl.cli.evaluate")
    assert "gymnasium" in modules_after("from gcrl.envs import suite; suite('CartPole-v1')")
