"""The five-task PointMaze recipe (per-task rewards on s', uneven data), its evaluation suite
and task-conditioned policies evaluated on it, and relabel provenance read by ``relabel: auto``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import ogbench  # noqa: F401  (the eval extra: a missing one fails, not skips)
import pytest
import torch

from gcrl.cli.main import main
from gcrl.datasets import Task
from gcrl.datasets.native_format import load_native
from gcrl.envs import suite
from gcrl.envs.pointmaze import SUCCESS_RADIUS, WaypointExpert
from gcrl.envs.pointmaze_tasks import (
    MEDIUM_GOALS,
    PointMazeTasksOptions,
    maze_tasks,
    task_rewards,
)
from gcrl.errors import ConfigError
from gcrl.evaluation import evaluate
from gcrl.learner import AgentModule
from gcrl.training.datamodule import TrajectoryDataModule

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def uneven(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pmt") / "tasks.hdf5"
    args = ["collect", "pointmaze-tasks", str(out), "--episodes-per-task", "3,2,2,1,1"]
    args += ["--max-steps", "200", "--noise-per-task", "0.1,0.1,0.1,0.1,1.5"]
    assert main([*args, "--off-task", "0,0,1,0,0", "--seed", "2"]) == 0
    return out


def test_medium_goals_and_names_are_ogbench_tasks() -> None:
    from gcrl.envs.pointmaze import make_ogbench_env

    env = make_ogbench_env("medium")
    try:
        assert [tuple(map(float, t["goal_xy"])) for t in env.task_infos] == list(MEDIUM_GOALS)
        assert [t.name for t in maze_tasks("medium")[0]] == [t["task_name"] for t in env.task_infos]
    finally:
        env.close()
    assert [t.name for t in suite("pointmaze-medium-tasks").tasks] == [
        t.name for t in maze_tasks("medium")[0]
    ]


def test_uneven_data_has_the_requested_episodes_rewards_on_s_prime_and_off_task_play(
    uneven: Path,
) -> None:
    data = load_native(uneven)
    assert data.task_ids is not None
    episode_tasks = data.task_ids[data.episode_starts]
    np.testing.assert_array_equal(np.bincount(episode_tasks), [3, 2, 2, 1, 1])
    assert not data.terminals.any() and data.timeouts.sum() == 9, "every episode is cut"
    # Every task's reward is computed on s' (next_observations), the shipped function's.
    matrix = data.infos["task_rewards"]
    np.testing.assert_array_equal(
        matrix, task_rewards(data.observations, data.actions, data.next_observations)
    )
    on_s = task_rewards(None, None, data.observations)
    assert not np.array_equal(matrix, on_s), "s and s' differ where the ball enters a goal"
    np.testing.assert_array_equal(data.rewards, matrix[np.arange(len(data)), data.task_ids])
    xy = data.next_observations["achieved_goal"]
    for m, goal in enumerate(MEDIUM_GOALS):
        inside = np.linalg.norm(xy - np.array(goal), axis=1) <= SUCCESS_RADIUS
        np.testing.assert_array_equal(matrix[:, m] > 0, inside)
    # Task 3's episodes chase another task's goal (--off-task 1); the others their own.
    pursued = data.infos["pursued_task"][data.episode_starts]
    assert (pursued[episode_tasks == 2] != 2).all()
    np.testing.assert_array_equal(pursued[episode_tasks != 2], episode_tasks[episode_tasks != 2])
    returns = np.add.reduceat(data.rewards, data.episode_starts)
    assert (returns[episode_tasks == 0] > 0).all(), "the clean expert reaches its goal"


def test_detour_episodes_pass_through_another_goal_then_solve_their_own(tmp_path: Path) -> None:
    out = tmp_path / "detour.hdf5"
    args = ["collect", "pointmaze-tasks", str(out), "--episodes-per-task", "3,0,0,0,1"]
    args += ["--max-steps", "400", "--noise", "0.1", "--detour", "1,0,0,0,0", "--seed", "3"]
    assert main(args) == 0
    data = load_native(out)
    assert data.task_ids is not None
    matrix = data.infos["task_rewards"]
    pursued = data.infos["pursued_task"]
    ends = np.r_[data.episode_starts[1:], len(data)]
    for start, end in zip(data.episode_starts, ends, strict=True):
        task = int(data.task_ids[start])
        legs = pursued[start:end]
        if task == 4:  # no detour share: straight to its own goal
            assert (legs == 4).all()
            continue
        # Task 1's episodes head first for one other goal, reach it, then switch to their own.
        other = int(legs[0])
        assert other != 0
        switch = int(np.argmax(legs != other))
        assert switch > 0 and (legs[switch:] == 0).all(), "one switch, to the episode's own task"
        assert matrix[start + switch - 1, other] == 1, "the switch follows reaching that goal"
        assert matrix[start + switch :, 0].any(), "then the episode solves its own task"
        np.testing.assert_array_equal(data.rewards[start:end], matrix[start:end, 0])
    with h5py.File(out, "r") as f:
        assert "--detour 1.0,0.0,0.0,0.0,0.0" in str(f.attrs["collect_command"])
        assert str(f.attrs["detour"]) == "[1.0, 0.0, 0.0, 0.0, 0.0]"


def test_options_errors() -> None:
    with pytest.raises(ConfigError, match="episodes_per_task: 2 values for the maze's 5 tasks"):
        PointMazeTasksOptions(episodes_per_task=(1, 2)).per_task(5)
    with pytest.raises(ConfigError, match="off_task: shares must lie in"):
        PointMazeTasksOptions(off_task=(0.0, 2.0, 0.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match="detour: shares must lie in"):
        PointMazeTasksOptions(detour=(-0.1,))
    with pytest.raises(ConfigError, match="shares of task 2 add up to more than 1"):
        PointMazeTasksOptions(off_task=(0.0, 0.6), detour=(0.0, 0.5))


def test_the_expert_of_each_task_solves_the_suite_and_a_one_hot_policy_is_evaluated(
    uneven: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = suite("pointmaze-medium-tasks")
    goals = {t.name: np.array(g) for t, g in zip(chosen.tasks, MEDIUM_GOALS, strict=True)}
    env = chosen.make_env()
    expert = WaypointExpert(env.env, 0.0, np.random.default_rng(0))
    env.close()

    def by_task(observations: dict[str, np.ndarray], tasks: list[Task]) -> np.ndarray:
        xy = observations["observation"]
        return np.stack([expert(p, goals[t.name]) for p, t in zip(xy, tasks, strict=True)])

    report = evaluate(by_task, chosen, episodes=1, num_envs=5)  # type: ignore[arg-type]
    assert report.worst == 1.0, "each task's goal is reachable from its start"

    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "pointmaze-tasks-iql.yaml"), "--data.path"]
    args += [str(uneven), "--data.batch_size", "32", "--trainer.max_steps", "2"]
    args += ["--model.init_args.actor_hidden_dims", "[16]"]
    args += ["--model.init_args.value_hidden_dims", "[16]"]
    args += ["--data.task_sharing", "conservative", "--data.conservative_refresh", "1"]
    assert main([*args, "--trainer.enable_progress_bar", "false"]) == 0
    checkpoint = next((tmp_path / "runs" / "csv" / "version_0" / "checkpoints").glob("*.ckpt"))
    out = tmp_path / "r.json"
    evaluation = ["evaluate", str(checkpoint), "--env", "pointmaze-medium-tasks"]
    evaluation += ["--episodes", "1", "--tasks", "task1", "task5", "--json", str(out)]
    assert main(evaluation) == 0
    assert [t["name"] for t in json.loads(out.read_text())["tasks"]] == ["task1", "task5"]


def test_conservative_scores_come_from_the_critic_being_trained(uneven: Path) -> None:
    """Nothing is shared before the first refresh; afterwards a share is kept exactly when
    the current critic scores it at least its target task's threshold, the percentile of the
    critic's scores of that task's own (sampled) rows."""
    import lightning as L

    from gcrl.algorithms import IQL

    dm = TrajectoryDataModule(
        str(uneven),
        batch_size=64,
        relabel="none",
        task_sharing="conservative",
        conservative_percentile=30,
        conservative_refresh=3,
        steps_per_epoch=6,
        val_fraction=0.2,  # a validation stream of its own must not take the training one's
    )
    model = IQL(spec=dm.spec, task_signal="onehot", actor_hidden_dims=[16], value_hidden_dims=[16])
    seen: list[tuple[int, bool]] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
            shared = bool((batch.source_task_ids != batch.task_ids).any())
            seen.append((trainer.global_step, shared))

    trainer = L.Trainer(
        max_steps=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[Record()],
        enable_model_summary=False,
    )
    trainer.fit(AgentModule(model), dm)
    assert not any(shared for step, shared in seen if step < 2)
    assert any(shared for step, shared in seen if step >= 4)
    scores = dm.task_scores_of(dm.train_data)
    scores.refresh(model)
    data = dm.train_data

    def direct(rows: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        observations = {k: v[rows] for k, v in data.observations.items()}
        states = torch.from_numpy(dm.spec.network_state(observations))
        ids = torch.from_numpy(tasks)
        return model.sharing_scores(states, torch.from_numpy(data.actions[rows]), None, ids)

    for m, rows in enumerate(scores.sample_rows):
        assert (data.task_ids[rows] == m).all()
        own = direct(rows, np.full(len(rows), m)).numpy()
        assert scores.thresholds[m] == pytest.approx(np.percentile(own, 30), rel=1e-5)
    rows = np.arange(0, len(data), 7)
    targets = (data.task_ids[rows] + 1) % 5
    expected = direct(rows, targets).numpy() >= scores.thresholds[targets]
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(scores(rows, targets), expected)


def test_relabel_auto_reads_the_provenance_of_relabeled_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "nav.hdf5"
    assert main(["collect", "pointmaze", str(source), "--episodes", "2", "--max-steps", "60"]) == 0
    relabeled = tmp_path / "her.hdf5"
    assert main(["relabel", str(source), str(relabeled), "--strategy", "future", "--k", "2"]) == 0
    with caplog.at_level(logging.INFO):
        fresh = TrajectoryDataModule(str(source))
        again = TrajectoryDataModule(str(relabeled))
        forced = TrajectoryDataModule(str(relabeled), relabel="ogbench")
    assert fresh.relabel == "ogbench"
    assert again.relabel == "none", "a relabeled file is not relabeled a second time"
    assert forced.relabel == "ogbench"
    text = caplog.text
    assert "relabel ogbench (auto: the observations hold 'achieved_goal')" in text
    assert f"relabel none (auto: {relabeled} was written by gcrl relabel (future))" in text
    assert "relabels its copies a second time" in text
