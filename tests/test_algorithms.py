"""gcrl.algorithms: algorithms that learn, every signal and layout, multi-task optimisers."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from gcrl.algorithms import BC, CRL, DQN, GCIVL, HIQL, IQL, QRL
from gcrl.errors import ConfigError
from gcrl.learner import AgentModule
from gcrl.policy import load_agent, load_policy
from gcrl.training import Batch, TrajectoryDataModule

from .reference import gaussian_log_prob
from .training_data import (
    chain_mdp,
    fit,
    goal_chain,
    goal_reaching,
    multitask_goal_reaching,
    two_text_tasks,
)

# The test networks are tiny: one thread avoids synchronisation costs (and oversubscribing
# the 2 cores when other work runs).
torch.set_num_threads(1)


def test_bc_beats_the_mean_action_baseline_on_held_out_episodes(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=60, length=20)
    dm = TrajectoryDataModule(
        str(path), batch_size=256, relabel="none", val_fraction=0.2, steps_per_epoch=100
    )
    model = BC(spec=dm.spec, hidden_dims=[64, 64], loss="mse", learning_rate=3e-3)
    fit(model, dm, 400)
    assert dm.val_data is not None
    held_out = dm.val_data
    obs = torch.as_tensor(held_out.observations["observation"], dtype=torch.float32)
    goals = torch.as_tensor(held_out.observations["desired_goal"], dtype=torch.float32)
    predicted = model.act(obs, goals).numpy()
    error = ((predicted - held_out.actions) ** 2).mean()
    baseline = ((held_out.actions - dm.train_data.actions.mean(0)) ** 2).mean()
    assert error < 0.2 * baseline, (error, baseline)


def value_rank_correlation(
    path: Path, steps: int, learning_rate: float, algorithm: type = IQL
) -> float:
    """Spearman correlation, over 400 random states, between the V(s, g = 0) of an IQL (or
    GCIVL) trained ``steps`` steps and the distance of s to that goal (-1: values fall with
    distance)."""
    dm = TrajectoryDataModule(str(path), batch_size=256, relabel="ogbench", steps_per_epoch=100)
    model = algorithm(
        spec=dm.spec,
        actor_hidden_dims=[64, 64],
        value_hidden_dims=[64, 64],
        learning_rate=learning_rate,
    )
    fit(model, dm, steps)
    rng = np.random.default_rng(1)
    goal = torch.zeros(400, 2)
    states = torch.as_tensor(rng.uniform(-1, 1, size=(400, 2)), dtype=torch.float32)
    values = model.state_value(states, goal).numpy()
    distance = states.norm(dim=1).numpy()
    ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    return float(np.corrcoef(ranks(values), ranks(distance))[0, 1])


def test_iql_values_rank_states_nearer_the_goal_higher_quickly(tmp_path: Path) -> None:
    """The fast variant: 400 steps at lr 3e-3. Data seeds 0-3 gave -0.66, -0.43, -0.44 and
    -0.41; an untrained value gives about 0 (+- 0.05 over 400 states)."""
    path = goal_reaching(tmp_path / "g.hdf5", episodes=60, length=25, noise=0.3)
    rho = value_rank_correlation(path, steps=400, learning_rate=3e-3)
    assert rho < -0.3, rho


@pytest.mark.slow
def test_iql_values_rank_states_nearer_the_goal_higher(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=60, length=25, noise=0.3)
    # 1500 steps: at 500, seeds 1 and 2 of four stayed near -0.47; at 1500 all four were below -0.8
    rho = value_rank_correlation(path, steps=1500, learning_rate=1e-3)
    assert rho < -0.6, rho


def test_gcivl_values_rank_states_nearer_the_goal_higher(tmp_path: Path) -> None:
    """GCIVL learns V(s, g) without a Q-function: after 1000 steps at lr 3e-3 its values fall
    with the distance to the goal. Data seeds 0-2 gave -0.50, -0.64 and -0.49 (after 400
    steps only -0.08 to -0.25: V-only bootstrapping propagates more slowly than IQL's); an
    untrained value gives about 0."""
    path = goal_reaching(tmp_path / "g.hdf5", episodes=60, length=25, noise=0.3)
    rho = value_rank_correlation(path, steps=1000, learning_rate=3e-3, algorithm=GCIVL)
    assert rho < -0.3, rho


def gcivl_reference(model: GCIVL, batch: Batch) -> tuple[list[float], list[float]]:
    """GCIVL's value and actor losses sample by sample, in plain Python over the model's own
    networks (OGBench's formulas: the expectile weight from the target twins' advantage,
    each twin against its own target; AWR on HIQL's advantage, capped at 100)."""
    gamma, tau, alpha = model.discount, model.expectile, model.alpha
    std = model.actor.std()
    value_losses, actor_losses = [], []
    with torch.no_grad():
        for i in range(len(batch)):
            s, s2 = batch.observations[i : i + 1], batch.next_observations[i : i + 1]
            r, m = float(batch.rewards[i]), float(batch.masks[i])

            def v(
                net: torch.nn.Module, k: int, state: torch.Tensor, goal: str, i: int = i
            ) -> float:
                goals = batch.goal(goal)
                assert goals is not None
                cond = model.condition(state, goals[i : i + 1])
                return float(net.members[k](state, cond)[0, 0])

            nt = [v(model.target_value, k, s2, "value") for k in (0, 1)]
            vt = [v(model.target_value, k, s, "value") for k in (0, 1)]
            online = [v(model.value, k, s, "value") for k in (0, 1)]
            adv = r + gamma * m * min(nt) - (vt[0] + vt[1]) / 2
            weight = tau if adv >= 0 else 1 - tau
            value_losses.append(
                sum(weight * (r + gamma * m * nt[k] - online[k]) ** 2 for k in (0, 1))
            )
            a_now = sum(v(model.value, k, s, "actor") for k in (0, 1)) / 2
            a_next = sum(v(model.value, k, s2, "actor") for k in (0, 1)) / 2
            exp_a = min(math.exp(alpha * (a_next - a_now)), 100.0)
            goals = batch.goal("actor")
            assert goals is not None
            mean = model.actor(s, model.condition(s, goals[i : i + 1]))[0]
            log_prob = gaussian_log_prob(batch.actions[i], mean, std)
            actor_losses.append(-exp_a * log_prob)
    return value_losses, actor_losses


def test_gcivl_losses_equal_a_per_sample_reference(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=10, noise=0.3)
    dm = TrajectoryDataModule(str(path), batch_size=48, relabel="ogbench", steps_per_epoch=3)
    torch.manual_seed(0)
    model = GCIVL(spec=dm.spec, actor_hidden_dims=[16], value_hidden_dims=[16], alpha=50.0)
    fit(model, dm, 3)  # online and target networks now differ
    assert not torch.equal(
        model.value.members[0].layers[0].weight, model.target_value.members[0].layers[0].weight
    )
    with torch.no_grad():  # twins far apart: the min and the mean of the targets differ
        model.target_value.members[1].head.bias -= 1.0
    stored = next(iter(dm.train_dataloader()))
    # Zero rewards put the target advantage near 0, where taking the min of the twins (not
    # their mean) decides the expectile weight's side.
    zero = dataclasses.replace(stored, rewards=torch.zeros_like(stored.rewards))
    for batch in (stored, zero):
        with torch.no_grad():
            losses = model.losses(batch)
        value_ref, actor_ref = gcivl_reference(model, batch)
        assert (losses["actor/adv"] * model.alpha > math.log(100.0)).any()  # the cap matters
        value_ref_t, actor_ref_t = torch.tensor(value_ref), torch.tensor(actor_ref)
        torch.testing.assert_close(losses["value/loss"], value_ref_t, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(losses["actor/loss"], actor_ref_t, rtol=1e-4, atol=1e-5)


def test_gcivl_acts_on_discrete_actions(tmp_path: Path) -> None:
    """Discrete actions: a categorical AWR actor; in the chain it learns to go right in every
    cell (seeds 0-2 all did after 300 steps)."""
    path = chain_mdp(tmp_path / "chain.hdf5", episodes=60)
    dm = TrajectoryDataModule(str(path), batch_size=64, steps_per_epoch=100)
    torch.manual_seed(0)
    model = GCIVL(spec=dm.spec, actor_hidden_dims=[32], value_hidden_dims=[32], alpha=3.0)
    fit(model, dm, 300)
    actions = model.act(torch.eye(6)[:5], task_ids=torch.zeros(5, dtype=torch.long))
    assert actions.dtype == torch.int64
    assert actions.tolist() == [1] * 5


def crl_reference(model: CRL, batch: Batch) -> tuple[list[float], list[float]]:
    """CRL's critic and DDPG+BC actor losses sample by sample in plain Python, over the
    model's own networks: binary NCE over every (row, goal) pair of the batch, and
    ``-min_e max(log Q_e, log 1e-6) / mean |.| - alpha log pi``."""
    d = model.critic.latent_dim
    none = torch.zeros(1, 0)
    value_goals, actor_goals = batch.goal("value"), batch.goal("actor")
    assert value_goals is not None and actor_goals is not None
    n = len(batch)
    with torch.no_grad():
        phi = [
            [
                model.critic.phi.members[e](
                    torch.cat([batch.observations[i : i + 1], batch.actions[i : i + 1]], -1), none
                )
                for i in range(n)
            ]
            for e in (0, 1)
        ]
        psi = [
            [model.critic.psi.members[e](value_goals[j : j + 1], none) for j in range(n)]
            for e in (0, 1)
        ]
        critic = []
        for i in range(n):
            total = 0.0
            for e in (0, 1):
                for j in range(n):
                    x = float((phi[e][i] * psi[e][j]).sum()) / math.sqrt(d)
                    p = 1 / (1 + math.exp(-x))
                    total += -math.log(p) if i == j else -math.log(1 - p)
            critic.append(total / (2 * n))
        qs, log_probs = [], []
        std = model.actor.std()
        for i in range(n):
            s, g = batch.observations[i : i + 1], actor_goals[i : i + 1]
            mean = model.actor(s, model.condition(s, g))
            action = mean.clamp(-1, 1)
            q_e = [
                float(
                    (
                        model.critic.phi.members[e](torch.cat([s, action], -1), none)
                        * model.critic.psi.members[e](g, none)
                    ).sum()
                )
                / math.sqrt(d)
                for e in (0, 1)
            ]
            qs.append(min(max(q, math.log(1e-6)) for q in q_e))
            log_probs.append(gaussian_log_prob(batch.actions[i], mean[0], std))
        scale = sum(abs(q) for q in qs) / n + 1e-6
        actor = [-q / scale - model.alpha * lp for q, lp in zip(qs, log_probs, strict=True)]
    return critic, actor


def test_crl_losses_equal_a_per_sample_reference(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=6, length=10, noise=0.3)
    dm = TrajectoryDataModule(
        str(path), batch_size=24, value_goals={"geometric": 1.0}, steps_per_epoch=3
    )
    torch.manual_seed(0)
    model = CRL(spec=dm.spec, actor_hidden_dims=[16], value_hidden_dims=[16], latent_dim=8)
    fit(model, dm, 3)
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        losses = model.losses(batch)
    critic_ref, actor_ref = crl_reference(model, batch)
    torch.testing.assert_close(
        losses["critic/loss"], torch.tensor(critic_ref), rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(losses["actor/loss"], torch.tensor(actor_ref), rtol=1e-4, atol=1e-5)


def test_crl_critic_tells_a_rows_own_future_goal_from_the_others(tmp_path: Path) -> None:
    """After training, the critic picks each row's own (geometric future) goal out of the
    batch far above chance (1 in 64): 0.17 of the time, measured (400 steps, seed 0)."""
    path = goal_reaching(tmp_path / "g.hdf5", episodes=60, length=25, noise=0.3)

    def data() -> TrajectoryDataModule:
        return TrajectoryDataModule(
            str(path), batch_size=64, value_goals={"geometric": 1.0}, steps_per_epoch=100
        )

    torch.manual_seed(0)
    model = CRL(
        spec=data().spec,
        actor_hidden_dims=[32],
        value_hidden_dims=[64, 64],
        latent_dim=16,
        learning_rate=3e-3,
    )
    untrained = float(model.losses(next(iter(data().train_dataloader())))["critic/accuracy"].mean())
    fit(model, data(), 400)
    held_out = TrajectoryDataModule(
        str(path), batch_size=64, value_goals={"geometric": 1.0}, steps_per_epoch=8, seed=5
    )
    with torch.no_grad():
        accuracy = np.mean(
            [float(model.losses(b)["critic/accuracy"].mean()) for b in held_out.train_dataloader()]
        )
    assert untrained < 0.1 and accuracy > 0.15, (untrained, accuracy)


def test_crl_with_awr_steps_towards_the_goal_on_discrete_actions(tmp_path: Path) -> None:
    """Discrete actions (one-hot into phi), AWR on log Q - log V: on a random-walk chain it
    moves towards the goal from every tested cell (data seeds 0-2 all did after 400 steps;
    the data's actions are 50/50, so behaviour cloning alone would not)."""
    path = goal_chain(tmp_path / "chain.hdf5")
    dm = TrajectoryDataModule(
        str(path), batch_size=64, value_goals={"geometric": 1.0}, steps_per_epoch=100
    )
    torch.manual_seed(0)
    model = CRL(
        spec=dm.spec,
        actor_loss="awr",
        alpha=3.0,
        actor_hidden_dims=[32],
        value_hidden_dims=[32],
        latent_dim=16,
        learning_rate=3e-3,
    )
    fit(model, dm, 400)
    eye = torch.eye(7)
    cells, goals = [1, 2, 3, 4, 5, 3, 2, 5], [5, 6, 6, 6, 0, 0, 0, 1]
    actions = model.act(eye[cells], eye[goals])
    assert actions.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    with pytest.raises(ConfigError, match="discrete actions need actor_loss awr"):
        CRL(spec=dm.spec, actor_hidden_dims=[8], value_hidden_dims=[8])


def test_dqn_picks_the_optimal_action_in_a_chain(tmp_path: Path) -> None:
    path = chain_mdp(tmp_path / "chain.hdf5")
    dm = TrajectoryDataModule(str(path), batch_size=128, steps_per_epoch=100)
    assert dm.spec.discrete and dm.spec.action_dim == 2
    model = DQN(
        spec=dm.spec,
        hidden_dims=[32, 32],
        learning_rate=3e-3,
        discount=0.9,
        tau=0.05,
        cql_alpha=0.5,
    )
    fit(model, dm, 1000)
    cells = torch.eye(6)[:5]
    q = model.q_values(cells, task_ids=torch.zeros(5, dtype=torch.long))
    assert (q.argmax(-1) == 1).all(), q
    # Values grow towards the goal, as discount ** steps-to-go says.
    best = q.max(-1).values.numpy()
    assert (np.diff(best) > 0).all(), best


def test_text_conditioning_separates_two_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GCRL_CACHE_DIR", str(tmp_path / "cache"))
    path = two_text_tasks(tmp_path / "text.hdf5")
    dm = TrajectoryDataModule(str(path), batch_size=128, steps_per_epoch=100)
    text = BC(spec=dm.spec, task_signal="text", hidden_dims=[32], loss="mse", learning_rate=3e-3)
    blind = BC(spec=dm.spec, task_signal="none", hidden_dims=[32], loss="mse", learning_rate=3e-3)
    fit(text, dm, 150)
    fit(blind, dm, 150)
    obs = torch.rand(50, 3) * 2 - 1
    left = text.act(obs, task_ids=torch.zeros(50, dtype=torch.long))
    right = text.act(obs, task_ids=torch.ones(50, dtype=torch.long))
    assert (left < -0.5).all() and (right > 0.5).all()
    assert blind.act(obs, task_ids=torch.zeros(50, dtype=torch.long)).abs().mean() < 0.3

    # Saved and reloaded without the language model; a policy callable on new wordings.
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.strategy.connect(AgentModule(text))
    trainer.save_checkpoint(tmp_path / "text.ckpt")
    restored = load_agent(tmp_path / "text.ckpt", BC)
    assert torch.equal(restored.signal.table, text.signal.table)
    policy = load_policy(tmp_path / "text.ckpt")
    assert policy(np.zeros(3), texts="move left")[0] < 0
    assert policy(np.zeros((2, 3)), texts=["move right", "go to the right"])[0, 0] > 0
    assert policy(np.zeros(3), task_ids=1)[0] > 0


# --------------------------------------------------------------------- every combination
@pytest.mark.parametrize("signal", ["none", "onehot", "embedding", "goal", "text"])
@pytest.mark.parametrize(
    ("algorithm", "options"),
    [
        (BC, {"hidden_dims": [16]}),
        (BC, {"hidden_dims": [16], "conditioning": "film", "multi_head": True}),
        (IQL, {"actor_hidden_dims": [16], "value_hidden_dims": [16]}),
        (
            IQL,
            {
                "actor_hidden_dims": [16],
                "value_hidden_dims": [16],
                "actor_loss": "awr",
                "multi_head": True,
            },
        ),
    ],
    ids=["bc", "bc-film-multihead", "iql", "iql-awr-multihead"],
)
def test_every_algorithm_with_every_signal_logs_per_task_losses(
    algorithm: type,
    options: dict,
    signal: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GCRL_CACHE_DIR", str(tmp_path / "cache"))
    path = multitask_goal_reaching(tmp_path / "multi.hdf5")
    dm = TrajectoryDataModule(str(path), batch_size=64, steps_per_epoch=2)
    model = algorithm(spec=dm.spec, task_signal=signal, **options)
    trainer = fit(model, dm, 2, log_every_n_steps=1)
    metrics = trainer.callback_metrics
    key = "actor/loss"
    assert torch.isfinite(metrics[key])
    assert {f"{key}/task/task{t}" for t in range(3)} <= set(metrics), sorted(metrics)


@pytest.mark.parametrize("signal", ["none", "onehot", "embedding", "text"])
def test_dqn_with_every_signal(
    signal: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcrl.datasets import Task, concatenate, load, save

    monkeypatch.setenv("GCRL_CACHE_DIR", str(tmp_path / "cache"))
    single = chain_mdp(tmp_path / "chain.hdf5", episodes=20)
    one_task = TrajectoryDataModule(str(single), batch_size=32, steps_per_epoch=2)
    if signal == "text":  # the single task has no text to embed
        with pytest.raises(ConfigError, match=r"task_signal text: tasks .* have no text"):
            DQN(spec=one_task.spec, task_signal=signal, hidden_dims=[8])
    elif signal != "none":  # a task signal on one task would be a constant: refused
        refused = DQN(spec=one_task.spec, task_signal=signal, hidden_dims=[8])
        with pytest.raises(ConfigError, match=f"task_signal {signal}: the data holds 1 task"):
            fit(refused, one_task, 2)
    other = chain_mdp(tmp_path / "other.hdf5", episodes=20, seed=1)
    path = save(
        concatenate(
            [load(single), load(other)], [Task("left", "go left"), Task("right", "go right")]
        ),
        tmp_path / "two.hdf5",
    )
    dm = TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=2)
    model = DQN(spec=dm.spec, task_signal=signal, hidden_dims=[8])
    trainer = fit(model, dm, 2, log_every_n_steps=1)
    assert torch.isfinite(trainer.callback_metrics["critic/loss"])


def test_algorithms_refuse_the_wrong_action_kind(tmp_path: Path) -> None:
    continuous = TrajectoryDataModule(str(goal_reaching(tmp_path / "g.hdf5", 3, 4)))
    discrete = TrajectoryDataModule(str(chain_mdp(tmp_path / "c.hdf5", episodes=5)))
    with pytest.raises(ConfigError, match="discrete actions only"):
        DQN(spec=continuous.spec)
    with pytest.raises(ConfigError, match="continuous actions only"):
        IQL(spec=discrete.spec)
    with pytest.raises(ConfigError, match="spec"):
        BC()


def test_discrete_bc_learns_the_majority_action(tmp_path: Path) -> None:
    """Cross-entropy BC imitates a behaviour policy that moves right 80 % of the time."""
    path = chain_mdp(tmp_path / "chain.hdf5", episodes=200, right=0.8)
    dm = TrajectoryDataModule(str(path), batch_size=128, steps_per_epoch=50)
    model = BC(spec=dm.spec, hidden_dims=[32], learning_rate=3e-3)
    fit(model, dm, 150)
    cells = torch.eye(6)[:5]
    predicted = model.act(cells, task_ids=torch.zeros(5, dtype=torch.long))
    assert predicted.dtype == torch.int64
    assert predicted.tolist() == [1] * 5
    probabilities = torch.softmax(model.actor(cells, torch.zeros(5, 0)), -1)[:, 1]
    assert ((probabilities > 0.65) & (probabilities < 0.95)).all(), probabilities


COMPILED_CASES = [
    pytest.param(BC, {"hidden_dims": [16]}, "goal", id="bc"),
    pytest.param(IQL, {"actor_hidden_dims": [16], "value_hidden_dims": [16]}, "goal", id="iql"),
    pytest.param(GCIVL, {"actor_hidden_dims": [16], "value_hidden_dims": [16]}, "goal", id="gcivl"),
    pytest.param(
        CRL,
        {"actor_hidden_dims": [16], "value_hidden_dims": [16], "latent_dim": 8},
        "goal",
        id="crl",
    ),
    pytest.param(QRL, {"hidden_dims": [16], "latent_dim": 16}, "goal", id="qrl"),
    pytest.param(HIQL, {"hidden_dims": [16], "rep_dim": 4, "subgoal_steps": 3}, "goal", id="hiql"),
    pytest.param(DQN, {"hidden_dims": [16]}, "none", id="dqn", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("algorithm", "sizes", "signal"), COMPILED_CASES)
def test_compiled_step_equals_the_eager_step(
    algorithm: type, sizes: dict, signal: str, tmp_path: Path
) -> None:
    """``compile_step`` changes how the update runs, not what it computes: after a few
    Lightning steps the parameters (target networks included) agree with the eager run's."""
    if algorithm is DQN:
        path = chain_mdp(tmp_path / "chain.hdf5", episodes=10)
    else:
        path = goal_reaching(tmp_path / "g.hdf5", episodes=4, length=8)
    trained = []
    for compile_step in (False, True):
        dm = TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=4, seed=1)
        torch.manual_seed(0)
        model = AgentModule(
            algorithm(spec=dm.spec, task_signal=signal, compile_step=compile_step, **sizes)
        )
        fit(model, dm, 4)
        whole_step = model._whole_step
        assert (whole_step is not None and not whole_step.eager) == compile_step
        trained.append(model.state_dict())
    eager, compiled = trained
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    ("algorithm", "sizes"),
    [(BC, {"hidden_dims": [16]}), (IQL, {"actor_hidden_dims": [16], "value_hidden_dims": [16]})],
    ids=["bc", "iql"],
)
def test_updates_per_batch_step_on_each_part_in_turn(
    algorithm: type, sizes: dict, tmp_path: Path
) -> None:
    """``updates_per_batch=2``: each Lightning step takes one optimiser step per part of its
    batch, the same as a plain loop over the parts (target updates included), and
    ``max_steps`` counts optimiser steps."""
    path = goal_reaching(tmp_path / "g.hdf5", episodes=4, length=8)

    def data() -> TrajectoryDataModule:
        return TrajectoryDataModule(
            str(path), batch_size=16, updates_per_batch=2, steps_per_epoch=3, seed=1
        )

    batches = list(data().train_dataloader())
    assert [b.updates for b in batches] == [2, 2, 2] and len(batches[0]) == 32
    parts = [part for batch in batches for part in batch.parts()]
    assert all(len(p) == 16 for p in parts)
    torch.manual_seed(0)
    stepped = algorithm(spec=data().spec, task_signal="goal", **sizes)
    trainer = fit(stepped, data(), 5)
    assert trainer.global_step == 5  # the third batch takes one of its two steps

    torch.manual_seed(0)
    looped = AgentModule(algorithm(spec=data().spec, task_signal="goal", **sizes))
    optimizer = looped.configure_optimizers()
    for part in parts[:5]:
        _, objective = looped.compute_losses(part)
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
        looped.update_targets()
    expected = looped.state_dict()
    for name, value in stepped.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("optim", ["pcgrad", "gradnorm"])
@pytest.mark.parametrize(
    ("algorithm", "options"),
    [
        (BC, {"hidden_dims": [16, 16], "multi_head": True}),
        (IQL, {"actor_hidden_dims": [16], "value_hidden_dims": [16]}),
    ],
    ids=["bc-multihead", "iql"],
)
def test_multitask_optimisers_under_lightning(
    algorithm: type, options: dict, optim: str, tmp_path: Path
) -> None:
    path = multitask_goal_reaching(tmp_path / "multi.hdf5")
    dm = TrajectoryDataModule(str(path), batch_size=48, steps_per_epoch=3)
    model = AgentModule(algorithm(spec=dm.spec, task_signal="onehot", optim=optim, **options))
    before = [p.detach().clone() for p in model.parameters()]
    trainer = fit(model, dm, 3, log_every_n_steps=1, gradient_clip_val=1.0)
    assert not model.automatic_optimization
    assert trainer.global_step == 3
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)]
    assert sum(changed) >= len(changed) - 2  # target networks and fixed stds aside
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["actor/loss"])
    if optim == "gradnorm":
        weights = torch.stack([metrics[f"gradnorm/weight/task{t}"] for t in range(3)])
        assert (weights > 0).all() and torch.isclose(weights.sum(), torch.tensor(3.0))
    if optim == "pcgrad" and model.num_heads > 1:
        heads = {id(p) for p in model.actor.net.head.parameters()}
        assert not heads & {id(p) for p in model._multitask.gradients.parameters}
    with pytest.raises(ConfigError, match="optim"):
        algorithm(spec=dm.spec, optim="adam")


@pytest.mark.parametrize(("cls", "weights"), [(CRL, {"geometric": 1.0}), (QRL, {"random": 1.0})])
def test_value_goals_are_the_algorithms_own_unless_the_data_option_says(
    cls: type, weights: dict[str, float], tmp_path: Path
) -> None:
    """CRL and QRL declare OGBench's value goals (data_needs); a config names only the
    algorithm, and data.value_goals, when given, wins."""
    path = goal_reaching(tmp_path / "g.hdf5", episodes=4, length=10)
    drawn = {}
    for option in (None, {"current": 1.0}):
        dm = TrajectoryDataModule(
            str(path), batch_size=8, relabel="ogbench", steps_per_epoch=1, value_goals=option
        )
        model = cls(spec=dm.spec, task_signal="goal", hidden_dims=[8])
        fit(model, dm, 1)
        sampler = dm.sampler(dm.train_data, np.random.default_rng(0))
        drawn[str(option)] = dict(sampler.base.goal_sets["value"].weights)
    assert drawn == {"None": weights, "{'current': 1.0}": {"current": 1.0}}
