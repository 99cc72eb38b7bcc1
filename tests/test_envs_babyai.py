"""The BabyAI recipe and the GoToLocal suite, on real minigrid levels."""

from __future__ import annotations

import argparse
from pathlib import Path

import minigrid  # noqa: F401  (the envs extra: a missing one fails, not skips)
import numpy as np
import pytest

from gcrl.cli.collect import add_options, options_from
from gcrl.datasets.native_format import NativeWriter, load_native
from gcrl.datasets.trajectories import Trajectories, concatenate
from gcrl.envs.babyai import (
    GOTOLOCAL_ID,
    IMAGE_SIZE,
    OBS_SIZE,
    RECIPE,
    SUITES,
    BabyAIOptions,
    NoisyBot,
    make_babyai_env,
    mission_is_held_out,
    reset_level,
)
from gcrl.errors import ConfigError, command_line_names
from gcrl.relabel import relabel_file

NUM_ACTIONS = 7


def options(*args: str) -> BabyAIOptions:
    """The recipe's options as ``gcrl collect`` builds them from its command line."""
    parser = argparse.ArgumentParser()
    add_options(parser, BabyAIOptions)
    parser.set_defaults(episodes=10, noise=0.0)
    with command_line_names():  # errors name options as the command line spells them
        return options_from(BabyAIOptions, parser.parse_args(list(args)))


def collect(*args: str) -> tuple[list[Trajectories], Trajectories]:
    parts = list(RECIPE.collect(options(*args)))
    return parts, concatenate(parts)


def missions_of(data: Trajectories) -> list[str]:
    """Each episode's mission, from its task label."""
    assert data.task_ids is not None
    return [data.tasks[int(data.task_ids[s])].text for s in data.episode_starts]


@pytest.fixture(scope="module")
def noisy() -> tuple[list[Trajectories], Trajectories]:
    return collect("--episodes", "12", "--noise", "0.3", "--seed", "3")


def test_mission_is_held_out_matches_whole_words() -> None:
    assert mission_is_held_out("go to the red ball", ["red ball"])
    assert mission_is_held_out("go to a red ball", ["Red  Ball"])
    assert mission_is_held_out("pick up a red ball, then open a door", ["red ball"])
    assert mission_is_held_out("go to the blue key", ["purple box", "blue key"])
    assert not mission_is_held_out("go to the red box", ["red ball"])
    assert not mission_is_held_out("go to the red key and the blue ball", ["red ball"])
    assert not mission_is_held_out("go to the tired balloon", ["red ball"])
    assert not mission_is_held_out("go to the red ball", [])
    assert not mission_is_held_out("go to the red ball", [" "])


def test_collect_yields_valid_episodes(noisy: tuple[list[Trajectories], Trajectories]) -> None:
    parts, data = noisy
    assert len(parts) == 12 and all(p.num_episodes == 1 for p in parts)
    assert data.num_episodes == 12
    assert isinstance(data.observations, np.ndarray) and isinstance(
        data.next_observations, np.ndarray
    )
    assert data.observations.shape == (len(data), OBS_SIZE)
    assert data.observations.dtype == np.float32
    assert data.actions.shape == (len(data),) and data.actions.dtype == np.int64
    assert data.actions.min() >= 0 and data.actions.max() < NUM_ACTIONS
    # Unscaled small-int image, then a one-hot direction.
    image = data.observations[:, :IMAGE_SIZE]
    assert np.array_equal(image, np.round(image)) and image.min() >= 0 and image.max() <= 10
    np.testing.assert_array_equal(data.observations[:, IMAGE_SIZE:].sum(axis=1), 1.0)
    # Row t + 1 observes what row t led to, within episodes.
    ends = data.episode_ends
    inner = np.setdiff1d(np.arange(len(data) - 1), ends - 1)
    np.testing.assert_array_equal(data.observations[inner + 1], data.next_observations[inner])
    # Terminals exactly at successful ends, timeouts at the others.
    last = ends - 1
    success = data.infos["success"]
    np.testing.assert_array_equal(success, data.rewards > 0)
    np.testing.assert_array_equal(data.terminals[last], success[last])
    np.testing.assert_array_equal(data.timeouts[last], ~success[last])
    assert data.terminals.sum() + data.timeouts.sum() == data.num_episodes
    assert 0 < data.infos["random_action"].mean() < 1


