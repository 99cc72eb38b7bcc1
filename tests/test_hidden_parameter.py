"""gcrl.models.dynamics: the hidden-parameter dynamics model (HiP-MDP) learns task vectors that
encode how the tasks' dynamics differ, infers a new task's vector from a few transitions, and
trains beside an algorithm without breaking its checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gcrl.algorithms import BC
from gcrl.datasets import Task, Trajectories, save
from gcrl.datasets.trajectories import episode_starts_from_ends
from gcrl.errors import ConfigError
from gcrl.models.dynamics import HiddenParameterDynamics, infer_latent
from gcrl.policy import load_agent, load_policy
from gcrl.training import Batch, TrajectoryDataModule

from .training_data import fit, goal_reaching

torch.set_num_threads(1)

SCALES = (0.5, 1.5)  # task 0 and task 1: s' = s + scale * a


def transitions(
    scale: float, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` transitions of the 2-d point ``s' = s + scale * a``, ``s`` and ``a`` uniform in
    [-1, 1]^2, reward ``-|s'|``: (states, actions, next states, rewards)."""
    states = torch.rand(n, 2, generator=generator) * 2 - 1
    actions = torch.rand(n, 2, generator=generator) * 2 - 1
    next_states = states + scale * actions
    return states, actions, next_states, -next_states.norm(dim=1)


def batch_of(
    states: torch.Tensor,
    actions: torch.Tensor,
    next_states: torch.Tensor,
    rewards: torch.Tensor,
    task_ids: torch.Tensor,
) -> Batch:
    return Batch(
        observations=states,
        actions=actions,
        rewards=rewards,
        masks=torch.ones(len(states)),
        next_observations=next_states,
        task_ids=task_ids,
    )


