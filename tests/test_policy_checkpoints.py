"""gcrl.policy: checkpoints load safely, by their class path, and old ones still load."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gcrl.algorithms import BC, IQL
from gcrl.cli.main import main
from gcrl.datasets import load
from gcrl.errors import ConfigError, DataError, DatasetNotFoundError
from gcrl.policy import load_agent, load_policy
from gcrl.spec import CHECKPOINT_KEY, InputSpec
from gcrl.training import TrajectoryDataModule

from .training_data import fit, goal_reaching

# The test networks are tiny: one thread avoids synchronisation costs (and oversubscribing
# the 2 cores when other work runs).
torch.set_num_threads(1)


def test_checkpoints_load_safely_and_refuse_the_wrong_algorithm(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=5, length=8)
    dm = TrajectoryDataModule(str(path), batch_size=16, steps_per_epoch=2)
    model = BC(spec=dm.spec, hidden_dims=[16])
    trainer = fit(model, dm, 2, default_root_dir=tmp_path)
    ckpt = tmp_path / "bc.ckpt"
    trainer.save_checkpoint(ckpt)
    restored = load_agent(ckpt, BC)
    for a, b in zip(restored.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    policy = load_policy(ckpt)
    data = load(path)
    obs = {k: v[:4] for k, v in data.observations.items()}
    actions = policy(obs)  # goals from desired_goal
    expected = model.act(
        torch.as_tensor(obs["observation"], dtype=torch.float32),
        torch.as_tensor(obs["desired_goal"], dtype=torch.float32),
    )
    np.testing.assert_allclose(actions, expected.numpy(), rtol=1e-6)
    with pytest.raises(ConfigError, match="a BC checkpoint, not IQL"):
        load_agent(ckpt, IQL)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_policy(corrupt)
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="not a gcrl checkpoint"):
        load_policy(tmp_path / "other.ckpt")
    with pytest.raises(DatasetNotFoundError):
        load_policy(tmp_path / "missing.ckpt")
    assert math.isfinite(float(policy(obs["observation"][0], goals=obs["desired_goal"][0])[0]))


# --------------------------------------------------------------------- gcrl 0.1.0 checkpoints
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_checkpoints_written_by_gcrl_0_1_load_and_act_as_they_did() -> None:
    """Checkpoints made before the InputSpec redesign (tests/fixtures/README.md) still load,
    with their normalisation, heads and text table, and give the actions they gave then."""
    probes = np.load(FIXTURES / "checkpoint-probes.npz")
    bc = load_policy(FIXTURES / "bc-goal-normalized.ckpt")
    assert bc.spec.observation_scale is not None and bc.spec.goal_scale is not None
    observations = {
        "observation": probes["bc_observation"],
        "desired_goal": probes["bc_desired_goal"],
    }
    np.testing.assert_allclose(bc(observations), probes["bc_actions"], rtol=1e-6, atol=1e-7)
    iql = load_policy(FIXTURES / "iql-onehot-multihead.ckpt")
    assert iql.agent.num_heads == 2 and iql.task_names == ["left", "right"]
    actions = iql(probes["iql_observations"], task_ids=probes["iql_task_ids"])
    np.testing.assert_allclose(actions, probes["iql_actions"], rtol=1e-6, atol=1e-7)
    dqn = load_policy(FIXTURES / "dqn-text.ckpt")
    np.testing.assert_array_equal(
        dqn(probes["dqn_observations"], task_ids=0), probes["dqn_actions"]
    )


def test_checkpoints_written_by_gcrl_0_2_load_as_agents_and_act_as_they_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcrl 0.2.0 (commit 281cb7f) saved whole LightningModules: HIQL (which acted in its own
    way, loaded whole then), TD3+BC (two parameter groups), Distral (its ``prior`` from an
    acting record) and IQL in the CARE layout. Each is rebuilt as an agent, acts as it did,
    and resumes training under ``gcrl fit``."""
    probes = np.load(FIXTURES / "checkpoint-probes-0.2.npz")
    goal = {k: probes[f"goal_{k}"] for k in ("observation", "achieved_goal", "desired_goal")}
    tasks = {k: probes[f"tasks_{k}"] for k in ("observation", "achieved_goal", "desired_goal")}
    ids = probes["tasks_task_ids"]
    cases = [
        ("hiql-goal-0.2.ckpt", None, goal, None, "hiql_actions"),
        ("td3bc-goal-0.2.ckpt", None, goal, None, "td3bc_actions"),
        ("distral-onehot-0.2.ckpt", None, tasks, ids, "distral_actions"),
        ("distral-onehot-0.2.ckpt", "prior", tasks, ids, "distral_prior_actions"),
        ("iql-care-0.2.ckpt", None, tasks, ids, "iql_care_actions"),
    ]
    for name, which, observations, task_ids, expected in cases:
        policy = load_policy(FIXTURES / name, policy=which)
        actions = policy(observations, task_ids=task_ids)
        np.testing.assert_allclose(actions, probes[expected], rtol=1e-6, atol=1e-7, err_msg=name)
    raw = torch.load(FIXTURES / "td3bc-goal-0.2.ckpt", map_location="cpu", weights_only=True)
    agent = load_agent(FIXTURES / "td3bc-goal-0.2.ckpt")
    assert set(agent.state_dict()) == set(raw["state_dict"])  # the same keys: no renaming
    monkeypatch.chdir(tmp_path)
    data = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=8)  # the fixture's data
    args = ["fit", "--model", "gcrl.algorithms.TD3BC", "--data.path", str(data)]
    args += ["--data.batch_size", "16", "--trainer.max_steps", "5"]
    args += ["--trainer.enable_progress_bar", "false"]
    assert main([*args, "--ckpt_path", str(FIXTURES / "td3bc-goal-0.2.ckpt")]) == 0
    resumed = torch.load(next(tmp_path.glob("runs/csv/*/checkpoints/*.ckpt")), weights_only=True)
    assert resumed["global_step"] == 5 and raw["global_step"] == 3
    # Built as version 2 built its networks, and saved as such: it loads the same way again.
    assert resumed[CHECKPOINT_KEY]["networks_version"] == raw[CHECKPOINT_KEY]["networks_version"]
    assert raw[CHECKPOINT_KEY]["networks_version"] == 2


