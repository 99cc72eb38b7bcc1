"""Training: networks, task signals, the data module, algorithms that learn, checkpoints."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from gcrl.algorithms import BC, DQN, IQL
from gcrl.datasets import load
from gcrl.errors import ConfigError, DataError, DatasetNotFoundError
from gcrl.models import ConditionedMLP, Policy, polyak_update, target_copy
from gcrl.policy import load_module, load_policy
from gcrl.tasks.signals import EmbeddingSignal, GoalSignal, OneHotSignal
from gcrl.training import Batch, TrajectoryDataModule

from .training_data import chain_mdp, goal_reaching, multitask_goal_reaching, two_text_tasks

# The test networks are tiny: one thread avoids synchronisation costs (and oversubscribing
# the 2 cores when other work runs).
torch.set_num_threads(1)


def fit(model: L.LightningModule, data: TrajectoryDataModule, steps: int, **trainer: object):
    """Train ``steps`` steps quietly; returns the trainer."""
    torch.manual_seed(0)
    options = {
        "max_steps": steps,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **trainer,
    }
    t = L.Trainer(**options)  # type: ignore[arg-type]
    t.fit(model, data)
    return t


# --------------------------------------------------------------------- networks
def test_conditioning_and_heads() -> None:
    torch.manual_seed(0)
    x, c = torch.randn(5, 3), torch.randn(5, 4)
    for conditioning in ("concat", "film"):
        net = ConditionedMLP(3, 4, [8, 8], 2, conditioning=conditioning)
        assert net(x, c).shape == (5, 2)
    film = ConditionedMLP(3, 4, [8], 2, conditioning="film")
    # FiLM starts as the identity modulation: the condition has no effect before training.
    assert torch.allclose(film(x, c), film(x, torch.zeros_like(c)))
    multi = ConditionedMLP(3, 4, [8], 2, num_heads=3)
    heads = torch.tensor([0, 1, 2, 1, 0])
    full = multi.head(multi.act(multi.norms[0](multi.layers[0](torch.cat([x, c], -1)))))
    expected = full.view(5, 3, 2)[torch.arange(5), heads]
    assert torch.allclose(multi(x, c, heads), expected)
    with pytest.raises(ConfigError, match="task ids"):
        multi(x, c)


def test_narrow_input_layers_store_their_weight_column_major() -> None:
    torch.manual_seed(0)
    net = ConditionedMLP(4, 2, [32, 32], 2)
    first, second = net.layers[0], net.layers[1]
    assert first.weight.shape == (32, 6) and first.weight.stride() == (1, 32)
    assert second.weight.is_contiguous()  # 32 inputs: the ordinary layout
    # Same values, gradients and checkpoint as a row-major copy of the network.
    twin = ConditionedMLP(4, 2, [32, 32], 2)
    twin.load_state_dict(net.state_dict())
    assert twin.layers[0].weight.stride() == (1, 32)
    plain = ConditionedMLP(4, 2, [32, 32], 2)
    plain.layers[0].weight = torch.nn.Parameter(first.weight.detach().contiguous())
    plain.load_state_dict(net.state_dict())
    x, c = torch.randn(64, 4), torch.randn(64, 2)
    for module in (twin, plain):
        module(x, c).square().sum().backward()
    assert torch.allclose(twin(x, c), plain(x, c))
    for (name, a), b in zip(twin.named_parameters(), plain.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-6), name
    assert twin.layers[0].weight.grad is not None
    assert twin.layers[0].weight.grad.stride() == (1, 32)


def test_gaussian_log_prob_matches_torch_distributions() -> None:
    policy = Policy("gaussian", 3, 0, 2, [8], const_std=False)
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([0.3, -0.5]))
    mean, actions = torch.randn(4, 2), torch.randn(4, 2)
    reference = torch.distributions.Normal(mean, policy.std()).log_prob(actions).sum(-1)
    assert torch.allclose(policy.log_prob(mean, actions), reference, atol=1e-6)
    categorical = Policy("categorical", 3, 0, 4, [8])
    logits, labels = torch.randn(4, 4), torch.tensor([0, 3, 1, 2])
    expected = torch.distributions.Categorical(logits=logits).log_prob(labels)
    assert torch.allclose(categorical.log_prob(logits, labels), expected, atol=1e-6)


def test_polyak_update() -> None:
    source = torch.nn.Linear(2, 2)
    target = target_copy(source)
    before = target.weight.clone()
    with torch.no_grad():
        source.weight.add_(1.0)
    polyak_update(target, source, 0.1)
    assert torch.allclose(target.weight, 0.9 * before + 0.1 * source.weight)
    assert not any(p.requires_grad for p in target.parameters())


def test_task_signals() -> None:
    ids = torch.tensor([0, 2, 1])
    assert torch.equal(OneHotSignal(3)(None, ids), torch.eye(3)[ids])
    assert EmbeddingSignal(3, 5)(None, ids).shape == (3, 5)
    goals = torch.randn(3, 2)
    assert torch.equal(GoalSignal(2)(goals, None), goals)
    assert GoalSignal(2, [16, 8])(goals, None).shape == (3, 8)
    with pytest.raises(ConfigError, match="no goals"):
        GoalSignal(2)(None, ids)


# --------------------------------------------------------------------- data
def test_data_module_batches(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=10, length=8)
    dm = TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=3, val_fraction=0.2)
    assert dm.relabel == "ogbench"
    assert dm.spec.observation_dim == 2 and dm.spec.goal_dim == 2
    assert dm.spec.action_dim == 2 and not dm.spec.discrete
    dm.setup("fit")
    assert dm.val_data is not None
    train_rows = set(map(tuple, dm.train_data.observations["observation"].round(9)))
    val_rows = set(map(tuple, dm.val_data.observations["observation"].round(9)))
    assert not train_rows & val_rows, "validation episodes leak into training"
    assert dm.val_data.num_episodes == 2
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    batch = batches[0]
    assert batch.observations.shape == (32, 2) and batch.observations.dtype == torch.float32
    assert batch.goals["actor"].shape == (32, 2) and batch.goals["value"].shape == (32, 2)
    assert set(batch.rewards.unique().tolist()) <= {-1.0, 0.0}  # OGBench's -1/0
    assert torch.equal(batch.masks, -batch.rewards)  # success (reward 0) ends it
    again = list(
        TrajectoryDataModule(
            str(path), batch_size=32, steps_per_epoch=3, val_fraction=0.2
        ).train_dataloader()
    )
    dm2 = TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=3, val_fraction=0.2)
    dm2.setup("fit")
    assert all(
        torch.equal(a.observations, b.observations)
        for a, b in zip(batches, list(dm2.train_dataloader()), strict=True)
    )
    assert len(again) == 3
    val = list(dm.val_dataloader())
    assert len(val) == dm.val_batches
    assert all(
        torch.equal(a.actions, b.actions)
        for a, b in zip(val, list(dm.val_dataloader()), strict=True)
    )


@pytest.mark.parametrize(
    "dataset, options",
    [
        ("goal", {"relabel": "ogbench", "normalize": True, "val_fraction": 0.3}),
        ("goal", {"relabel": "her", "observation_keys": ["observation", "achieved_goal"]}),
        ("goal", {"relabel": "none"}),  # stored desired goals
        ("multitask", {"relabel": "none", "normalize": True}),
        ("chain", {}),  # discrete actions
    ],
)
def test_batches_gathered_from_device_data_equal_numpy_batches(
    tmp_path: Path, dataset: str, options: dict
) -> None:
    """Holding observations and actions as tensors and gathering by row gives the very
    batches the numpy path builds: same keys, dtypes and values, for every sampler."""
    make = {"goal": goal_reaching, "multitask": multitask_goal_reaching, "chain": chain_mdp}
    path = make[dataset](tmp_path / f"{dataset}.hdf5")
    modules = {
        mode: TrajectoryDataModule(
            str(path), batch_size=64, steps_per_epoch=4, device_data=mode, **options
        )
        for mode in ("always", "never")
    }
    for dm in modules.values():
        dm.setup("fit")
    assert modules["always"].on_device(modules["always"].train_data) is not None
    assert modules["never"].on_device(modules["never"].train_data) is None
    loaders = ("train_dataloader", "val_dataloader")
    for loader in loaders if options.get("val_fraction") else loaders[:1]:
        streams = [list(getattr(dm, loader)()) for dm in modules.values()]
        assert len(streams[0]) == len(streams[1]) > 0
        for on_device, in_numpy in zip(*streams, strict=True):
            assert on_device.goals.keys() == in_numpy.goals.keys()
            for key, value in columns(in_numpy).items():
                assert columns(on_device)[key].dtype == value.dtype, key
                assert torch.equal(columns(on_device)[key], value), key


def columns(batch: Batch) -> dict[str, torch.Tensor]:
    """Every tensor of a batch by name (goal sets as ``goals/<set>``)."""
    out = {f.name: getattr(batch, f.name) for f in fields(batch) if f.name != "goals"}
    return out | {f"goals/{k}": v for k, v in batch.goals.items()}


def test_relabeled_goals_inside_the_state_keep_numpy_batches(tmp_path: Path) -> None:
    """A state input holding ``desired_goal`` must see the relabeled goal, which only the
    numpy batch has: such data is never gathered on the device."""
    path = goal_reaching(tmp_path / "g.hdf5")
    dm = TrajectoryDataModule(
        str(path), observation_keys=["observation", "desired_goal"], device_data="always"
    )
    assert dm.on_device(dm.train_data) is None
    with pytest.raises(ConfigError, match="device_data"):
        TrajectoryDataModule(str(path), device_data="gpu")


def test_each_rank_samples_its_own_indices(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=5, length=8)
    dm = TrajectoryDataModule(str(path), batch_size=16, steps_per_epoch=1)

    class FakeTrainer:  # the two attributes the data module reads
        def __init__(self, rank: int) -> None:
            self.global_rank = rank
            self.strategy = SimpleNamespace(root_device=torch.device("cpu"))

    firsts = []
    for rank in (0, 1):
        dm.trainer = FakeTrainer(rank)  # type: ignore[assignment]
        firsts.append(next(iter(dm.train_dataloader())).observations)
    assert not torch.equal(firsts[0], firsts[1])


def test_data_module_errors(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=3, length=4)
    with pytest.raises(ConfigError, match="relabel"):
        TrajectoryDataModule(str(path), relabel="hindsight")
    with pytest.raises(Exception, match="observation_keys"):
        TrajectoryDataModule(str(path), observation_keys=["position"])


# --------------------------------------------------------------------- learning
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


def test_iql_values_rank_states_nearer_the_goal_higher(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=60, length=25, noise=0.3)
    dm = TrajectoryDataModule(str(path), batch_size=256, relabel="ogbench", steps_per_epoch=100)
    model = IQL(
        spec=dm.spec, actor_hidden_dims=[64, 64], value_hidden_dims=[64, 64], learning_rate=1e-3
    )
    # 1500 steps: at 500, seeds 1 and 2 of four stayed near -0.47; at 1500 all four were below -0.8
    fit(model, dm, 1500)
    rng = np.random.default_rng(1)
    goal = torch.zeros(400, 2)
    states = torch.as_tensor(rng.uniform(-1, 1, size=(400, 2)), dtype=torch.float32)
    values = model.state_value(states, goal).numpy()
    distance = states.norm(dim=1).numpy()
    ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    rho = np.corrcoef(ranks(values), ranks(distance))[0, 1]
    assert rho < -0.6, rho


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
    fit(model, dm, 600)
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
    trainer.strategy.connect(text)
    trainer.save_checkpoint(tmp_path / "text.ckpt")
    restored = load_module(tmp_path / "text.ckpt", BC)
    assert torch.equal(restored.signal.table, text.signal.table)
    policy = load_policy(tmp_path / "text.ckpt")
    assert policy(np.zeros(3), texts="move left")[0] < 0
    assert policy(np.zeros((2, 3)), texts=["move right", "go to the right"])[0, 0] > 0
    assert policy(np.zeros(3), task_ids=1)[0] > 0


# --------------------------------------------------------------------- checkpoints
def test_checkpoints_load_safely_and_refuse_the_wrong_algorithm(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=5, length=8)
    dm = TrajectoryDataModule(str(path), batch_size=16, steps_per_epoch=2)
    model = BC(spec=dm.spec, hidden_dims=[16])
    trainer = fit(model, dm, 2, default_root_dir=tmp_path)
    ckpt = tmp_path / "bc.ckpt"
    trainer.save_checkpoint(ckpt)
    restored = load_module(ckpt, BC)
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
        load_module(ckpt, IQL)
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
    monkeypatch.setenv("GCRL_CACHE_DIR", str(tmp_path / "cache"))
    path = chain_mdp(tmp_path / "chain.hdf5", episodes=20)
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


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", [BC, IQL])
def test_compiled_losses_equal_eager_losses(algorithm: type, tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=4, length=8)
    dm = TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=1)
    batch = next(iter(dm.train_dataloader()))
    sizes = (
        {"hidden_dims": [16]}
        if algorithm is BC
        else {"actor_hidden_dims": [16], "value_hidden_dims": [16]}
    )
    torch.manual_seed(0)
    eager = algorithm(spec=dm.spec, **sizes)
    torch.manual_seed(0)
    compiled = algorithm(spec=dm.spec, compile_losses=True, **sizes)
    expected, got = eager.compute_losses(batch), compiled.compute_losses(batch)
    assert compiled._compiled is not None
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


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
    model = algorithm(
        spec=dm.spec, task_signal="onehot", optim=optim, gradient_clip_val=1.0, **options
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer = fit(model, dm, 3, log_every_n_steps=1)
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
