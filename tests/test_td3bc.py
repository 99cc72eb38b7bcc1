"""TD3+BC: its losses against a row-by-row computation, the delayed actor and targets, the
separate learning rates, and acting from the checkpoint."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from gcrl.algorithms import TD3BC
from gcrl.algorithms.groups import ParameterGroup, group_parameters
from gcrl.errors import ConfigError
from gcrl.learner import AgentModule
from gcrl.policy import load_policy
from gcrl.training import Batch, TrajectoryDataModule

from .training_data import fit, goal_reaching

torch.set_num_threads(1)


def td3bc_reference(model: TD3BC, batch: Batch, noise: torch.Tensor) -> tuple[list[float], ...]:
    """The critic and actor losses row by row in plain Python over the model's own networks
    (one row at a time through each network), with the given policy noise."""
    value_goals, actor_goals = batch.goal("value"), batch.goal("actor")
    assert value_goals is not None and actor_goals is not None
    n = len(batch)
    critic, q_pi, bc = [], [], []
    with torch.no_grad():
        for i in range(n):
            s, s2 = batch.observations[i : i + 1], batch.next_observations[i : i + 1]
            a = batch.actions[i : i + 1]
            c = model.condition(s, value_goals[i : i + 1])
            eps = noise[i : i + 1].clamp(-model.noise_clip, model.noise_clip)
            a2 = (model.target_actor(s2, c) + eps).clamp(-1, 1)
            target_q = min(
                float(m(torch.cat([s2, a2], -1), c)) for m in model.target_critic.members
            )
            y = float(batch.rewards[i]) + model.discount * float(batch.masks[i]) * target_q
            critic.append(
                sum((float(m(torch.cat([s, a], -1), c)) - y) ** 2 for m in model.critic.members)
            )
            ca = model.condition(s, actor_goals[i : i + 1])
            pi = model.actor(s, ca)
            q_pi.append(float(model.critic.members[0](torch.cat([s, pi], -1), ca)))
            bc.append(float(((pi - a) ** 2).mean()))
    lam = model.alpha / (sum(abs(q) for q in q_pi) / n + 1e-6)
    actor = [-lam * q + b for q, b in zip(q_pi, bc, strict=True)]
    return critic, actor


@pytest.fixture
def data(tmp_path: Path) -> TrajectoryDataModule:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=10, noise=0.3)
    return TrajectoryDataModule(str(path), batch_size=16, steps_per_epoch=4)


def small(data: TrajectoryDataModule, **options: object) -> TD3BC:
    torch.manual_seed(0)
    return TD3BC(spec=data.spec, hidden_dims=[16, 16], **options)  # type: ignore[arg-type]


def test_td3bc_losses_equal_a_per_row_reference(data: TrajectoryDataModule) -> None:
    model = small(data)
    fit(model, data, 4)  # trained weights, targets apart from the networks
    batch = next(iter(data.train_dataloader()))
    torch.manual_seed(7)
    with torch.no_grad():
        losses = model.losses(batch)
    torch.manual_seed(7)
    noise = torch.randn_like(batch.actions) * model.policy_noise
    critic, actor = td3bc_reference(model, batch, noise)
    torch.testing.assert_close(losses["critic/loss"], torch.tensor(critic), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses["actor/loss"], torch.tensor(actor), rtol=1e-4, atol=1e-5)


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize("updates_per_batch", [1, 2])
def test_the_actor_and_the_targets_step_every_second_update(
    tmp_path: Path, updates_per_batch: int
) -> None:
    """Step 0 trains the critic only; step 1 the critic, the actor and both targets (the
    automatic path, and the manual one of several updates per batch)."""
    path = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=10, noise=0.3)
    dm = TrajectoryDataModule(
        str(path), batch_size=16, steps_per_epoch=4, updates_per_batch=updates_per_batch
    )
    model = small(dm, actor_lr=1e-3, critic_lr=1e-2)
    nets = {n: snapshot(getattr(model, n)) for n in ("actor", "critic", "target_critic")}
    trainer = fit(model, dm, 1)
    assert moved(nets["critic"], model.critic)
    assert not moved(nets["actor"], model.actor)
    assert not moved(nets["target_critic"], model.target_critic)
    optimizer = trainer.optimizers[0]
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"critic": 1e-2, "actor": 1e-3}
    actor_params = {id(p) for p in model.actor.parameters()}
    assert not any(id(p) in actor_params for p in optimizer.state)  # no Adam moments yet
    trainer = fit(model, dm, 2)
    assert moved(nets["actor"], model.actor)
    assert moved(nets["target_critic"], model.target_critic)


def test_td3bc_acts_from_its_checkpoint_and_refuses_discrete_actions(
    tmp_path: Path, data: TrajectoryDataModule
) -> None:
    model = small(data)
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(AgentModule(model), data)
    trainer.save_checkpoint(tmp_path / "td3bc.ckpt")
    policy = load_policy(tmp_path / "td3bc.ckpt")
    batch = next(iter(data.train_dataloader()))
    goals = batch.goal("actor")
    assert goals is not None
    model.eval()
    expected = model.act(batch.observations[:4], goals[:4])
    torch.testing.assert_close(policy.agent.act(batch.observations[:4], goals[:4]), expected)
    with pytest.raises(ConfigError, match="policy_delay: must be at least 1"):
        small(data, policy_delay=0)


def test_parameter_groups_take_each_parameter_once(data: TrajectoryDataModule) -> None:
    model = small(data)
    with pytest.raises(ConfigError, match="actor is already in"):
        group_parameters(
            model,
            [ParameterGroup("a", (), ("actor",)), ParameterGroup("b", (), ("actor", "critic"))],
        )
    with pytest.raises(ConfigError, match="parameters are in no group"):
        group_parameters(model, [ParameterGroup("a", (), ("actor",))])
    with pytest.raises(ConfigError, match="update interval must be at least 1"):
        ParameterGroup("a", (), every=0)
