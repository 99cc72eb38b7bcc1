"""OGBench's manipulation recipes (its own oracles) and the OGBench evaluation suite, on the
real simulators."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import ogbench  # noqa: F401  (the envs extra: a missing one fails, not skips)
import pytest
import torch
from ogbench.utils import load_dataset

from gcrl.algorithms import BC
from gcrl.cli.main import main
from gcrl.datasets import load
from gcrl.envs import RECIPES, suite
from gcrl.envs.collection import collect
from gcrl.envs.manipspace import ENVS, ManipSpaceOptions, scene_is_healthy
from gcrl.envs.ogbench_suite import OGBenchSuite, environment_id, is_ogbench_name
from gcrl.errors import ConfigError, GcrlError
from gcrl.training import TrajectoryDataModule

from .training_data import fit

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
STEPS = 60


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two cube-single play episodes of STEPS transitions."""
    path = tmp_path_factory.mktemp("cube") / "cube.hdf5"
    collect("cube-single", path, episodes=2, max_steps=STEPS, seed=3, progress=False)
    return path


def test_every_manipulation_recipe_is_registered_with_its_ogbench_id() -> None:
    for name in ("cube-single", "cube-double", "scene", "puzzle-3x3"):
        assert name in RECIPES
        assert ENVS[name] == f"{name}-v0"


def test_cube_single_rows_follow_ogbenchs_layout(cube: Path) -> None:
    data = load(cube)
    assert data.num_transitions == 2 * STEPS and data.num_episodes == 2
    assert isinstance(data.observations, np.ndarray) and data.observations.shape[1:] == (28,)
    assert data.actions.shape[1:] == (5,) and np.abs(data.actions).max() <= 1.0
    assert not data.terminals.any() and data.timeouts.sum() == 2  # cut, never terminated
    # s' of a row is the next row's s within an episode (no T+1 misalignment) ...
    inner = np.setdiff1d(np.arange(len(data)), data.episode_ends - 1)
    np.testing.assert_array_equal(data.next_observations[inner], data.observations[inner + 1])
    # ... and qpos is the simulator state at the row's own observation (the arm's six joint
    # angles open both), as OGBench stores prev_qpos.
    np.testing.assert_allclose(data.infos["qpos"][:, :6], data.observations[:, :6], atol=1e-6)
    assert not np.allclose(data.infos["qpos"][1:, :6], data.observations[:-1, :6])
    assert data.attrs["env"] == "ogbench cube-single-v0" and data.attrs["dataset_type"] == "play"
    # The arm moves: the oracle acts, not a constant.
    assert data.actions.std(axis=0).max() > 0.05


def test_collection_follows_its_seed_and_leaves_numpys_global_state(
    cube: Path, tmp_path: Path
) -> None:
    np.random.seed(123)  # noqa: NPY002  (the global state the oracles would otherwise move)
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    again = tmp_path / "again.hdf5"
    collect("cube-single", again, episodes=2, max_steps=STEPS, seed=3, progress=False)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    np.testing.assert_array_equal(load(again).actions, load(cube).actions)
    other = tmp_path / "other.hdf5"
    collect("cube-single", other, episodes=2, max_steps=STEPS, seed=4, progress=False)
    assert not np.allclose(load(other).observations[0], load(cube).observations[0])


def test_noisy_puzzle_takes_its_random_actions_and_button_states(tmp_path: Path) -> None:
    path = tmp_path / "puzzle.hdf5"
    collect("puzzle-3x3", path, episodes=1, max_steps=STEPS, dataset_type="noisy", progress=False)
    data = load(path)
    assert data.attrs["p_random_action"] == pytest.approx(0.2)  # OGBench's for noisy puzzle
    assert data.infos["button_states"].shape == (STEPS, 9)
    assert set(np.unique(data.infos["button_states"])) <= {0, 1}


def test_an_npz_output_is_what_ogbenchs_loader_reads(tmp_path: Path) -> None:
    path = tmp_path / "scene-play.npz"
    assert main(["collect", "scene", str(path), "--episodes", "2", "--max-steps", "30"]) == 0
    compact = load_dataset(str(path), compact_dataset=True)
    assert compact["observations"].shape == (2 * 31, 40)  # 31 states per episode
    assert compact["valids"].sum() == 2 * 30
    assert load(path).num_transitions == 60