@pytest.fixture(scope="module")
def trained() -> tuple[HiddenParameterDynamics, float]:
    """A model trained 400 Adam steps on 2 x 2000 transitions of the two scales, its task
    vectors started nearly equal (N(0, 0.01)); with the distance between them at the start."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    parts = [transitions(scale, 2000, generator) for scale in SCALES]
    states, actions, next_states, rewards = (
        torch.cat(column) for column in zip(*parts, strict=True)
    )
    task_ids = torch.repeat_interleave(torch.arange(2), 2000)
    table = nn.Embedding(2, 4)
    nn.init.normal_(table.weight, std=0.01)
    start = float((table.weight[0] - table.weight[1]).detach().norm())
    model = HiddenParameterDynamics(table, 2, 2, [64, 64])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        rows = torch.randint(0, len(states), (256,), generator=generator)
        batch = batch_of(
            states[rows], actions[rows], next_states[rows], rewards[rows], task_ids[rows]
        )
        loss = model.losses(batch)["hip/loss"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, start


PROBE_STATE = torch.zeros(1, 2)
PROBE_ACTION = torch.tensor([[1.0, 0.0]])  # s' - s = (scale, 0)


def probe(model: HiddenParameterDynamics, theta: torch.Tensor) -> float:
    """The predicted first coordinate of ``s' - s`` at s = 0, a = (1, 0): the task's scale."""
    with torch.no_grad():
        delta, _ = model.predict(PROBE_STATE, PROBE_ACTION, theta)
    return float(delta[0, 0])


def test_task_vectors_separate_and_encode_the_dynamics_parameter(
    trained: tuple[HiddenParameterDynamics, float],
) -> None:
    """Seeds 0-4 (data and init) gave distances 0.016-0.029 at the start and 0.81-0.89
    after; probes 0.45-0.52 and 1.46-1.53."""
    model, start = trained
    theta0, theta1 = model.latents.weight.detach()
    assert float((theta0 - theta1).norm()) > 10 * start, (start, theta0, theta1)
    low, high = probe(model, theta0), probe(model, theta1)
    assert abs(low - 0.5) < 0.15 and abs(high - 1.5) < 0.15, (low, high)


def test_inferred_vector_of_a_new_task_lies_between_the_training_tasks(
    trained: tuple[HiddenParameterDynamics, float],
) -> None:
    """16 transitions of scale 1.0 (not in the data): theta projects onto the segment
    theta_0 -> theta_1 at 0.49-0.54 over seeds 0-4 (the scale is halfway); its probe lies
    between the tasks' (0.94-1.00). The default start (the vectors' mean) already projects at
    0.5, so the search also starts from either end, and gets there from both (0.529 from
    each with seed 0). Scale 0.5 lands by theta_0 (0.09-0.56 from it, 0.86-1.1 from
    theta_1)."""
    model, _ = trained
    theta0, theta1 = model.latents.weight.detach()
    segment = theta1 - theta0
    data = transitions(1.0, 16, torch.Generator().manual_seed(5))
    for init in (None, theta0, theta1):
        new = infer_latent(model, *data, init=init)
        assert new.shape == (4,) and not new.requires_grad
        coefficient = float((new - theta0) @ segment / (segment @ segment))
        assert 0.25 < coefficient < 0.75, (init, coefficient)
        assert probe(model, theta0) < probe(model, new) < probe(model, theta1)
        assert abs(probe(model, new) - 1.0) < 0.15, (init, probe(model, new))

    like_task0 = infer_latent(model, *transitions(0.5, 16, torch.Generator().manual_seed(6)))
    assert (like_task0 - theta0).norm() < (like_task0 - theta1).norm(), like_task0


def test_inference_is_deterministic_and_leaves_the_model_alone(
    trained: tuple[HiddenParameterDynamics, float],
) -> None:
    model, _ = trained
    data = transitions(1.0, 16, torch.Generator().manual_seed(7))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    first = infer_latent(model, *data, steps=50)
    assert torch.equal(first, infer_latent(model, *data, steps=50))
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad and parameter.grad is None, name
        assert torch.equal(parameter, before[name]), name
    # From init, no steps: init itself; the default start is the trained vectors' mean.
    init = torch.ones(4)
    assert torch.equal(infer_latent(model, *data, steps=0, init=init), init)
    mean = model.latents.weight.detach().mean(0)
    assert torch.equal(infer_latent(model, *data, steps=0), mean)


def test_losses_are_per_sample_weighted_and_train_the_shared_table() -> None:
    torch.manual_seed(0)
    table = nn.Embedding(3, 2)
    model = HiddenParameterDynamics(table, 4, 3, [8], discrete=True, weight=0.5)
    n = 5
    batch = Batch(
        observations=torch.randn(n, 4),
        actions=torch.tensor([0, 2, 1, 2, 0]),
        rewards=torch.randn(n),
        masks=torch.ones(n),
        next_observations=torch.randn(n, 4),
        task_ids=torch.tensor([0, 0, 1, 1, 1]),
    )
    losses = model.losses(batch)
    assert {k: v.shape for k, v in losses.items()} == {
        "hip/loss": (n,),
        "hip/state_mse": (n,),
        "hip/reward_mse": (n,),
    }
    assert not losses["hip/state_mse"].requires_grad
    expected = 0.5 * (losses["hip/state_mse"] + losses["hip/reward_mse"])
    torch.testing.assert_close(losses["hip/loss"], expected)
    delta, reward = model.predict(batch.observations, batch.actions, table(batch.task_ids))
    torch.testing.assert_close(
        losses["hip/state_mse"],
        ((delta - (batch.next_observations - batch.observations)) ** 2).mean(-1).detach(),
    )
    torch.testing.assert_close(losses["hip/reward_mse"], ((reward - batch.rewards) ** 2).detach())
    losses["hip/loss"].mean().backward()
    assert table.weight.grad is not None
    assert table.weight.grad[:2].abs().sum() > 0 and table.weight.grad[2].abs().sum() == 0


def test_shared_rows_follow_their_own_dynamics_and_the_target_reward() -> None:
    """Task sharing: a row of task 0 relabelled to task 1 keeps task 0's dynamics (the state
    change is predicted with theta_0) and takes task 1's reward (predicted with theta_1)."""
    torch.manual_seed(0)
    table = nn.Embedding(2, 3)
    model = HiddenParameterDynamics(table, 2, 2, [8])
    s, a, s2, r = transitions(1.0, 4, torch.Generator().manual_seed(0))
    shared = dataclasses.replace(
        batch_of(s, a, s2, r, torch.ones(4, dtype=torch.long)),
        source_task_ids=torch.zeros(4, dtype=torch.long),
    )
    losses = model.losses(shared)
    delta, _ = model.predict(s, a, table.weight[0])
    _, reward = model.predict(s, a, table.weight[1])
    torch.testing.assert_close(losses["hip/state_mse"], ((delta - (s2 - s)) ** 2).mean(-1))
    torch.testing.assert_close(losses["hip/reward_mse"], (reward - r) ** 2)