def test_task_texts_are_the_missions(
    noisy: tuple[list[Trajectories], Trajectories], tmp_path: Path
) -> None:
    parts, data = noisy
    env = make_babyai_env(GOTOLOCAL_ID)
    try:
        played = [
            str(reset_level(env, int(data.infos["env_seed"][s]))["mission"])
            for s in data.episode_starts
        ]
    finally:
        env.close()
    assert missions_of(data) == played
    assert all(t.name == t.text for t in data.tasks)
    # Each part carries the table so far, ids stable, in order of first appearance.
    first_seen = list(dict.fromkeys(played))
    assert [t.text for t in data.tasks] == first_seen
    for part in parts:
        assert part.tasks == data.tasks[: len(part.tasks)]
    # The writer merges the per-part tables into the same labels.
    path = tmp_path / "babyai.h5"
    with NativeWriter(path, attrs=RECIPE.attrs(options())) as writer:
        for part in parts:
            writer.append(part)
    loaded = load_native(path)
    assert missions_of(loaded) == played
    assert int(loaded.attrs["num_actions"]) == NUM_ACTIONS


def test_hold_out_rejects_missions() -> None:
    args = ("--episodes", "60", "--noise", "0", "--seed", "1")
    _, plain = collect(*args)
    _, held = collect(*args, "--hold-out", "red ball", "--hold-out", "green key")
    assert held.num_episodes == 60
    # Without the hold-out the same seeds do draw held-out missions ...
    assert any(mission_is_held_out(m, ["red ball"]) for m in missions_of(plain))
    # ... which the hold-out replaced by others.
    assert not any(mission_is_held_out(m, ["red ball", "green key"]) for m in missions_of(held))
    assert not any("red ball" in t.text or "green key" in t.text for t in held.tasks)
    plain_seeds = plain.infos["env_seed"][plain.episode_starts]
    held_seeds = held.infos["env_seed"][held.episode_starts]
    assert not np.array_equal(plain_seeds, held_seeds)
    assert RECIPE.attrs(options("--hold-out", "red ball"))["hold_out"] == ["red ball"]
    with pytest.raises(ConfigError):
        next(RECIPE.collect(options("--hold-out", " ")))


def test_same_seed_same_data() -> None:
    args = ("--episodes", "5", "--noise", "0.3", "--seed", "7")
    _, first = collect(*args)
    _, again = collect(*args)
    _, other = collect("--episodes", "5", "--noise", "0.3", "--seed", "8")
    assert first.equals(again)
    assert not first.equals(other)


def test_noiseless_bot_solves_every_episode() -> None:
    _, data = collect("--episodes", "40", "--noise", "0", "--seed", "2")
    assert data.terminals.sum() == 40
    assert not data.infos["random_action"].any()
    assert data.episode_lengths.max() < 64


def test_bot_recovers_after_off_policy_actions() -> None:
    """At high noise a random toggle sometimes opens a box and the bot gives up; it is
    re-created and every step still gets a valid action."""
    env = make_babyai_env(GOTOLOCAL_ID)
    bot = NoisyBot(env, 0.6, np.random.default_rng(0))
    successes = episodes = 0
    try:
        while bot.restarts == 0 and episodes < 400:
            reset_level(env, episodes)
            bot.start()
            while True:
                action, _ = bot.act()
                assert 0 <= action < NUM_ACTIONS
                _, reward, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    break
            successes += reward > 0
            episodes += 1
    finally:
        env.close()
    assert bot.restarts > 0
    assert successes >= 0.9 * episodes


def test_max_steps_cuts_episodes() -> None:
    _, data = collect("--episodes", "6", "--noise", "1", "--max-steps", "3")
    assert data.episode_lengths.max() <= 3
    last = data.episode_ends - 1
    np.testing.assert_array_equal(data.timeouts[last], ~data.infos["success"][last])
    assert data.timeouts.any()