def test_scene_health_check_refuses_a_cube_out_of_view() -> None:
    qpos = np.zeros((3, 20))
    qpos[:, 14:17] = [0.4, 0.0, 0.02]
    assert scene_is_healthy(qpos)
    right = qpos.copy()
    right[1, 15] = 0.3
    assert not scene_is_healthy(right)
    left = qpos.copy()
    left[1, 15:17] = [-0.35, 0.02]
    assert not scene_is_healthy(left)
    left[1, 16] = 0.07  # in the drawer
    assert scene_is_healthy(left)


@pytest.mark.parametrize(
    ("values", "flag"),
    [({"p_random_action": 1.5}, "p_random_action"), ({"min_norm": -1.0}, "min_norm")],
)
def test_bad_options_are_one_line_errors(values: dict[str, float], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        ManipSpaceOptions(**values)  # type: ignore[arg-type]


def test_ogbench_names_map_to_environment_ids() -> None:
    assert environment_id("cube-single-play-v0") == "cube-single-v0"
    assert environment_id("antmaze-large-navigate-v0") == "antmaze-large-v0"
    assert environment_id("visual-puzzle-3x3-noisy-v0") == "visual-puzzle-3x3-v0"
    assert environment_id("scene-v0") == "scene-v0"
    assert is_ogbench_name("humanoidmaze-giant-stitch-v0")
    assert not is_ogbench_name("pointmaze-medium-tasks")


def test_the_suite_has_ogbenchs_tasks_goals_and_success() -> None:
    found = suite("pointmaze-medium-navigate-v0")
    assert isinstance(found, OGBenchSuite) and found.env_id == "pointmaze-medium-v0"
    assert found.max_steps == 1000 and len(found.tasks) == 5
    env = found.make_env()
    try:
        first = env.reset(task=2, seed=7)
        again = env.reset(task=2, seed=7)
        for key in ("observation", "desired_goal"):
            np.testing.assert_array_equal(first[key], again[key])
        # The goal is task 3's goal cell (with OGBench's noise), not the start.
        maze = env.env.unwrapped  # type: ignore[attr-defined]
        goal_cell = maze.task_infos[2]["goal_ij"]
        np.testing.assert_allclose(first["desired_goal"], maze.ij_to_xy(goal_cell), atol=1.1)
        step = env.step(np.zeros(2))
        assert not step.success and not step.done
        maze.set_xy(first["desired_goal"])  # put the ball on the goal: success ends it
        step = env.step(np.zeros(2))
        assert step.success and step.done
    finally:
        env.close()
    with pytest.raises(ConfigError, match="no-such"):
        suite("cube-no-such-v0")


def test_gcrl_evaluate_scores_a_policy_on_cube_single(
    cube: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dm = TrajectoryDataModule(
        str(cube), batch_size=16, steps_per_epoch=2, val_fraction=0, relabel="ogbench"
    )
    assert dm.spec.goal_dim == 28  # goals are whole states, as OGBench's
    trainer = fit(BC(spec=dm.spec, hidden_dims=[16], task_signal="goal"), dm, 2)
    trainer.save_checkpoint(tmp_path / "bc.ckpt")
    out = tmp_path / "eval.json"
    args = ["evaluate", str(tmp_path / "bc.ckpt"), "--env", "cube-single-v0", "--episodes", "1"]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    names = [task["name"] for task in result["tasks"]]
    assert names[0] == "task1_horizontal" and len(names) == 5
    assert all(task["mean_length"] == 200 for task in result["tasks"])  # the step limit


def test_chunked_collection_is_the_same_for_any_worker_count(tmp_path: Path) -> None:
    common = {"episodes": 3, "max_steps": 20, "seed": 1, "progress": False}
    one = tmp_path / "one.hdf5"
    two = tmp_path / "two.hdf5"
    collect("pointmaze", one, chunk_episodes=1, **common)  # type: ignore[arg-type]
    collect("pointmaze", two, chunk_episodes=1, workers=2, **common)  # type: ignore[arg-type]
    np.testing.assert_array_equal(load(one).actions, load(two).actions)
    assert load(one).num_episodes == 3 and load(one).attrs["chunk_episodes"] == 1
    assert not (tmp_path / "one.hdf5.parts").exists()  # chunks removed once joined
    # Another command's chunks are never mixed in.
    parts = tmp_path / "three.hdf5.parts"
    parts.mkdir()
    (parts / "plan.json").write_text('{"collect_command": "other", "chunks": 3}')
    with pytest.raises(GcrlError, match="another command"):
        collect("pointmaze", tmp_path / "three.hdf5", chunk_episodes=1, **common)  # type: ignore[arg-type]


def test_an_interrupted_chunked_collection_resumes_from_its_finished_chunks(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.hdf5"
    parts = tmp_path / "out.hdf5.parts"
    options = ["--episodes", "30", "--max-steps", "300", "--seed", "1", "--chunk-episodes", "1"]
    command = [str(Path(sys.executable).with_name("gcrl")), "collect", "pointmaze", str(out)]
    process = subprocess.Popen(
        [*command, *options, "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while len(list(parts.glob("chunk-*.hdf5"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    finished = sorted(parts.glob("chunk-*.hdf5"))
    assert len(finished) >= 2, "no chunk finished"
    assert process.poll() is None, "the collection finished before it could be stopped"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    assert b"Traceback" not in err
    assert not out.exists() and list(tmp_path.glob(".*.tmp")) == []
    assert list(parts.glob(".*.tmp")) == []  # workers' unfinished chunks are gone
    # A finished chunk is never played again: the first finished chunk's file, replaced by
    # the second's, is used as found. Two workers may finish chunks out of order.
    replaced, copied = (int(path.stem.split("-")[1]) for path in finished[:2])
    shutil.copyfile(finished[1], finished[0])
    resumed = subprocess.run([*command, *options], capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert not parts.exists()
    fresh = tmp_path / "fresh.hdf5"
    collect("pointmaze", fresh, episodes=30, max_steps=300, seed=1, chunk_episodes=1)  # type: ignore[arg-type]
    got, want = load(out), load(fresh)
    assert got.num_episodes == want.num_episodes == 30
    for episode in range(30):
        source = copied if episode == replaced else episode
        np.testing.assert_array_equal(got.episode(episode).actions, want.episode(source).actions)


def render_in_a_process_of_its_own(
    args: list[str], episodes: int | None = None, steps: int | None = None
) -> None:
    """``gcrl ARGS`` in a child process: MuJoCo's OpenGL backend is fixed per process when
    OpenGL is first imported, so rendering inside the test process would depend on what
    earlier tests imported (a broken EGL context there aborted the suite)."""
    if episodes is not None:
        args = [*args, "--episodes", str(episodes), "--max-steps", str(steps)]
    gcrl = str(Path(sys.executable).with_name("gcrl"))
    done = subprocess.run([gcrl, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_a_frame_stacking_image_policy_trains_on_visual_cube_and_is_evaluated_there(
    tmp_path: Path,
) -> None:
    data = tmp_path / "visual.hdf5"
    render_in_a_process_of_its_own(["collect", "visual-cube-single", str(data)], 2, 20)
    dm = TrajectoryDataModule(
        str(data), batch_size=8, steps_per_epoch=2, relabel="ogbench", frame_stack=2
    )
    assert dm.spec.image_shape == (64, 64, 6) and dm.spec.goal_image  # two frames stacked
    model = BC(spec=dm.spec, hidden_dims=[16], task_signal="goal", image_encoder="conv")
    trainer = fit(model, dm, 2)
    trainer.save_checkpoint(tmp_path / "bc.ckpt")
    out = tmp_path / "eval.json"
    args = ["evaluate", str(tmp_path / "bc.ckpt"), "--env", "visual-cube-single-v0"]
    args += ["--episodes", "1", "--tasks", "task1_horizontal"]  # 200 rendered steps: ~1 min
    render_in_a_process_of_its_own([*args, "--json", str(out)])
    (task,) = json.loads(out.read_text())["tasks"]
    assert task["name"] == "task1_horizontal" and task["mean_length"] == 200


def test_relabeling_visual_cube_with_k_4_grows_the_file_by_less_than_half(tmp_path: Path) -> None:
    data, out = tmp_path / "visual.hdf5", tmp_path / "her.hdf5"
    render_in_a_process_of_its_own(["collect", "visual-cube-single", str(data)], 2, 30)
    before = data.read_bytes()
    args = ["relabel", str(data), str(out), "--strategy", "future", "--k", "4"]
    assert main(args) == 0
    assert data.read_bytes() == before  # the input is only read
    growth = out.stat().st_size / data.stat().st_size
    assert growth < 1.5, growth  # copied, the images alone would make it about 5x
    assert main(["info", str(out)]) == 0


@pytest.mark.parametrize("name", ["scene", "visual-cube-single"])
def test_collect_prints_only_its_own_lines(name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY")}
    command = [
        str(Path(sys.executable).with_name("gcrl")),
        "collect",
        name,
        str(tmp_path / "o.hdf5"),
    ]
    done = subprocess.run(
        [*command, "--episodes", "1", "--max-steps", "5"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no gymnasium, GLFW or OpenGL notes
    assert done.stdout.splitlines() == [
        f"wrote 5 transitions in 1 episode to {tmp_path / 'o.hdf5'}"
    ]
