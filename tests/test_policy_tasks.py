"""Input normalisation round trip, and the evaluation protocol of loaded policies
(``LoadedPolicy.on_tasks``): task names to ids, texts for unseen tasks, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gcrl.algorithms import BC
from gcrl.datasets import Task
from gcrl.errors import ConfigError
from gcrl.policy import LoadedPolicy
from gcrl.training import TrajectoryDataModule

from .training_data import goal_reaching, two_text_tasks

torch.set_num_threads(1)


def test_normalised_batches_and_the_policy_agree(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=10, length=10)
    data = TrajectoryDataModule(str(path), batch_size=64, relabel="none", normalize=True)
    raw = TrajectoryDataModule(str(path), batch_size=64, relabel="none")
    data.setup("fit")
    raw.setup("fit")
    batch = next(iter(data.train_dataloader()))
    same = next(iter(raw.train_dataloader()))  # same seed: the same rows
    assert data.spec.observation_scale is not None and data.spec.goal_scale is not None
    mean, std = data.spec.observation_scale.mean, data.spec.observation_scale.std
    expected = (same.observations.numpy() - mean) / std
    np.testing.assert_allclose(batch.observations.numpy(), expected, rtol=1e-5, atol=1e-6)
    everything = data.spec.state(data.data.observations)
    np.testing.assert_allclose(((everything - mean) / std).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(((everything - mean) / std).std(0), 1, atol=1e-4)
    # The loaded policy normalises raw inputs the same way before the network sees them.
    module = BC(spec=data.spec, task_signal="goal", hidden_dims=[8])
    policy = LoadedPolicy(module.eval())
    obs = np.array([[0.3, -0.2]], dtype=np.float32)
    goal = np.array([[0.5, 0.5]], dtype=np.float32)
    gmean, gstd = data.spec.goal_scale.mean, data.spec.goal_scale.std
    direct = module.act(
        torch.as_tensor((obs - mean) / std, dtype=torch.float32),
        torch.as_tensor((goal - gmean) / gstd, dtype=torch.float32),
    )
    np.testing.assert_allclose(policy(obs, goals=goal), direct.numpy(), rtol=1e-5, atol=1e-6)


def test_on_tasks_maps_names_to_ids_and_refuses_unknown_tasks(tmp_path: Path) -> None:
    data = TrajectoryDataModule(str(two_text_tasks(tmp_path / "t.hdf5", 50)), relabel="none")
    module = BC(spec=data.spec, task_signal="onehot", hidden_dims=[8]).eval()
    policy = LoadedPolicy(module)
    obs = np.zeros((2, 3), dtype=np.float32)
    tasks = [Task("right", "move right"), Task("left", "move left")]
    by_name = policy.on_tasks(obs, tasks)
    np.testing.assert_allclose(by_name, policy(obs, task_ids=np.array([1, 0])))
    with pytest.raises(ConfigError, match="'jump' is not among the policy's training tasks"):
        policy.on_tasks(obs, [Task("jump", "jump")])


def test_on_tasks_gives_text_policies_the_instruction_of_unseen_tasks(tmp_path: Path) -> None:
    data = TrajectoryDataModule(str(two_text_tasks(tmp_path / "t.hdf5", 50)), relabel="none")
    module = BC(spec=data.spec, task_signal="text", hidden_dims=[8]).eval()
    policy = LoadedPolicy(module)
    obs = np.zeros((1, 3), dtype=np.float32)
    unseen = policy.on_tasks(obs, [Task("leftward", "move to the left")])
    np.testing.assert_allclose(unseen, policy(obs, texts=["move to the left"]))
    seen = policy.on_tasks(obs, [Task("left", "move left")])
    np.testing.assert_allclose(seen, policy(obs, texts=["move left"]), rtol=1e-5, atol=1e-6)


def test_on_tasks_runs_a_policy_without_task_signal_on_any_task(tmp_path: Path) -> None:
    data = TrajectoryDataModule(str(two_text_tasks(tmp_path / "t.hdf5", 50)), relabel="none")
    policy = LoadedPolicy(BC(spec=data.spec, task_signal="none", hidden_dims=[8]).eval())
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    actions = policy.on_tasks(obs, [Task("never seen", "do something new")] * 4)
    assert actions.shape == (4, 1)
    np.testing.assert_allclose(actions, policy.on_tasks(obs, [Task("left", "move left")] * 4))
