"""GCIVL and CRL, one step against independent references on the same batch and weights:
OGBench's losses (``impls/agents/gcivl.py``, ``impls/agents/crl.py``) computed row by row in
plain Python over the models' own member networks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gcrl.algorithms import CRL, GCIVL
from gcrl.training import TrajectoryDataModule
from gcrl.training.batch import Batch

from .reference import gaussian_log_prob, ivl_value_loss
from .training_data import fit, goal_reaching

torch.set_num_threads(1)


def gcivl_reference(model: GCIVL, batch: Batch) -> dict[str, list[float]]:
    """Per row: the IVL value loss (expectile 0.9, :func:`~tests.reference.ivl_value_loss`) and
    AWR ``-min(exp(10 (V(s', g) - V(s, g))), 100) log pi(a | s, g)`` with ``V`` the twins'
    mean."""
    value_goals, actor_goals = batch.goal("value"), batch.goal("actor")
    assert value_goals is not None and actor_goals is not None

    def twins(net: torch.nn.Module, s: torch.Tensor, g: torch.Tensor) -> list[float]:
        return [float(m(s, g)) for m in net.members]

    out: dict[str, list[float]] = {"value": [], "actor": []}
    std = model.actor.std()
    with torch.no_grad():
        for i in range(len(batch)):
            s, s_next = batch.observations[i : i + 1], batch.next_observations[i : i + 1]
            r, m = float(batch.rewards[i]), float(batch.masks[i])
            g = value_goals[i : i + 1]
            next_t, now_t = twins(model.target_value, s_next, g), twins(model.target_value, s, g)
            out["value"].append(ivl_value_loss(r, m, next_t, now_t, twins(model.value, s, g), 0.9))
            g = actor_goals[i : i + 1]
            advantage = sum(twins(model.value, s_next, g)) / 2 - sum(twins(model.value, s, g)) / 2
            mean = model.actor(s, model.condition(s, g))[0]
            log_prob = gaussian_log_prob(batch.actions[i], mean, std)
            out["actor"].append(-min(math.exp(10.0 * advantage), 100.0) * log_prob)
    return out


def data(tmp_path: Path) -> TrajectoryDataModule:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=10, noise=0.3)
    return TrajectoryDataModule(str(path), batch_size=16, steps_per_epoch=2, relabel="ogbench")


def test_gcivl_losses_equal_an_independent_reference(tmp_path: Path) -> None:
    dm = data(tmp_path)
    torch.manual_seed(0)
    model = GCIVL(spec=dm.spec, hidden_dims=[16])
    fit(model, dm, 2)
    with torch.no_grad():  # targets apart from the values: which twin feeds what shows
        for p in model.target_value.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        losses = model.losses(batch)
    reference = gcivl_reference(model, batch)
    for name, key in (("value/loss", "value"), ("actor/loss", "actor")):
        torch.testing.assert_close(
            losses[name], torch.tensor(reference[key]), rtol=1e-4, atol=1e-5, msg=name
        )


def bce(logit: float, label: float) -> float:
    """Binary cross-entropy of a logit, in its numerically stable form."""
    return max(logit, 0.0) - logit * label + math.log1p(math.exp(-abs(logit)))


def crl_reference(model: CRL, batch: Batch) -> dict[str, list[float]]:
    """Per row ``i``: the binary NCE ``mean_{e, j} BCE(phi_e(s_i, a_i) . psi_e(g_j) / sqrt d,
    1[i = j])`` of the critic (and of the value, without the action); the actor's ``log Q``
    (the lower critic's logit at its clipped mean action, DDPG+BC) or AWR weight
    ``min(exp(alpha (min_e logit_Q(s, a, g) - logit_V(s, g))), 100)``; and its ``log pi``."""
    value_goals, actor_goals = batch.goal("value"), batch.goal("actor")
    assert value_goals is not None and actor_goals is not None
    none = torch.zeros(1, 0)

    def logits(net: torch.nn.Module, x: torch.Tensor, g: torch.Tensor) -> list[float]:
        scale = math.sqrt(net.latent_dim)
        return [
            float((phi(x, none) * psi(g, none)).sum() / scale)
            for phi, psi in zip(net.phi.members, net.psi.members, strict=True)
        ]

    def nce(net: torch.nn.Module, x: torch.Tensor) -> float:
        pairs = [
            bce(logit, float(i == j))
            for j in range(len(batch))
            for logit in logits(net, x, value_goals[j : j + 1])
        ]
        return sum(pairs) / len(pairs)

    out: dict[str, list[float]] = {"critic": [], "value": [], "q": [], "adv": [], "log_pi": []}
    std = model.actor.std()
    with torch.no_grad():
        for i in range(len(batch)):
            s, a = batch.observations[i : i + 1], batch.actions[i : i + 1]
            out["critic"].append(nce(model.critic, torch.cat([s, a], -1)))
            g = actor_goals[i : i + 1]
            mean = model.actor(s, model.condition(s, g))[0]
            out["log_pi"].append(gaussian_log_prob(batch.actions[i], mean, std))
            moved = torch.cat([s, mean.clamp(-1, 1)[None]], -1)
            out["q"].append(min(logits(model.critic, moved, g)))
            if model.value is not None:
                out["value"].append(nce(model.value, s))
                q = min(logits(model.critic, torch.cat([s, a], -1), g))
                out["adv"].append(q - logits(model.value, s, g)[0])
    return out


@pytest.mark.parametrize("actor_loss", ["ddpgbc", "awr"])
def test_crl_losses_equal_an_independent_reference(tmp_path: Path, actor_loss: str) -> None:
    dm = data(tmp_path)
    torch.manual_seed(0)
    model = CRL(spec=dm.spec, hidden_dims=[16], latent_dim=8, actor_loss=actor_loss, alpha=0.5)
    fit(model, dm, 2)
    with torch.no_grad():  # logits far apart, some below OGBench's old floor of log 1e-6
        for member in model.critic.psi.members:
            [m for m in member.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(60)
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        losses = model.losses(batch)
    reference = crl_reference(model, batch)
    # The actor reads the raw logits (OGBench since 15594e3): the rows below the floor count.
    assert min(reference["q"]) < math.log(1e-6) < max(reference["q"])
    close = {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(losses["critic/loss"], torch.tensor(reference["critic"]), **close)
    log_pi = torch.tensor(reference["log_pi"])
    if actor_loss == "ddpgbc":
        q = torch.tensor(reference["q"])
        actor = -q / (q.abs().mean() + 1e-6) - 0.5 * log_pi
    else:
        torch.testing.assert_close(losses["value/loss"], torch.tensor(reference["value"]), **close)
        actor = -torch.exp(0.5 * torch.tensor(reference["adv"])).clamp(max=100.0) * log_pi
    torch.testing.assert_close(losses["actor/loss"], actor, **close)