# ----------------------------------------------------------------- through an algorithm


def two_dynamics_tasks(path: Path, episodes: int = 20, length: int = 10) -> Path:
    """Two tasks of the 2-d point with random actions that differ only in the scale of the
    step (:data:`SCALES`); reward ``-|s'|``."""
    rng = np.random.default_rng(0)
    obs, nxt, acts, ids = [], [], [], []
    for task, scale in enumerate(SCALES):
        for _ in range(episodes):
            state = rng.uniform(-1, 1, size=2)
            for _ in range(length):
                action = rng.uniform(-1, 1, size=2)
                obs.append(state)
                acts.append(action)
                state = state + scale * action
                nxt.append(state)
                ids.append(task)
    n = len(obs)
    ends = np.zeros(n, dtype=bool)
    ends[length - 1 :: length] = True
    next_observations = np.array(nxt)
    data = Trajectories(
        observations=np.array(obs),
        next_observations=next_observations,
        actions=np.array(acts, dtype=np.float32),
        rewards=-np.linalg.norm(next_observations, axis=1),
        terminals=np.zeros(n, dtype=bool),
        timeouts=ends,
        episode_starts=episode_starts_from_ends(ends),
        task_ids=np.array(ids),
        tasks=(Task("slow", "small steps"), Task("fast", "big steps")),
    )
    return save(data, path, overwrite=True)