def test_gotolocal_suite_resets_to_the_requested_mission() -> None:
    suite = SUITES["babyai-gotolocal"]()
    assert suite.name == "babyai-gotolocal" and suite.max_steps == 64
    texts = [t.text for t in suite.tasks]
    assert len(texts) == 36 and texts == sorted(set(texts))
    assert all(t.name == t.text for t in suite.tasks)
    env = suite.make_env(render=True)
    try:
        # Every mission the level draws is one of the suite's tasks.
        for seed in range(100):
            assert str(reset_level(env.env, seed)["mission"]) in texts
        task = texts.index("go to the red ball")
        obs = env.reset(task, seed=5)
        assert obs.shape == (OBS_SIZE,) and obs.dtype == np.float32
        assert env.env.unwrapped.mission == "go to the red ball"
        np.testing.assert_array_equal(env.reset(task, seed=5), obs)
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        # Play the bot through the suite's environment: it reaches the ball.
        from minigrid.utils.baby_ai_bot import BabyAIBot

        env.reset(task, seed=5)
        bot = BabyAIBot(env.env)
        wrap = (int, np.asarray, lambda a: np.array([a]))
        for t in range(suite.max_steps):
            step = env.step(wrap[t % 3](bot.replan()))
            assert step.observation.shape == (OBS_SIZE,)
            if step.done:
                break
        assert step.done and step.success and step.reward > 0
        with pytest.raises(ValueError):
            env.step(np.array(NUM_ACTIONS))
        with pytest.raises(ValueError):
            env.step(np.array([0, 1]))
    finally:
        env.close()


def replay(env_seed: int, mission: str, actions: np.ndarray) -> list[tuple[float, bool]]:
    """``(reward, terminated)`` of each recorded action replayed in the level regenerated from
    ``env_seed`` with its mission replaced by the GoTo mission ``mission``."""
    from minigrid.envs.babyai.core.verifier import GoToInstr, ObjDesc

    env = make_babyai_env(GOTOLOCAL_ID)
    try:
        reset_level(env, env_seed)
        level = env.unwrapped
        colour, kind = mission.split()[-2:]
        level.instrs = GoToInstr(ObjDesc(kind, colour))
        level.instrs.reset_verifier(level)
        assert level.instrs.surface(level) == mission, "BabyAI words the mission the same"
        out = []
        for action in actions:
            _, reward, terminated, _, _ = env.step(int(action))
            out.append((float(reward), bool(terminated)))
            if terminated:
                break
        return out
    finally:
        env.close()


def test_hindsight_instructions_agree_with_the_environment() -> None:
    from gcrl.envs.babyai import hindsight_instructions
    from gcrl.relabel.instructions import hindsight_episodes

    _, data = collect("--episodes", "80", "--noise", "0.5", "--seed", "5", "--hold-out", "red ball")
    data = Trajectories._trusted(
        **{f: getattr(data, f) for f in data.__dataclass_fields__}
        | {"attrs": {"hold_out": ["red ball"]}}
    )
    table = hindsight_instructions(data)
    assert table.tasks[: len(data.tasks)] == data.tasks, "existing ids unchanged"
    relabeled = [s for s in data.episode_starts if table.task_ids[s] >= 0]
    assert len(relabeled) >= 5
    ends = dict(
        zip(data.episode_starts, np.append(data.episode_starts[1:], len(data)), strict=True)
    )
    for start in relabeled:
        end = ends[start]
        mission = table.tasks[int(table.task_ids[start])].text
        assert mission != data.tasks[int(data.task_ids[start])].text
        assert not mission_is_held_out(mission, ["red ball"])
        rows = np.arange(start, end)
        labelled = rows[table.task_ids[rows] >= 0]
        cut = labelled[-1]
        np.testing.assert_array_equal(labelled, np.arange(start, cut + 1))
        assert table.terminals[cut] and not table.terminals[start:cut].any()
        played = replay(int(data.infos["env_seed"][start]), mission, data.actions[start:end])
        # The environment ends the episode exactly at the cut, with the recomputed reward.
        assert len(played) == cut - start + 1
        assert played[-1][1]
        assert played[-1][0] == pytest.approx(float(table.rewards[cut]), abs=1e-6)
        assert all(r == 0 and not t for r, t in played[:-1])
        assert (table.rewards[start:cut] == 0).all()
    episodes = hindsight_episodes(data, table)
    assert episodes is not None and episodes.num_episodes == len(relabeled)
    assert episodes.terminals.sum() == len(relabeled)


