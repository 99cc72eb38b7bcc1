"""``gcrl relabel`` on real HDF5 files: row counts, provenance, untouched inputs, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from gcrl.cli.main import main
from gcrl.datasets import Task, concatenate, load, save
from gcrl.relabel.codes import RELABEL_CODES, code_table

from .conftest import make_trajectories

LENGTHS = [5, 1, 7, 3, 4]
REWARDS_MODULE = '''
import numpy as np

def by_task(observations, actions, next_observations):
    """Task 0 rewards the step reached, task 1 the episode index, task 2 pays 1."""
    state = next_observations["achieved_goal"]
    return np.stack([state[:, 1], state[:, 0], np.ones(len(actions))], axis=1)

PER_TASK = [lambda o, a, n: n["achieved_goal"][:, 1], lambda o, a, n: n["achieved_goal"][:, 0],
            lambda o, a, n: np.ones(len(a))]

def wrong_shape(observations, actions, next_observations):
    return np.zeros(3)

def goal_reward(observations, actions, next_observations):
    diff = next_observations["achieved_goal"] - next_observations["desired_goal"]
    return -np.linalg.norm(diff, axis=1)

def exits(observations, actions, next_observations):
    raise SystemExit(0)

def interrupts(observations, actions, next_observations):
    raise KeyboardInterrupt

def edits(observations, actions, next_observations):
    actions[:] = 0
    return np.zeros(len(actions))
'''


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def goal_file(tmp_path: Path) -> Path:
    return save(make_trajectories(LENGTHS, goal=True), tmp_path / "goals.hdf5")


@pytest.fixture
def multitask_file(tmp_path: Path) -> Path:
    parts = [make_trajectories(LENGTHS[:3], goal=True, seed=s) for s in range(3)]
    data = concatenate(parts, [Task(f"task{i}", f"do task {i}") for i in range(3)])
    return save(data, tmp_path / "multi.hdf5")


@pytest.fixture
def rewards_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_rewards.py").write_text(REWARDS_MODULE)
    monkeypatch.chdir(tmp_path)
    return "my_rewards.py"


@pytest.mark.parametrize("strategy", ["final", "future", "geometric", "episode", "random"])
def test_goal_strategies_write_originals_and_k_copies_with_provenance(
    goal_file: Path, tmp_path: Path, strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(goal_file)
    out = tmp_path / "out.hdf5"
    assert main(["relabel", str(goal_file), str(out), "--strategy", strategy, "--k", "3"]) == 0
    summary = capsys.readouterr().out
    n = sum(LENGTHS)
    assert f"{n} rows in -> {4 * n} rows out ({n} original, {3 * n} relabeled)" in summary
    assert "goal reached" in summary
    assert digest(goal_file) == before, "the input was modified"

    source, result = load(goal_file), load(out)
    assert result.num_transitions == 4 * n
    code = result.infos["relabel_strategy"]
    index = result.infos["source_index"]
    original = code == 0
    assert original.sum() == n and (code[~original] == RELABEL_CODES[strategy]).all()
    np.testing.assert_array_equal(np.bincount(index), np.full(n, 4))
    # Every row copies its source row: state, action, next state (goal aside).
    for key in ("observation", "achieved_goal"):
        np.testing.assert_array_equal(result.observations[key], source.observations[key][index])
        np.testing.assert_array_equal(
            result.next_observations[key], source.next_observations[key][index]
        )
    np.testing.assert_array_equal(result.actions, source.actions[index])
    np.testing.assert_array_equal(result.rewards[original], source.rewards)
    # Relabeled rows: goals are achieved goals of the same episode (bar random), the reward is
    # success on s', and the copy ends as a terminal exactly when it succeeds.
    goals = result.observations["desired_goal"][~original]
    np.testing.assert_array_equal(goals, result.next_observations["desired_goal"][~original])
    if strategy != "random":
        np.testing.assert_array_equal(
            goals[:, 0], result.observations["achieved_goal"][~original, 0]
        )
    reached = (
        np.linalg.norm(result.next_observations["achieved_goal"][~original] - goals, axis=1) <= 0.5
    )
    np.testing.assert_array_equal(result.rewards[~original], reached)
    np.testing.assert_array_equal(result.terminals[~original], reached)
    np.testing.assert_array_equal(result.timeouts[~original], ~reached)
    with h5py.File(out) as f:
        assert f.attrs["relabel_strategy"] == strategy
        assert json.loads(f.attrs["relabel_strategies"]) == code_table()
        assert json.loads(f.attrs["relabel_options"])["k"] == 3


def test_no_keep_original_small_chunks_and_seed(goal_file: Path, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.hdf5", tmp_path / "b.hdf5", tmp_path / "c.hdf5"
    args = ["relabel", str(goal_file), "--strategy", "future", "--no-keep-original"]
    assert main([*args[:2], str(a), *args[2:], "--seed", "3"]) == 0
    assert main([*args[:2], str(b), *args[2:], "--seed", "3"]) == 0
    assert main([*args[:2], str(c), *args[2:], "--seed", "3", "--chunk-rows", "4"]) == 0
    ta, tb, tc = load(a), load(b), load(c)
    assert ta.num_transitions == 4 * sum(LENGTHS) and (ta.infos["relabel_strategy"] > 0).all()
    assert ta.equals(tb), "same seed, different output"
    # Chunked streaming gives a valid file with the same provenance (draws differ).
    np.testing.assert_array_equal(
        np.sort(tc.infos["source_index"]), np.sort(ta.infos["source_index"])
    )
    steps = tc.observations["achieved_goal"][:, 1]
    assert (tc.observations["desired_goal"][:, 1] > steps).all(), "future goals"


def test_custom_goal_reward_function(goal_file: Path, tmp_path: Path, rewards_module: str) -> None:
    out = tmp_path / "out.hdf5"
    spec = f"{rewards_module}:goal_reward"
    assert (
        main(["relabel", str(goal_file), str(out), "--strategy", "final", "--reward-fn", spec]) == 0
    )
    result = load(out)
    copies = result.infos["relabel_strategy"] > 0
    distance = np.linalg.norm(
        result.next_observations["achieved_goal"] - result.next_observations["desired_goal"], axis=1
    )
    np.testing.assert_allclose(result.rewards[copies], -distance[copies], rtol=1e-6)


@pytest.mark.parametrize("spec", ["by_task", "PER_TASK"])
def test_task_strategies(
    multitask_file: Path,
    tmp_path: Path,
    rewards_module: str,
    spec: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = load(multitask_file)
    for strategy, extra in (
        ("random-task", ["--k", "2"]),
        ("high-reward", ["--top-k", "2"]),
        ("high-reward", ["--percentile", "50"]),
        ("high-reward", ["--temperature", "0.5", "--k", "1"]),
        ("zero-reward", ["--k", "1"]),
    ):
        out = tmp_path / f"{strategy}.hdf5"
        args = ["relabel", str(multitask_file), str(out), "--strategy", strategy, "--force"]
        assert main([*args, "--reward-fn", f"{rewards_module}:{spec}", *extra]) == 0, strategy
        assert "episodes shared per task" in capsys.readouterr().out
        result = load(out)
        copies = result.infos["relabel_strategy"] > 0
        index = result.infos["source_index"][copies]
        tasks = result.task_ids[copies]
        assert (tasks != source.task_ids[index]).all(), "shared with its own task"
        next_state = source.next_observations["achieved_goal"][index]
        expected = np.stack([next_state[:, 1], next_state[:, 0], np.ones(len(index))], axis=1)
        want = 0 if strategy == "zero-reward" else expected[np.arange(len(index)), tasks]
        np.testing.assert_array_equal(result.rewards[copies], want)
        if strategy == "random-task":
            assert copies.sum() == 2 * source.num_transitions
        assert result.tasks == source.tasks


def test_high_reward_top_1_picks_the_best_other_task(
    multitask_file: Path, tmp_path: Path, rewards_module: str
) -> None:
    out = tmp_path / "out.hdf5"
    args = ["relabel", str(multitask_file), str(out), "--strategy", "high-reward", "--top-k", "3"]
    assert main([*args, "--reward-fn", f"{rewards_module}:by_task", "--no-keep-original"]) == 0
    result = load(out)
    # With all three tasks in the top 3, every episode goes to both other tasks.
    source = load(multitask_file)
    assert result.num_transitions == 2 * source.num_transitions


def test_stored_task_reward_column(multitask_file: Path, tmp_path: Path) -> None:
    data = load(multitask_file)
    matrix = np.tile(np.arange(3, dtype=np.float32), (data.num_transitions, 1))
    stored = type(data)._trusted(
        **{**data.__dict__, "infos": {**data.infos, "task_rewards": matrix}}
    )
    path = save(stored, tmp_path / "stored.hdf5")
    out = tmp_path / "out.hdf5"
    assert main(["relabel", str(path), str(out), "--strategy", "high-reward", "--top-k", "1"]) == 0
    result = load(out)
    copies = result.infos["relabel_strategy"] > 0
    # Task 2 pays the most everywhere: every episode not of task 2 goes to task 2.
    assert (result.task_ids[copies] == 2).all() and (result.rewards[copies] == 2).all()
    assert copies.sum() == (data.task_ids != 2).sum()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strategy", "hindsight"], "--strategy: unknown 'hindsight'"),
        (
            ["--strategy", "future", "--goal-key", "position"],
            "observations/position: no such key (--goal-key)",
        ),
        (
            ["--strategy", "future", "--reward-fn", "no_such_module:f"],
            "cannot import 'no_such_module'",
        ),
        (
            ["--strategy", "future", "--reward-fn", "my_rewards.py:missing"],
            "has no attribute 'missing'",
        ),
        (
            ["--strategy", "future", "--reward-fn", "my_rewards.py:wrong_shape"],
            "returned shape (3,)",
        ),
        (["--strategy", "future", "--reward-fn", "nocolon"], "expected MODULE:NAME"),
        (["--strategy", "future", "--k", "0"], "--k: must be >= 1"),
        (["--strategy", "random-task"], "shares episodes between tasks, but the dataset has 0"),
    ],
)
def test_clear_errors(
    goal_file: Path,
    tmp_path: Path,
    rewards_module: str,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = digest(goal_file)
    out = tmp_path / "out.hdf5"
    assert main(["relabel", str(goal_file), str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("gcrl relabel: error:") and "\n" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.hdf5.*"))
    assert digest(goal_file) == before


def test_task_errors(
    multitask_file: Path, tmp_path: Path, rewards_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.hdf5"
    cases = [
        (
            ["--strategy", "high-reward", "--reward-fn", "my_rewards.py:by_task"],
            "choose the selection rule",
        ),
        (["--strategy", "high-reward", "--top-k", "1"], "infos/task_rewards"),
        (
            ["--strategy", "random-task", "--reward-fn", "my_rewards.py:wrong_shape"],
            "returned shape (3,)",
        ),
    ]
    for extra, message in cases:
        assert main(["relabel", str(multitask_file), str(out), *extra]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_refuses_to_overwrite_and_to_write_over_its_input(
    goal_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.hdf5"
    out.write_bytes(b"keep me")
    assert main(["relabel", str(goal_file), str(out), "--strategy", "final"]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["relabel", str(goal_file), str(goal_file), "--strategy", "final", "--force"]) == 2
    assert "the output is also an input" in capsys.readouterr().err
    assert main(["relabel", str(goal_file), str(out), "--strategy", "final", "--force"]) == 0


def test_relabels_minari_datasets(
    pointmaze_minari: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, dataset_id = pointmaze_minari
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    out = tmp_path / "out.hdf5"
    assert main(["relabel", dataset_id, str(out), "--strategy", "future", "--k", "1"]) == 0
    source, result = load(dataset_id), load(out)
    assert result.num_transitions == 2 * source.num_transitions


def test_within_goal_segments_draws_hindsight_goals_inside_each_pursuit(tmp_path: Path) -> None:
    """Navigate-style play: the stored goal changes mid-episode; with --within-goal-segments
    every hindsight goal is a state of the pursuit its row belongs to."""
    from gcrl.datasets.trajectories import replace_fields
    from gcrl.relabel.expand import split_at_goal_changes

    data = make_trajectories([12, 9], goal=True, seed=4)
    goals = data.observations["desired_goal"].copy()
    goals[5:12] += 10.0  # episode 0 switches goal after row 4; episode 1 keeps one
    observations = dict(data.observations) | {"desired_goal": goals}
    nxt = dict(data.next_observations) | {"desired_goal": goals}
    data = replace_fields(data, observations=observations, next_observations=nxt)
    split = split_at_goal_changes(data)
    assert split.episode_starts.tolist() == [0, 5, 12]
    assert split.timeouts[[4, 11, 20]].all() and split.timeouts.sum() == 3
    source = save(data, tmp_path / "nav.hdf5")
    out = tmp_path / "her.hdf5"
    args = ["relabel", str(source), str(out), "--strategy", "future", "--k", "6"]
    assert main([*args, "--within-goal-segments"]) == 0
    written = load(out)
    copies = written.infos["relabel_strategy"] > 0
    rows = written.infos["source_index"][copies]
    goal_steps = written.observations["desired_goal"][copies]
    # Goal (episode, step) -> the state's step; each goal's state lies in the row's pursuit.
    achieved = data.next_observations["achieved_goal"]
    segment_of = np.repeat(np.arange(3), np.diff([0, 5, 12, 21]))
    for row, goal in zip(rows, goal_steps, strict=True):
        match = np.flatnonzero((achieved == goal).all(axis=1))
        assert len(match) == 1 and segment_of[match[0]] == segment_of[row]
        assert match[0] >= row
    plain = tmp_path / "plain.hdf5"
    assert main(["relabel", str(source), str(plain), *args[3:]]) == 0
    crossed = load(plain)
    crossing = [
        segment_of[np.flatnonzero((achieved == g).all(axis=1))[0]] != segment_of[r]
        for r, g in zip(
            crossed.infos["source_index"][crossed.infos["relabel_strategy"] > 0],
            crossed.observations["desired_goal"][crossed.infos["relabel_strategy"] > 0],
            strict=True,
        )
    ]
    assert any(crossing), "without the option, goals cross into the next pursuit"


def test_reward_fn_code_is_contained(
    goal_file: Path, tmp_path: Path, rewards_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the named code runs (a module in the working directory is not importable by bare
    name), and what it does cannot end the run silently or change the data written."""
    planted = tmp_path / "secrets.py"
    planted.write_text("open('ran', 'w').close()\n")
    out = tmp_path / "out.hdf5"
    args = ["relabel", str(goal_file), str(out), "--strategy", "final", "--k", "1"]
    assert main([*args, "--reward-fn", "numpy:zeros_like", "--force"]) == 2  # wrong shape
    assert not (tmp_path / "ran").exists(), "a module in the working directory ran"
    capsys.readouterr()
    assert main([*args, "--reward-fn", "my_rewards:goal_reward"]) == 2
    assert "write my_rewards.py:goal_reward" in capsys.readouterr().err
    for name, message in (
        ("exits", "raised SystemExit"),
        ("interrupts", "raised KeyboardInterrupt"),
        ("edits", "read-only"),
    ):
        assert main([*args, "--reward-fn", f"{rewards_module}:{name}"]) == 2, name
        err = capsys.readouterr().err
        assert message in err and "\n" not in err.strip(), err
        assert not out.exists()
    assert main([*args, "--reward-fn", f"{rewards_module}:goal_reward"]) == 0
