"""GCIQL, one step against an independent reference on the same batch and weights: OGBench
GCIQL's three losses computed row by row in plain Python, and the Polyak target update of one
Lightning step."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from gcrl.algorithms import IQL
from gcrl.learner import AgentModule
from gcrl.training import TrajectoryDataModule
from gcrl.training.batch import Batch

from .reference import gaussian_log_prob
from .training_data import fit, goal_reaching

torch.set_num_threads(1)


def gciql_reference(model: IQL, batch: Batch) -> dict[str, list[float]]:
    """Per row, from OGBench's formulas: ``|0.9 - 1[q - v < 0]| (q - v)^2`` with ``q`` the
    lower target critic; ``sum_e (Q_e - r - 0.99 mask V(s'))^2``; and DDPG+BC ``-Q(s,
    clip(mu)) / mean |Q| - 0.3 log pi``, with ``Q`` the lower critic at the actor's action."""
    value_goals, actor_goals = batch.goal("value"), batch.goal("actor")
    assert value_goals is not None and actor_goals is not None

    def q_members(
        critic: torch.nn.Module, s: torch.Tensor, g: torch.Tensor, a: torch.Tensor
    ) -> list[float]:
        return [float(m(torch.cat([s, a], -1), g)) for m in critic.members]

    out: dict[str, list[float]] = {"value": [], "critic": [], "q": [], "bc": []}
    std = model.actor.std()
    with torch.no_grad():
        for i in range(len(batch)):
            s, a = batch.observations[i : i + 1], batch.actions[i : i + 1]
            g = value_goals[i : i + 1]
            q = min(q_members(model.target_critic, s, g, a))
            v = float(model.value.members[0](s, g))
            weight = 0.9 if q - v > 0 else 0.1
            out["value"].append(weight * (q - v) ** 2)
            next_v = float(model.value.members[0](batch.next_observations[i : i + 1], g))
            target = float(batch.rewards[i]) + 0.99 * float(batch.masks[i]) * next_v
            out["critic"].append(sum((qe - target) ** 2 for qe in q_members(model.critic, s, g, a)))
            goal = actor_goals[i : i + 1]
            mean = model.actor(s, model.condition(s, goal))
            out["q"].append(min(q_members(model.critic, s, goal, mean.clamp(-1, 1))))
            out["bc"].append(-0.3 * gaussian_log_prob(batch.actions[i], mean[0], std))
    return out


def test_gciql_losses_and_target_update_equal_an_independent_reference(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=10, noise=0.3)
    dm = TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=2, relabel="ogbench")
    torch.manual_seed(0)
    model = IQL(spec=dm.spec, actor_hidden_dims=[16], value_hidden_dims=[16])
    fit(model, dm, 2)
    with torch.no_grad():  # targets apart from the critics: the min and the update show
        for p in model.target_critic.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        losses = model.losses(batch)
    reference = gciql_reference(model, batch)
    for name, key in (("value/loss", "value"), ("critic/loss", "critic")):
        torch.testing.assert_close(
            losses[name], torch.tensor(reference[key]), rtol=1e-4, atol=1e-5, msg=name
        )
    q = torch.tensor(reference["q"])
    actor = -q / (q.abs().mean() + 1e-6) + torch.tensor(reference["bc"])
    torch.testing.assert_close(losses["actor/loss"], actor, rtol=1e-4, atol=1e-5)


def test_one_lightning_step_is_one_update_and_one_polyak_step(tmp_path: Path) -> None:
    """From the same weights and the same first batch, ``gcrl``'s Lightning step equals a
    plain step: the objective's gradient, one Adam step, then the target moved by tau = 0.005
    towards the updated critic (once, not before the update nor twice)."""
    path = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=10, noise=0.3)

    def data() -> TrajectoryDataModule:
        return TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=2, seed=3)

    torch.manual_seed(0)
    stepped = IQL(spec=data().spec, actor_hidden_dims=[16], value_hidden_dims=[16])
    with torch.no_grad():  # targets apart from the critics, so that the update shows
        for p in stepped.target_critic.parameters():
            p.add_(0.05 * torch.randn_like(p))
    plain = AgentModule(copy.deepcopy(stepped))
    fit(stepped, data(), 1)

    batch = next(iter(data().train_dataloader()))
    optimizer = plain.configure_optimizers()
    target_before = copy.deepcopy(plain.target_critic.state_dict())
    plain.objective_value(plain.losses(batch)).backward()
    optimizer.step()
    critic = plain.critic.state_dict()
    for name, value in stepped.critic.state_dict().items():
        torch.testing.assert_close(value, critic[name], rtol=1e-5, atol=1e-6, msg=name)
    for name, value in stepped.target_critic.state_dict().items():
        expected = 0.005 * critic[name] + 0.995 * target_before[name]
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)
        assert not torch.allclose(value, target_before[name], rtol=0, atol=1e-9), name
