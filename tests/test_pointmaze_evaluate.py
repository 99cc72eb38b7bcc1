"""The pointmaze recipe in OGBench's real maze, ``gcrl collect``, the evaluator and
``gcrl evaluate`` with its JSON, PNG and GIF outputs."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import ogbench  # noqa: F401  (the eval extra: a missing one fails, not skips)
import pytest
import torch

from gcrl.cli.main import main
from gcrl.datasets import Task, load
from gcrl.datasets.native_format import load_native
from gcrl.envs import suite
from gcrl.envs.pointmaze import SUCCESS_RADIUS, WaypointExpert
from gcrl.errors import ConfigError
from gcrl.evaluation import evaluate

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pm") / "pm.hdf5"
    args = ["collect", "pointmaze", str(out), "--episodes", "4", "--max-steps", "120"]
    assert main([*args, "--seed", "3"]) == 0
    return out


def test_collect_writes_the_requested_dataset(small: Path) -> None:
    data = load_native(small)
    assert data.num_episodes == 4 and data.num_transitions == 4 * 120
    assert set(data.observations) == {"observation", "achieved_goal", "desired_goal"}
    assert not data.terminals.any()
    assert data.timeouts.sum() == 4 and data.timeouts[data.episode_ends - 1].all()
    assert [t.name for t in data.tasks] == ["reach"]
    with h5py.File(small) as f:
        command = f.attrs["collect_command"]
    assert command.startswith("gcrl collect pointmaze") and "--seed 3" in command


def test_collect_from_python_writes_what_its_recorded_command_writes(
    small: Path, tmp_path: Path
) -> None:
    """gcrl.envs.collection.collect is what `gcrl collect` runs: the same values give the same
    rows and the same recorded command, and that command, run again, the same rows."""
    from gcrl.envs.collection import collect

    out = tmp_path / "python.hdf5"
    done = collect("pointmaze", out, episodes=4, max_steps=120, seed=3, progress=False)
    assert (done.transitions, done.episodes, done.output) == (480, 4, out)
    assert load_native(out).equals(load_native(small))
    with h5py.File(out) as f, h5py.File(small) as g:
        command = str(f.attrs["collect_command"])
        assert command == str(g.attrs["collect_command"]).replace(str(small), str(out))
    again = tmp_path / "again.hdf5"
    assert main([*shlex.split(command.replace(str(out), str(again)))[1:]]) == 0
    assert load_native(again).equals(load_native(small))
    with pytest.raises(ConfigError, match="unknown option 'episode'"):
        collect("pointmaze", tmp_path / "never.hdf5", episode=3)
    assert not (tmp_path / "never.hdf5").exists()


def test_rows_are_aligned_and_rewards_judge_s_prime_against_the_pursued_goal(small: Path) -> None:
    data = load_native(small)
    obs, nxt = data.observations, data.next_observations
    inside = np.setdiff1d(np.arange(data.num_transitions - 1), data.episode_ends - 1)
    for key in obs:  # s_{t+1} of row t is s of row t + 1 within an episode
        np.testing.assert_array_equal(nxt[key][inside], obs[key][inside + 1])
    distance = np.linalg.norm(nxt["achieved_goal"] - obs["desired_goal"], axis=1)
    np.testing.assert_array_equal(data.rewards, (distance <= SUCCESS_RADIUS).astype(np.float32))
    np.testing.assert_array_equal(data.infos["success"], data.rewards > 0)
    # Navigate style: a goal reached is replaced by a new one at the next observation.
    reached = np.flatnonzero(data.rewards[inside] > 0)
    assert len(reached) > 0
    changed = obs["desired_goal"][inside[reached] + 1] != obs["desired_goal"][inside[reached]]
    assert changed.any(axis=1).all()


def test_collect_is_seeded(small: Path, tmp_path: Path) -> None:
    again, other = tmp_path / "again.hdf5", tmp_path / "other.hdf5"
    base = ["collect", "pointmaze", "--episodes", "4", "--max-steps", "120"]
    assert main([*base[:2], str(again), *base[2:], "--seed", "3"]) == 0
    assert main([*base[:2], str(other), *base[2:], "--seed", "4"]) == 0
    assert load_native(again).equals(load_native(small))
    assert not load_native(other).equals(load_native(small))


def test_collect_minari_round_trip(small: Path, tmp_path: Path) -> None:
    root = tmp_path / "minari"
    args = ["collect", "pointmaze", str(root), "--episodes", "4", "--max-steps", "120"]
    assert main([*args, "--seed", "3", "--minari-id", "gcrl/pm-test-v0"]) == 0
    loaded = load(root / "gcrl" / "pm-test-v0")
    native = load_native(small)
    assert loaded.num_transitions == native.num_transitions
    np.testing.assert_allclose(loaded.actions, native.actions)
    np.testing.assert_allclose(
        loaded.next_observations["achieved_goal"], native.next_observations["achieved_goal"]
    )
    assert loaded.tasks == native.tasks
    np.testing.assert_array_equal(loaded.infos["success"], native.infos["success"])


def test_collect_errors(tmp_path: Path, small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "pointmaze", str(tmp_path / "x.hdf5"), "--episodes", "0"]) == 2
    assert "--episodes" in capsys.readouterr().err
    before = small.read_bytes()
    assert main(["collect", "pointmaze", str(small), "--episodes", "1", "--max-steps", "5"]) == 2
    assert "exists" in capsys.readouterr().err
    assert small.read_bytes() == before


def _expert(noise: float) -> object:
    env = suite("pointmaze-medium").make_env()  # maze geometry for the expert's planning
    expert = WaypointExpert(env.env, noise, np.random.default_rng(0))

    def policy(observations: dict[str, np.ndarray], tasks: Sequence[Task]) -> np.ndarray:
        return np.stack(
            [
                expert(o.astype(np.float64), g.astype(np.float64))
                for o, g in zip(
                    observations["observation"], observations["desired_goal"], strict=True
                )
            ]
        )

    return policy


def test_the_scripted_expert_solves_every_evaluation_task() -> None:
    report = evaluate(_expert(0.0), suite("pointmaze-medium"), episodes=2, num_envs=4)  # type: ignore[arg-type]
    assert [t.name for t in report.tasks] == [f"task{i}" for i in range(1, 6)]
    assert report.worst == 1.0 and report.mean == 1.0
    assert all(t.mean_length < 400 for t in report.tasks)


def test_making_a_maze_leaves_no_file_in_the_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OGBench writes each maze's XML with mkstemp and keeps it; gcrl's environments don't."""
    import tempfile

    from gcrl.envs.pointmaze import make_ogbench_env

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env = make_ogbench_env("medium")
    try:
        env.reset(seed=0)
        env.step(np.zeros(2, dtype=np.float32))
    finally:
        env.close()
    assert list(tmp_path.iterdir()) == []
    assert tempfile.tempdir == str(tmp_path)