def test_an_old_spec_round_trips_through_the_new_layout() -> None:
    raw = torch.load(FIXTURES / "bc-goal-normalized.ckpt", map_location="cpu", weights_only=True)
    old = raw[CHECKPOINT_KEY]["spec"]
    assert "spec_version" not in old  # written before the layout had a version
    spec = InputSpec.from_dict(old)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    new = spec.to_dict()
    for key in ("observation_dim", "action_dim", "discrete", "goal_dim", "tasks"):
        assert new[key] == old[key], key
    for part in ("observation", "goal"):
        for ours, theirs in zip(
            new["normalization"][part], old["normalization"][part], strict=True
        ):
            np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    with pytest.raises(DataError, match="newer"):
        InputSpec.from_dict({**new, "spec_version": 99})
    with pytest.raises(DataError, match="not a gcrl input spec"):
        InputSpec.from_dict({"observation_dim": 3})


# --------------------------------------------------------------------- class paths
class ShortBC(BC):
    """A user's own algorithm: any Agent subclass in an imported module loads."""


def checkpoint_naming(tmp_path: Path, class_path: str) -> Path:
    """A real BC checkpoint whose metadata names ``class_path``."""
    data = TrajectoryDataModule(str(goal_reaching(tmp_path / "g.hdf5", 3, 4)), batch_size=8)
    model = BC(spec=data.spec, hidden_dims=[4])
    trainer = fit(model, data, 1, default_root_dir=tmp_path)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    raw[CHECKPOINT_KEY]["algorithm"] = class_path
    torch.save(raw, path)
    return path


@pytest.mark.parametrize(
    ("class_path", "message"),
    [
        ("os.system", "is not a gcrl algorithm class"),
        ("gcrl.errors.GcrlError", "is not a gcrl algorithm class"),
        ("gcrl.algorithms.nothing_here.BC", "not in this gcrl"),
        ("BC", "is not a class path"),
        ("planted_module.Algorithm", "not gcrl's and not imported"),
    ],
)
def test_a_checkpoint_naming_another_class_is_refused_without_importing_it(
    class_path: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = tmp_path / "planted_module.py"
    planted.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\nAlgorithm = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = checkpoint_naming(tmp_path, class_path)
    with pytest.raises(DataError, match=message) as info:
        load_agent(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert not (tmp_path / "ran").exists(), "the checkpoint's module was imported"


def test_a_subclass_in_an_imported_module_loads_by_its_class_path(tmp_path: Path) -> None:
    assert ShortBC.__module__ in sys.modules
    path = checkpoint_naming(tmp_path, f"{ShortBC.__module__}.{ShortBC.__qualname__}")
    module = load_agent(path)
    assert type(module) is ShortBC
    assert isinstance(load_agent(path, BC), ShortBC)
