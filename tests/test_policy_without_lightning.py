"""gcrl.load_policy rebuilds the trained agent with torch alone: the same actions as the
trained one, and no Lightning imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gcrl.algorithms import BC, CRL, DQN, GCIVL, HIQL, IQL, QRL
from gcrl.datasets import load
from gcrl.policy import load_policy
from gcrl.training import TrajectoryDataModule

from .training_data import fit, goal_chain, goal_reaching, multitask_goal_reaching

torch.set_num_threads(1)

CASES: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "bc-goal": (BC, "goal", {}),
    "bc-mse-onehot-heads": (BC, "tasks", {"loss": "mse", "multi_head": True}),
    "iql-embedding": (IQL, "tasks", {"task_signal": "embedding"}),
    "gcivl-goal": (GCIVL, "goal", {}),
    "crl-goal": (CRL, "goal", {}),
    "qrl-goal": (QRL, "goal", {"latent_dim": 16}),
    "hiql-goal": (HIQL, "goal", {"rep_dim": 4, "subgoal_steps": 3}),
    "dqn-goal-discrete": (DQN, "discrete", {}),
    "bc-goal-discrete": (BC, "discrete", {}),
    "bc-onehot-independent": (BC, "tasks", {"task_signal": "onehot", "layout": "independent"}),
    "bc-onehot-task-encoders": (BC, "tasks", {"task_signal": "onehot", "layout": "task_encoders"}),
    "bc-embedding-task-encoder": (
        BC,
        "tasks",
        {"task_signal": "embedding", "layout": "task_encoder"},
    ),
    "iql-onehot-care": (IQL, "tasks", {"task_signal": "onehot", "layout": "care"}),
    "bc-onehot-soft-modular": (BC, "tasks", {"task_signal": "onehot", "layout": "soft_modular"}),
}


def checkpoint(tmp_path: Path, name: str) -> tuple[Path, Any, Path]:
    cls, data, options = CASES[name]
    if data == "goal":
        path = goal_reaching(tmp_path / "g.hdf5", episodes=5, length=8)
    elif data == "tasks":
        path = multitask_goal_reaching(tmp_path / "t.hdf5", tasks=2)
    else:
        path = goal_chain(tmp_path / "c.hdf5", episodes=20)
    # HIQL learns from subgoals, which only relabeled batches hold.
    relabel = {"relabel": "ogbench"} if cls is HIQL else {"relabel": "none"}
    dm = TrajectoryDataModule(
        str(path), batch_size=16, steps_per_epoch=3, normalize=True, **relabel
    )
    model = cls(spec=dm.spec, hidden_dims=[16, 16], **options)
    trainer = fit(model, dm, 3, default_root_dir=tmp_path)
    ckpt = tmp_path / f"{name}.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt, model.eval(), path


@pytest.mark.parametrize("name", list(CASES))
def test_the_rebuilt_agent_acts_as_the_trained_one(name: str, tmp_path: Path) -> None:
    ckpt, model, path = checkpoint(tmp_path, name)
    policy = load_policy(ckpt)
    assert policy.agent is not model and type(policy.agent) is type(model)
    assert not policy.agent.training
    data = load(path)
    rows = np.arange(0, data.num_transitions, 3)[:12]
    observations = {k: v[rows] for k, v in data.observations.items()}  # type: ignore[union-attr]
    task_ids = None if data.task_ids is None else data.task_ids[rows]
    actions = policy(observations, task_ids=task_ids)
    spec = model.spec
    state = torch.as_tensor(spec.network_state(observations))
    goals = (
        torch.as_tensor(spec.network_goals(observations["desired_goal"], len(rows)))
        if spec.goal_dim
        else None
    )
    ids = None if task_ids is None else torch.as_tensor(task_ids)
    expected = model.act(state, goals, ids).numpy()
    np.testing.assert_allclose(actions, expected, rtol=1e-6, atol=1e-7)
    # Actions that a wrong rule or wrong weights would give differ: the check can fail.
    assert len(np.unique(np.round(np.asarray(actions, dtype=float), 4), axis=0)) > 1


class ClippedBC(BC):
    """A user's algorithm acting in its own way (no acting rule of gcrl's)."""

    def act_on(
        self, observations: torch.Tensor, condition: torch.Tensor, heads: torch.Tensor | None
    ) -> torch.Tensor:
        return super().act_on(observations, condition, heads).clamp(-0.01, 0.01)


def test_an_algorithm_acting_its_own_way_acts_so_from_its_checkpoint(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=5, length=8)
    dm = TrajectoryDataModule(str(path), batch_size=16, steps_per_epoch=2)
    model = ClippedBC(spec=dm.spec, hidden_dims=[8])
    trainer = fit(model, dm, 2, default_root_dir=tmp_path)
    trainer.save_checkpoint(tmp_path / "own.ckpt")
    policy = load_policy(tmp_path / "own.ckpt")
    assert type(policy.agent) is ClippedBC
    observations = {
        "observation": np.full((4, 2), 5.0, np.float32),
        "desired_goal": np.full((4, 2), -5.0, np.float32),
    }
    actions = policy(observations)
    assert np.abs(actions).max() <= 0.01 + 1e-7
    unclipped = BC.act_on(policy.agent, *clipped_inputs(policy, observations))
    assert float(unclipped.abs().max()) > 0.01  # the clip is what bounds them


def clipped_inputs(policy: Any, observations: dict[str, np.ndarray]) -> tuple[Any, ...]:
    agent, spec = policy.agent, policy.spec
    state = torch.as_tensor(spec.network_state(observations))
    goals = torch.as_tensor(spec.network_goals(observations["desired_goal"], len(state)))
    return state, agent.condition(state, goals), None


def test_loading_a_policy_and_reading_files_import_no_lightning(tmp_path: Path) -> None:
    """`import gcrl; gcrl.load_policy(...)` and `gcrl info / convert / relabel` in fresh
    processes: Lightning (and the adapter, gcrl.learner) is never imported; the agents
    (gcrl.algorithms) only to act."""
    ckpt, _, data = checkpoint(tmp_path, "bc-goal")
    out = tmp_path / "out"
    out.mkdir()
    statements = {
        "load_policy": (
            f"import gcrl, numpy as np; p = gcrl.load_policy({str(ckpt)!r}); "
            "p(dict(observation=np.zeros(2), achieved_goal=np.zeros(2), desired_goal=np.ones(2)))"
        ),
        "info": f"from gcrl.cli.main import main; assert main(['info', {str(data)!r}]) == 0",
        "convert": (
            "from gcrl.cli.main import main; "
            f"assert main(['convert', {str(data)!r}, {str(out / 'c.hdf5')!r}]) == 0"
        ),
        "relabel": (
            "from gcrl.cli.main import main; assert main(['relabel', "
            f"{str(data)!r}, {str(out / 'r.hdf5')!r}, '--strategy', 'future']) == 0"
        ),
    }
    for name, statement in statements.items():
        code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, (name, result.stderr[-2000:])
        loaded = set(result.stdout.splitlines()[-1].split())
        assert "torch" in loaded or name != "load_policy"
        heavy = {m for m in loaded if m.split(".")[0] in ("lightning", "pytorch_lightning")}
        assert not heavy, (name, sorted(heavy)[:5])
        assert "gcrl.learner" not in loaded, name
        assert ("gcrl.algorithms" in loaded) == (name == "load_policy"), name