def test_instruction_relabeling_on_the_fly(tmp_path: Path) -> None:
    from gcrl.envs.babyai import hindsight_instructions
    from gcrl.training.datamodule import TrajectoryDataModule

    parts, data = collect("--episodes", "40", "--noise", "0.3", "--seed", "7")
    path = tmp_path / "babyai.hdf5"
    with NativeWriter(path, attrs=RECIPE.attrs(options())) as writer:
        for part in parts:
            writer.append(part)
    table = hindsight_instructions(load_native(path))
    with pytest.raises(
        ConfigError, match=r"hindsight_fn: .*gcrl\.envs\.babyai:hindsight_instructions"
    ):
        TrajectoryDataModule(str(path), instruction_relabel_ratio=0.5)  # no function named
    module = TrajectoryDataModule(
        str(path),
        batch_size=512,
        instruction_relabel_ratio=0.5,
        hindsight_fn="gcrl.envs.babyai:hindsight_instructions",
    )
    assert module.spec.tasks == tuple(table.tasks), "hindsight missions join the task table"
    batch = module.sampler(module.data, np.random.default_rng(0)).sample(512)
    rows, relabeled = batch["rows"], batch["instruction_relabeled"]
    assert 0 < relabeled.sum() <= 256
    assert (table.task_ids[rows[relabeled]] >= 0).all()
    np.testing.assert_array_equal(batch["task_ids"][relabeled], table.task_ids[rows[relabeled]])
    np.testing.assert_array_equal(batch["rewards"][relabeled], table.rewards[rows[relabeled]])
    np.testing.assert_array_equal(batch["masks"][relabeled], ~table.terminals[rows[relabeled]])
    np.testing.assert_array_equal(batch["task_ids"][~relabeled], data.task_ids[rows[~relabeled]])


def test_gcrl_relabel_hindsight_instruction_writes_the_relabeled_episodes(tmp_path: Path) -> None:
    from gcrl.cli.main import main
    from gcrl.envs.babyai import hindsight_instructions
    from gcrl.relabel.codes import RELABEL_CODES

    parts, _ = collect("--episodes", "30", "--noise", "0.3", "--seed", "7")
    source = tmp_path / "babyai.hdf5"
    with NativeWriter(source, attrs=RECIPE.attrs(options())) as writer:
        for part in parts:
            writer.append(part)
    data = load_native(source)
    table = hindsight_instructions(data)
    out = tmp_path / "hindsight.hdf5"
    # gcrl.relabel imports no environment: from Python the caller names the function.
    with pytest.raises(ConfigError, match=r"hindsight_fn: .*MODULE:NAME"):
        relabel_file(source, out, strategy="hindsight-instruction")
    assert not out.exists()
    assert main(["relabel", str(source), str(out), "--strategy", "hindsight-instruction"]) == 0
    written = load_native(out)
    copies = written.infos["relabel_strategy"] == RELABEL_CODES["hindsight-instruction"]
    rows = written.infos["source_index"][copies]
    np.testing.assert_array_equal(rows, np.flatnonzero(table.relabelable))
    names = [written.tasks[int(t)].name for t in written.task_ids[copies]]
    assert names == [table.tasks[int(t)].name for t in table.task_ids[rows]]
    np.testing.assert_array_equal(written.rewards[copies], table.rewards[rows])
    assert written.attrs["relabel_strategy"] == "hindsight-instruction"