def test_a_policy_that_does_not_move_never_succeeds_and_reports_are_seeded() -> None:
    def still(observations: dict[str, np.ndarray], tasks: Sequence[Task]) -> np.ndarray:
        return np.zeros((len(tasks), 2), dtype=np.float32)

    chosen = suite("pointmaze-medium")
    report = evaluate(still, chosen, episodes=2, tasks=["task3"], num_envs=2)
    assert report.mean == 0.0 and report.tasks[0].mean_length == chosen.max_steps
    noisy = _expert(0.5)
    first = evaluate(noisy, chosen, episodes=3, tasks=["task2", "task4"], seed=7)  # type: ignore[arg-type]
    again = evaluate(_expert(0.5), chosen, episodes=3, tasks=["task2", "task4"], seed=7)  # type: ignore[arg-type]
    assert first.to_dict() == again.to_dict()
    with pytest.raises(ConfigError, match="no task 'task9'"):
        evaluate(still, chosen, episodes=1, tasks=["task9"])


def test_evaluate_cli_writes_json_plot_curves_and_videos(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "pointmaze-gcbc.yaml"), "--data.path", str(small)]
    args += ["--data.batch_size", "32", "--model.init_args.hidden_dims", "[16]"]
    args += ["--trainer.max_steps", "4", "--data.steps_per_epoch", "2"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"]
    assert main(args) == 0
    checkpoint = next((tmp_path / "runs" / "csv" / "version_0" / "checkpoints").glob("*.ckpt"))
    out = ["--json", "r.json", "--plot", "r.png", "--curves", "c.png", "--video", "videos"]
    args = ["evaluate", str(checkpoint), "--env", "pointmaze-medium", "--episodes", "2"]
    assert main([*args, "--tasks", "task3", "task5", *out]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["summary"]) == {"success_mean", "success_median", "success_worst"}
    assert [t["name"] for t in report["tasks"]] == ["task3", "task5"]
    for task in report["tasks"]:
        assert task["episodes"] == 2 and 0.0 <= task["success_rate"] <= 1.0
        assert 1 <= task["mean_length"] <= 1000
    for png in ("r.png", "c.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [
        "task3-0.gif",
        "task5-0.gif",
    ]
    from PIL import Image

    with Image.open(tmp_path / "videos" / "task3-0.gif") as gif:
        assert min(gif.size) >= 256  # the maze's 128 x 128 drawing upscaled
    # From Python: gcrl.evaluation.evaluate_checkpoint is what the command ran.
    from gcrl.evaluation import evaluate_checkpoint

    again = evaluate_checkpoint(
        checkpoint, "pointmaze-medium", episodes=2, tasks=["task3", "task5"], record=1
    )
    assert json.loads(json.dumps(again.to_dict())) == report
    with pytest.raises(ConfigError, match="env CartPole-v1: "):
        evaluate_checkpoint(checkpoint, "CartPole-v1", episodes=1)


def test_evaluate_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.ckpt"
    assert main(["evaluate", str(missing), "--env", "pointmaze-medium"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


#: An evaluation of task 3, one episode, every 2 steps (a ``--trainer.callbacks+`` value).
EVALUATION_CALLBACK = (
    '{"class_path": "gcrl.callbacks.EvaluationCallback", "init_args": '
    '{"env": "pointmaze-medium", "every_n_steps": 2, "episodes": 1, "tasks": ["task3"]}}'
)


def quick_fit(data: Path, steps_per_epoch: int) -> list[str]:
    """``gcrl fit`` of the quick start's BC (16 units, batch 32) on ``data`` with
    :data:`EVALUATION_CALLBACK`; the caller adds the steps."""
    args = ["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--data.path", str(data)]
    args += ["--data.batch_size", "32", "--model.init_args.hidden_dims", "[16]"]
    args += ["--data.steps_per_epoch", str(steps_per_epoch)]
    return [
        *args,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks+",
        EVALUATION_CALLBACK,
    ]


def test_fit_with_the_evaluation_callback_logs_success(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*quick_fit(small, 3), "--trainer.max_steps", "3"]) == 0
    from gcrl.plots import read_metrics

    metrics = read_metrics(tmp_path / "runs" / "csv" / "version_0" / "metrics.csv")
    steps, values = metrics["eval/success_mean"]
    assert list(steps) == [2.0, 3.0]  # every 2 steps, and after the last one
    assert ((values >= 0) & (values <= 1)).all()
    assert "eval/success/task3" in metrics


def test_bundled_dataset_is_the_recipe_output_it_records() -> None:
    from gcrl.io import bundled_datasets

    assert "pointmaze-medium-navigate" in bundled_datasets()
    data = load("bundled:pointmaze-medium-navigate")
    assert data.num_transitions == 60_000 and data.attrs["collect_command"].startswith(
        "gcrl collect pointmaze"
    )
    with pytest.raises(Exception, match="no such bundled dataset"):
        load("bundled:nothing")


def test_gymnasium_robotics_backend_records_navigate_play(tmp_path: Path) -> None:
    out = tmp_path / "gr.hdf5"
    args = ["collect", "pointmaze", str(out), "--backend", "gymnasium-robotics"]
    assert main([*args, "--episodes", "2", "--max-steps", "300", "--seed", "1"]) == 0
    data = load_native(out)
    assert data.num_transitions == 600 and data.observations["observation"].shape[1] == 4
    assert data.rewards.sum() >= 1  # the expert reaches goals; the env then draws new ones
    np.testing.assert_array_equal(data.infos["success"], data.rewards > 0)
    # The environment swaps the goal one observation after the one that reached it.
    reached = np.flatnonzero(data.rewards[:-2] > 0)
    reached = reached[~np.isin(reached, np.r_[data.episode_ends - 1, data.episode_ends - 2])]
    goals = data.observations["desired_goal"]
    assert len(reached) and (goals[reached + 2] != goals[reached]).any(axis=1).all()


def test_gcivl_fits_evaluates_and_loads_as_a_policy(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GCIVL end to end: ``gcrl fit`` with its config, ``gcrl evaluate`` in the real
    environment, and ``gcrl.load_policy`` on raw observations."""
    from gcrl.policy import load_policy

    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "pointmaze-gcivl.yaml"), "--data.path", str(small)]
    args += ["--data.batch_size", "32", "--model.init_args.actor_hidden_dims", "[16]"]
    args += ["--model.init_args.value_hidden_dims", "[16]", "--trainer.max_steps", "4"]
    args += ["--data.steps_per_epoch", "2", "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0
    checkpoint = next((tmp_path / "runs" / "csv" / "version_0" / "checkpoints").glob("*.ckpt"))
    args = ["evaluate", str(checkpoint), "--env", "pointmaze-medium", "--episodes", "1"]
    assert main([*args, "--tasks", "task1", "--json", "r.json"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["tasks"][0]["episodes"] == 1
    observations = {k: v[:3] for k, v in load(small).observations.items()}
    actions = load_policy(checkpoint)(observations)
    assert actions.shape == (3, 2) and np.abs(actions).max() <= 1.0


def test_a_resumed_fit_evaluates_on_the_same_steps_as_an_uninterrupted_one(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcrl.plots import read_metrics

    monkeypatch.chdir(tmp_path)
    saver = '{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": '
    saver += f'{{"dirpath": "{tmp_path / "ckpt"}", "every_n_train_steps": 2, "save_last": true}}}}'
    args = [*quick_fit(small, 10), "--trainer.callbacks+", saver]
    assert main([*args, "--trainer.max_steps", "2"]) == 0
    assert (
        main([*args, "--trainer.max_steps", "5", "--ckpt_path", str(tmp_path / "ckpt/last.ckpt")])
        == 0
    )
    resumed = read_metrics(tmp_path / "runs" / "csv" / "version_1" / "metrics.csv")
    steps, _ = resumed["eval/success_mean"]
    assert list(steps) == [4.0, 5.0]  # not again at step 3, the first after resuming
