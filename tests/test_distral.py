"""gcrl.algorithms.Distral / DistralIQL: the losses against a per-sample reference, the
distilled policy fitted to the task policies, acting by either from checkpoints, discrete
actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from gcrl.algorithms import BC, Distral, DistralIQL
from gcrl.algorithms.distral import categorical_kl, policy_entropy
from gcrl.datasets import Task, Trajectories, concatenate, load, save
from gcrl.errors import ConfigError
from gcrl.models.layouts import IndependentMLP
from gcrl.policy import load_agent, load_policy
from gcrl.training import Batch, TrajectoryDataModule

from .reference import gaussian_log_prob
from .training_data import chain_mdp, fit, goal_reaching

# The test networks are tiny: one thread avoids synchronisation costs (and oversubscribing
# the 2 cores when other work runs).
torch.set_num_threads(1)

TASK_ACTIONS = (0.5, -0.3)


def shared_state_tasks(path: Path, rows: int = 300, noise: float = 0.05, seed: int = 0) -> Path:
    """Two tasks demonstrated from the same states (3-d, uniform in [-1, 1]) with different
    2-d actions: task ``up`` takes ``+0.5``, task ``down`` ``-0.3`` in both dimensions, plus
    Gaussian noise (single-step episodes, zero rewards)."""
    rng = np.random.default_rng(seed)
    states = rng.uniform(-1, 1, size=(rows, 3))
    obs = np.concatenate([states, states])
    task_ids = np.repeat([0, 1], rows)
    n = 2 * rows
    actions = np.array(TASK_ACTIONS)[task_ids][:, None].repeat(2, 1)
    actions = actions + rng.normal(scale=noise, size=(n, 2))
    data = Trajectories(
        observations=obs,
        next_observations=obs + 0.01,
        actions=actions.astype(np.float32),
        rewards=rng.normal(size=n),
        terminals=np.zeros(n, dtype=bool),
        timeouts=np.ones(n, dtype=bool),
        episode_starts=np.arange(n),
        task_ids=task_ids,
        tasks=(Task("up", "move up"), Task("down", "move down")),
    )
    return save(data, path, overwrite=True)


def distral_reference(
    model: Distral | DistralIQL, batch: Batch, weights: torch.Tensor | None = None
) -> tuple[list[float], list[float]]:
    """``actor/loss`` and ``prior/loss`` sample by sample: each row's own task network and the
    prior on that row alone, torch.distributions' Normal KL and entropy per dimension, and
    ``-w log N(a; mu_i, std_i) + c_kl KL(pi_i || pi_0) - c_ent H(pi_i)``, ``KL(pi_i || pi_0)``."""
    actor_ref, prior_ref = [], []
    std, prior_std = model.actor.std(), model.prior.std()
    with torch.no_grad():
        for i in range(len(batch)):
            s, task = batch.observations[i : i + 1], batch.task_ids[i : i + 1]
            mean = model.actor(s, model.condition(s, task_ids=task), task)[0]
            prior_mean = model.prior(s, torch.zeros(1, 0))[0]
            pi_i, pi_0 = Normal(mean, std), Normal(prior_mean, prior_std)
            kl = float(kl_divergence(pi_i, pi_0).sum())
            entropy = float(pi_i.entropy().sum())
            nll = -gaussian_log_prob(batch.actions[i], mean, std)
            w = 1.0 if weights is None else float(weights[i])
            actor_ref.append(w * nll + model.c_kl * kl - model.c_ent * entropy)
            prior_ref.append(kl)
    return actor_ref, prior_ref


def test_distral_losses_equal_a_per_sample_reference(tmp_path: Path) -> None:
    path = shared_state_tasks(tmp_path / "tasks.hdf5", rows=60)
    dm = TrajectoryDataModule(str(path), batch_size=24, steps_per_epoch=20)
    torch.manual_seed(0)
    model = Distral(spec=dm.spec, hidden_dims=[16], alpha=0.3, beta=0.5, learning_rate=1e-2)
    assert (model.c_kl, model.c_ent) == pytest.approx((0.6, 1.4))
    assert isinstance(model.actor.net, IndependentMLP) and model.num_heads == 2
    fit(model, dm, 20)  # stds away from 1, prior away from its initialisation
    assert not torch.allclose(model.actor.std(), model.prior.std(), atol=1e-3)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch.task_ids.tolist()) == {0, 1}
    losses = model.losses(batch)
    actor_ref, prior_ref = distral_reference(model, batch)
    torch.testing.assert_close(losses["actor/loss"].detach(), torch.tensor(actor_ref))
    torch.testing.assert_close(losses["prior/loss"].detach(), torch.tensor(prior_ref))
    torch.testing.assert_close(losses["distral/kl"], losses["prior/loss"].detach())
    # Which side each gradient goes to: the prior's loss moves only the prior, the task
    # policies' loss (KL with the prior held fixed) only the task policies.
    model.zero_grad()
    losses["prior/loss"].mean().backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in model.actor.parameters())
    assert all(p.grad is not None and p.grad.any() for p in model.prior.parameters())
    model.zero_grad()
    losses["actor/loss"].mean().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.prior.parameters())
    assert model.actor.log_std.grad is not None and model.actor.log_std.grad.any()


def test_distral_iql_actor_loss_is_awr_plus_the_distral_terms(tmp_path: Path) -> None:
    path = shared_state_tasks(tmp_path / "tasks.hdf5", rows=60)
    dm = TrajectoryDataModule(str(path), batch_size=24, steps_per_epoch=10)
    torch.manual_seed(0)
    model = DistralIQL(
        spec=dm.spec, hidden_dims=[16], distral_alpha=0.8, distral_beta=2.0, alpha=3.0
    )
    fit(model, dm, 10)
    batch = next(iter(dm.train_dataloader()))
    losses = model.losses(batch)
    assert {"value/loss", "critic/loss", "actor/loss", "prior/loss"} <= set(model.objective)
    with torch.no_grad():
        cond = model.condition(batch.observations, task_ids=batch.task_ids)
        v = model.value(batch.observations, cond, None, batch.task_ids)[0]
        q = model.critic(batch.observations, cond, batch.actions, batch.task_ids).min(0).values
        weights = torch.exp(3.0 * (q - v)).clamp(max=100.0)
    actor_ref, prior_ref = distral_reference(model, batch, weights)
    torch.testing.assert_close(losses["actor/loss"].detach(), torch.tensor(actor_ref))
    torch.testing.assert_close(losses["prior/loss"].detach(), torch.tensor(prior_ref))


def train_two_tasks(path: Path, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distral with ``alpha = 1`` (KL weight ``1 / beta``, no entropy term) trained 300 steps
    on :func:`shared_state_tasks`; the mean actions of task 0's, task 1's and the distilled
    policy at 200 random states."""
    dm = TrajectoryDataModule(str(path), batch_size=128, steps_per_epoch=100)
    torch.manual_seed(0)
    model = Distral(spec=dm.spec, hidden_dims=[32, 32], alpha=1.0, beta=beta, learning_rate=3e-3)
    states = torch.rand(200, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    if beta < 1:  # before training the prior acts near 0 (its small initial output layer)
        assert float((model.act_prior(states) - 0.1).abs().mean()) > 0.09
    fit(model, dm, 300)
    ids = torch.zeros(200, dtype=torch.long)
    return (
        model.act(states, task_ids=ids),
        model.act(states, task_ids=ids + 1),
        model.act_prior(states),
    )


def test_the_distilled_policy_matches_the_average_task_policy(tmp_path: Path) -> None:
    """Measured (300 steps, seed 0): with c_kl = 10 the prior is within 0.008 of the task
    policies' average everywhere and the task means are 0.075 apart; with c_kl = 0.001 they
    stay 0.82 apart (their data's 0.8), the prior within 0.07 of their average."""
    path = shared_state_tasks(tmp_path / "tasks.hdf5")
    up, down, prior = train_two_tasks(path, beta=0.1)  # c_kl = 10
    gap = (prior - (up + down) / 2).abs()
    assert float(gap.max()) < 0.04 and float(gap.mean()) < 0.02, gap.max()
    # Not only the task policies pulled onto an unfitted prior (then the gap is small too):
    # the prior itself sits at the data's average action, 0.1 (0.096; about 0 at
    # initialisation).
    assert abs(float(prior.mean()) - 0.1) < 0.03
    pulled = float((up - down).abs().mean())
    free_up, free_down, free_prior = train_two_tasks(path, beta=1000.0)  # c_kl = 0.001
    free = float((free_up - free_down).abs().mean())
    assert abs(float(free_up.mean()) - 0.5) < 0.05 and abs(float(free_down.mean()) + 0.3) < 0.05
    assert free > 0.7 and pulled < 0.25 * free, (pulled, free)
    # The prior is fitted whatever the KL weight (its loss is not scaled by c_kl).
    assert float((free_prior - (free_up + free_down) / 2).abs().mean()) < 0.05


@pytest.mark.parametrize(("signal", "prior_signal"), [("embedding", False), ("onehot", True)])
def test_load_policy_acts_with_the_task_policies_or_the_prior(
    tmp_path: Path, signal: str, prior_signal: bool
) -> None:
    path = shared_state_tasks(tmp_path / "tasks.hdf5", rows=100)
    dm = TrajectoryDataModule(str(path), batch_size=64, steps_per_epoch=50)
    torch.manual_seed(0)
    model = Distral(
        spec=dm.spec,
        hidden_dims=[16],
        task_signal=signal,
        prior_signal=prior_signal,
        learning_rate=3e-3,
    )
    trainer = fit(model, dm, 50, default_root_dir=tmp_path)
    ckpt = tmp_path / "distral.ckpt"
    trainer.save_checkpoint(ckpt)
    stored = load(path).observations
    assert isinstance(stored, np.ndarray)
    obs = stored[:6]
    states = torch.as_tensor(obs, dtype=torch.float32)
    zeros, ones = np.zeros(6, dtype=np.int64), np.ones(6, dtype=np.int64)

    tasks = load_policy(ckpt)
    up, down = tasks(obs, task_ids=zeros), tasks(obs, task_ids=ones)
    assert np.abs(up - down).min() > 0.2  # each task's own network
    for ids, actions in ((zeros, up), (ones, down)):
        expected = model.act(states, task_ids=torch.as_tensor(ids))
        np.testing.assert_allclose(actions, expected.numpy(), rtol=1e-6, atol=1e-6)

    prior = load_policy(ckpt, policy="prior")
    assert prior.acting.num_heads == 1
    for ids in (zeros, ones):
        expected = model.act_prior(states, task_ids=torch.as_tensor(ids))
        np.testing.assert_allclose(prior(obs, task_ids=ids), expected.numpy(), rtol=1e-6, atol=1e-6)
    if not prior_signal:  # task-agnostic: the task id is ignored, and not needed
        np.testing.assert_array_equal(prior(obs, task_ids=zeros), prior(obs, task_ids=ones))
        np.testing.assert_array_equal(prior(obs), prior(obs, task_ids=ones))
        assert prior.on_tasks(obs, [Task("unseen", "")] * 6).shape == (6, 2)
    with pytest.raises(ConfigError, match=r"no policy 'teacher'.*its policies: prior$"):
        load_policy(ckpt, policy="teacher")
    restored = load_agent(ckpt, Distral)
    assert isinstance(restored, Distral) and restored.prior_signal == prior_signal
    torch.testing.assert_close(
        restored.act_prior(states, task_ids=torch.as_tensor(ones)),
        model.act_prior(states, task_ids=torch.as_tensor(ones)),
    )


def test_a_checkpoint_without_alternatives_names_none(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=4, length=6)
    dm = TrajectoryDataModule(str(path), batch_size=8, steps_per_epoch=2)
    trainer = fit(BC(spec=dm.spec, hidden_dims=[8]), dm, 2, default_root_dir=tmp_path)
    trainer.save_checkpoint(tmp_path / "bc.ckpt")
    with pytest.raises(ConfigError, match=r"no policy 'prior'.*none besides the default"):
        load_policy(tmp_path / "bc.ckpt", policy="prior")
    with pytest.raises(ConfigError, match="Distral: needs task ids"):
        Distral(spec=dm.spec)  # goal-conditioned data: no task ids


def test_discrete_actions_use_categorical_kl_and_entropy(tmp_path: Path) -> None:
    left = load(chain_mdp(tmp_path / "left.hdf5", episodes=20))
    right = load(chain_mdp(tmp_path / "right.hdf5", episodes=20, seed=1, right=0.9))
    both = concatenate([left, right], [Task("left", "go left"), Task("right", "go right")])
    path = save(both, tmp_path / "tasks.hdf5")
    dm = TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=5)
    torch.manual_seed(0)
    model = Distral(spec=dm.spec, hidden_dims=[16], alpha=0.5, beta=1.0, learning_rate=1e-2)
    assert model.actor.kind == model.prior.kind == "categorical"
    fit(model, dm, 5)
    batch = next(iter(dm.train_dataloader()))
    losses = model.losses(batch)
    assert all(torch.isfinite(v).all() for v in losses.values())
    with torch.no_grad():
        cond = model.condition(batch.observations, task_ids=batch.task_ids)
        logits = model.actor(batch.observations, cond, batch.task_ids)
        prior_logits = model.prior(batch.observations, cond[:, :0])
    pi_i, pi_0 = Categorical(logits=logits), Categorical(logits=prior_logits)
    expected = kl_divergence(pi_i, pi_0)
    assert float(expected.min()) > 1e-4  # the two policies differ
    torch.testing.assert_close(categorical_kl(logits, prior_logits), expected)
    torch.testing.assert_close(losses["distral/kl"], expected)
    torch.testing.assert_close(losses["prior/loss"].detach(), expected)
    torch.testing.assert_close(losses["distral/entropy"], pi_i.entropy())
    torch.testing.assert_close(policy_entropy(model.actor, logits), pi_i.entropy())
    nll = -pi_i.log_prob(batch.actions)
    torch.testing.assert_close(
        losses["actor/loss"].detach(), nll + model.c_kl * expected - model.c_ent * pi_i.entropy()
    )
    actions = model.act(torch.eye(6)[:3], task_ids=torch.tensor([0, 1, 1]))
    assert actions.dtype == torch.int64 and model.act_prior(torch.eye(6)[:3]).dtype == torch.int64
