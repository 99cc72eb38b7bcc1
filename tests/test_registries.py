"""The registries: goal strategies with their frozen file codes, and dataset formats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from gcrl.datasets import DatasetFormat, Trajectories, detect_format, load, register_format
from gcrl.datasets import loading as loading_module
from gcrl.errors import ConfigError, UnknownFormatError
from gcrl.relabel import GOAL_STRATEGIES, GoalMixture, GoalSampler, GoalStrategy
from gcrl.relabel import codes as codes_module
from gcrl.relabel import goals as goals_module
from gcrl.relabel.codes import BUILTIN_CODES, RELABEL_CODES, code_table
from gcrl.relabel.goals import goal_expansions, register_goal_strategy

from .conftest import make_trajectories

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: The code table gcrl 0.1.0 wrote into every relabeled file (``relabel_strategies``).
TABLE_0_1 = [
    "original",
    "current",
    "final",
    "future",
    "geometric",
    "episode",
    "random",
    "random-task",
    "high-reward",
    "zero-reward",
]


@pytest.fixture
def registries() -> Iterator[None]:
    """Restore the goal-strategy, code and format registries a test adds to."""
    strategies = dict(goals_module._strategies)
    codes = dict(codes_module._codes)
    formats = dict(loading_module.formats())
    yield
    for registry, saved in (
        (goals_module._strategies, strategies),
        (codes_module._codes, codes),
        (loading_module._REGISTRY, formats),
    ):
        registry.clear()
        registry.update(saved)  # type: ignore[attr-defined]


def test_the_built_in_codes_are_the_table_files_already_hold() -> None:
    built_in = [name for name, _ in sorted(BUILTIN_CODES.items(), key=lambda kv: kv[1])]
    assert built_in[: len(TABLE_0_1)] == TABLE_0_1, "codes are appended, never renumbered"
    assert built_in[len(TABLE_0_1) :] == ["hindsight-instruction"]
    assert code_table()[: len(TABLE_0_1)] == TABLE_0_1
    assert set(goal_expansions()) == {"final", "future", "geometric", "episode", "random"}


@pytest.mark.parametrize("name", ["relabeled-future.hdf5", "relabeled-zero-reward.hdf5"])
def test_files_relabeled_by_gcrl_0_1_decode_to_the_same_names(name: str) -> None:
    with h5py.File(FIXTURES / name) as f:
        table = json.loads(f.attrs["relabel_strategies"])
        strategy = f.attrs["relabel_strategy"]
        codes = f["infos/relabel_strategy"][()]
    assert table == TABLE_0_1
    by_code = {code: name for name, code in RELABEL_CODES.items()}
    decoded = {by_code[int(c)] for c in np.unique(codes)}
    assert decoded == {table[int(c)] for c in np.unique(codes)} == {"original", strategy}


def test_a_new_goal_strategy_is_one_registration(registries: None) -> None:
    before = dict(RELABEL_CODES)

    def step_back(query, rng, options):  # type: ignore[no-untyped-def]
        return np.maximum(query.states - 1, query.first)  # the previous state

    register_goal_strategy(GoalStrategy("previous", step_back))
    assert {k: RELABEL_CODES[k] for k in before} == before, "existing codes changed"
    assert RELABEL_CODES["previous"] == max(before.values()) + 1
    assert "previous" in GOAL_STRATEGIES and "previous" in goal_expansions()
    data = make_trajectories([6, 4], goal=True)
    sampler = GoalSampler(data, value_goals=GoalMixture.only("previous"), seed=0)
    batch = sampler.sample(4, rows=np.array([0, 3, 6, 9]))
    # Goals are achieved goals of s_{t-1} (s_0 for a first row): obs[..., 1] is the step.
    assert batch["value_goals"][:, 1].tolist() == [0.0, 2.0, 0.0, 2.0]
    with pytest.raises(ConfigError, match="registered already"):
        register_goal_strategy(GoalStrategy("previous", step_back))
    with pytest.raises(ConfigError, match="code 3 is taken"):
        register_goal_strategy(GoalStrategy("again", step_back), code=3)


def test_a_new_format_is_one_registration(tmp_path: Path, registries: None) -> None:
    """A toy text format: recognised by its first line, loaded into Trajectories."""
    source = tmp_path / "walk.txt"
    source.write_text("WALK\n0 1 2 3\n")

    def recognises(probe: loading_module.SourceProbe) -> bool:
        return probe.path.suffix == ".txt" and probe.head.startswith(b"WALK")

    def load_walk(path: Path) -> Trajectories:
        steps = np.array(Path(path).read_text().split()[1:], dtype=np.float32)[:, None]
        n = len(steps) - 1
        return Trajectories(
            observations=steps[:-1],
            actions=np.ones((n, 1), dtype=np.float32),
            rewards=np.zeros(n),
            terminals=np.eye(n, dtype=bool)[-1],
            timeouts=np.zeros(n, dtype=bool),
            next_observations=steps[1:],
            episode_starts=[0],
        )

    register_format(DatasetFormat("walk", "text", "a WALK header", recognises, load_walk))
    assert detect_format(source) == "walk"
    data = load(source)
    assert data.num_transitions == 3 and data.next_observations[:, 0].tolist() == [1, 2, 3]
    with pytest.raises(UnknownFormatError, match="registered already"):
        register_format(DatasetFormat("walk", "text", "", recognises, load_walk))