def hip_bc(spec: object, **options: object) -> BC:
    kwargs: dict[str, object] = {
        "task_signal": "embedding",
        "task_embedding_dim": 4,
        "dynamics_weight": 1.0,
        "dynamics_hidden_dims": [32, 32],
        "hidden_dims": [32],
        "loss": "mse",
        "learning_rate": 3e-3,
        "compile_step": False,
        **options,
    }
    return BC(spec=spec, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[BC, Batch, float, Path]:
    """BC with the dynamics model, trained 150 steps; a fixed batch, the hip loss on it before
    training, and a checkpoint."""
    root = tmp_path_factory.mktemp("hip")
    dm = TrajectoryDataModule(
        str(two_dynamics_tasks(root / "tasks.hdf5")),
        batch_size=128,
        relabel="none",
        normalize=True,
        steps_per_epoch=50,
    )
    torch.manual_seed(0)
    model = hip_bc(dm.spec)
    assert model.hip_dynamics is not None and model.hip_dynamics.latents is model.signal.table
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert "hip/loss" in model.objective_names
    with torch.no_grad():
        before = float(model.all_losses(batch)["hip/loss"].mean())
    trainer = fit(model, dm, 150)
    checkpoint = root / "hip.ckpt"
    trainer.save_checkpoint(checkpoint)
    return model, batch, before, checkpoint


def test_bc_trains_the_dynamics_loss_beside_its_own(bc_run: tuple[BC, Batch, float, Path]) -> None:
    model, batch, before, _ = bc_run
    with torch.no_grad():
        losses = model.all_losses(batch)
    assert {"actor/loss", "hip/loss", "hip/state_mse", "hip/reward_mse"} <= set(losses)
    after = float(losses["hip/loss"].mean())
    assert after < 0.2 * before, (before, after)
    objective = model.objective_value(losses)
    torch.testing.assert_close(objective, losses["actor/loss"].mean() + losses["hip/loss"].mean())


def test_the_trained_task_vectors_tell_the_dynamics_apart(
    bc_run: tuple[BC, Batch, float, Path],
) -> None:
    """In standardised units: the step along x for a = (1, 0) is scale / std_x, so the fast
    task's predicted step is about 3 times the slow one's (seed 0: 0.40 and 1.10, where
    0.5 / 1.33 = 0.38 and 1.5 / 1.33 = 1.13)."""
    model, *_ = bc_run
    assert model.hip_dynamics is not None
    slow, fast = (
        probe(model.hip_dynamics, theta) for theta in model.hip_dynamics.latents.weight.detach()
    )
    assert fast > 2 * slow > 0, (slow, fast)


def test_dynamics_options_that_cannot_apply_are_refused(
    bc_run: tuple[BC, Batch, float, Path], tmp_path: Path
) -> None:
    model, *_ = bc_run
    with pytest.raises(ConfigError, match="task_signal embedding"):
        hip_bc(model.spec, task_signal="onehot")
    with pytest.raises(ConfigError, match=r"dynamics_weight: must be 0 \(off\) or more"):
        hip_bc(model.spec, dynamics_weight=-1.0)
    with pytest.raises(ConfigError, match="independent layout picks parts by task id"):
        hip_bc(model.spec, layout="independent")
    assert len(hip_bc(model.spec, dynamics_hidden_dims=[]).hip_dynamics.net.trunk) == 0  # linear
    # Relabeled goals' rewards: the reward term must be off.
    dm = TrajectoryDataModule(
        str(two_dynamics_tasks(tmp_path / "g.hdf5")), batch_size=16, relabel="none"
    )
    relabeling = TrajectoryDataModule(str(goal_reaching(tmp_path / "goals.hdf5")), batch_size=16)
    assert relabeling.relabel == "ogbench"
    tasks = dataclasses.replace(relabeling.spec, tasks=dm.spec.tasks)
    with pytest.raises(ConfigError, match="dynamics_reward_weight: the data module relabels"):
        fit(hip_bc(tasks), relabeling, 1)
    fit(hip_bc(tasks, dynamics_reward_weight=0.0), relabeling, 1)


def test_checkpoint_acts_and_reloads_whole(
    bc_run: tuple[BC, Batch, float, Path],
) -> None:
    model, batch, _, checkpoint = bc_run
    model.eval()
    policy = load_policy(checkpoint)
    assert isinstance(policy.agent, BC) and policy.agent is not model
    rng = np.random.default_rng(0)
    raw = rng.uniform(-1, 1, size=(5, 2)).astype(np.float32)
    ids = np.array([0, 1, 0, 1, 1])
    actions = policy(raw, task_ids=ids)
    assert actions.shape == (5, 2) and np.isfinite(actions).all()
    state = torch.as_tensor(model.spec.network_state(raw))
    expected = model.act(state, task_ids=torch.as_tensor(ids)).numpy()
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)

    whole = load_agent(checkpoint, BC)
    assert whole.hip_dynamics is not None and whole.hip_dynamics.latents is whole.signal.table
    with torch.no_grad():
        torch.testing.assert_close(whole.all_losses(batch), model.all_losses(batch))


def test_acting_on_a_new_task_with_an_inferred_vector(
    bc_run: tuple[BC, Batch, float, Path],
) -> None:
    model, batch, _, _ = bc_run
    assert model.hip_dynamics is not None
    rows = batch.task_ids == 1
    theta = infer_latent(
        model.hip_dynamics,
        batch.observations[rows][:16],
        batch.actions[rows][:16],
        batch.next_observations[rows][:16],
        batch.rewards[rows][:16],
    )
    theta0, theta1 = model.hip_dynamics.latents.weight.detach()
    assert (theta - theta1).norm() < (theta - theta0).norm()
    observations = batch.observations[:3]
    with torch.no_grad():
        actions = model.act_on(observations, theta.expand(len(observations), -1), None)
    assert actions.shape == (3, 2) and torch.isfinite(actions).all()
