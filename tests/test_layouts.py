"""The multi-task layouts (gcrl.models.layouts, care, soft_modular): per-task networks equal
networks trained alone, CARE's and soft modularization's weights are distributions that
follow the task, and task-specific parts fit tasks that a shared network cannot tell apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gcrl.algorithms import BC, DQN, IQL
from gcrl.datasets import Task
from gcrl.errors import ConfigError
from gcrl.learner import AgentModule
from gcrl.models import MLP, conditioned_network
from gcrl.models.care import CARE
from gcrl.models.grouped import TaskGroups
from gcrl.models.layouts import IndependentMLP
from gcrl.models.soft_modular import SoftModularNetwork
from gcrl.spec import InputSpec
from gcrl.training import TrajectoryDataModule
from gcrl.training.batch import Batch

from .training_data import fit, multitask_goal_reaching

torch.set_num_threads(1)

TWO_TASKS = (Task("right", "push the block to the right"), Task("left", "push it to the left"))


def two_task_spec(obs_dim: int = 4, action_dim: int = 2) -> InputSpec:
    return InputSpec(
        observation_dim=obs_dim, action_dim=action_dim, discrete=False, tasks=TWO_TASKS
    )


def conflicting_batch(size: int, seed: int) -> Batch:
    """Two tasks over the same states with opposite actions: task 0 demonstrates ``a = +s[:2]
    / 2``, task 1 ``a = -s[:2] / 2``; without the task, the best guess is 0."""
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(size, 4, generator=g)
    tasks = torch.randint(0, 2, (size,), generator=g)
    sign = 1.0 - 2.0 * tasks.float()
    actions = (sign[:, None] * states[:, :2] / 2).clamp(-1, 1)
    zeros = torch.zeros(size)
    return Batch(states, actions, zeros, torch.ones(size), states, tasks)


def test_task_groups_pack_and_unpack_every_row_in_place() -> None:
    ids = torch.tensor([2, 0, 2, 2, 0, 3, 2])  # task 1 absent, task 2 the largest group
    groups = TaskGroups(ids, 4)
    rows = torch.arange(len(ids) * 3, dtype=torch.float32).view(len(ids), 3)
    block = groups.pack(rows)
    assert block.shape == (4, 4, 3)
    for row, task in enumerate(ids.tolist()):  # each row sits in its own task's slab
        assert any(torch.equal(block[task, k], rows[row]) for k in range(4))
    assert torch.count_nonzero(block[1]) == 0
    assert torch.equal(groups.unpack(block), rows)
    with pytest.raises(ValueError, match="task ids reach 3"):
        TaskGroups(ids, 3)


def _as_alone(independent: IndependentMLP, task: int) -> MLP:
    """Task ``task``'s network of ``independent`` as an ordinary MLP (weights copied)."""
    stack = independent.stack
    widths = [layer.weight.shape[2] for layer in stack.layers]
    in_dim = stack.layers[0].weight.shape[1]
    mlp = MLP(in_dim, widths, independent.out_dim, activation_name="gelu")
    linears = [m for m in mlp.trunk if isinstance(m, nn.Linear)] + [mlp.out]
    grouped = [*stack.layers, independent.head]
    with torch.no_grad():
        for linear, layer in zip(linears, grouped, strict=True):
            linear.weight.copy_(layer.weight[task].t())
            linear.bias.copy_(layer.bias[task, 0])
    return mlp


def test_independent_networks_equal_one_network_per_task_trained_alone() -> None:
    torch.manual_seed(0)
    tasks, batch = 3, 48
    net = IndependentMLP(tasks, 5, [16, 16], 2)
    alone = [_as_alone(net, t) for t in range(tasks)]
    x = torch.randn(batch, 5)
    ids = torch.randint(0, tasks, (batch,))
    empty = x.new_zeros(batch, 0)
    out = net(x, empty, ids)
    for t in range(tasks):
        torch.testing.assert_close(out[ids == t], alone[t](x[ids == t]), rtol=1e-5, atol=1e-6)

    # Same batches, same objective (each task's rows' squared errors summed over the whole
    # batch's size), Adam on each: the per-task networks stay equal.
    joint = torch.optim.Adam(net.parameters(), lr=1e-2)
    each = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in alone]
    g = torch.Generator().manual_seed(1)
    for _ in range(25):
        x = torch.randn(batch, 5, generator=g)
        ids = torch.randint(0, tasks, (batch,), generator=g)
        y = torch.randn(batch, 2, generator=g)
        joint.zero_grad()
        ((net(x, empty, ids) - y) ** 2).sum(-1).mean().backward()
        joint.step()
        for t, (mlp, opt) in enumerate(zip(alone, each, strict=True)):
            rows = ids == t
            opt.zero_grad()
            (((mlp(x[rows]) - y[rows]) ** 2).sum(-1).sum() / batch).backward()
            opt.step()
    x = torch.randn(64, 5, generator=g)
    ids = torch.randint(0, tasks, (64,), generator=g)
    out = net(x, x.new_zeros(64, 0), ids)
    for t in range(tasks):
        torch.testing.assert_close(out[ids == t], alone[t](x[ids == t]), rtol=1e-4, atol=1e-5)
    # Training moved them: an untrained copy would fail the comparison above.
    assert not torch.allclose(
        net.head.weight[0], IndependentMLP(tasks, 5, [16, 16], 2).head.weight[0]
    )


def test_care_attention_is_a_distribution_that_moves_with_the_metadata() -> None:
    torch.manual_seed(0)
    care = CARE(6, 8, [32, 32], 2, experts=4, context_dim=16)
    metadata = torch.randn(3, 8)
    weights = care.attention(metadata)
    assert weights.shape == (3, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert bool((weights > 0).all())
    assert not torch.allclose(weights[0], weights[1], atol=1e-3)
    # The one-matmul mixture of single-layer experts is the weighted sum of their encodings.
    x = torch.randn(3, 6)
    torch.testing.assert_close(
        care._linear_mixture(x, weights), (weights.unsqueeze(-1) * care.encodings(x)).sum(1)
    )
    # The weights depend on the metadata only, the output on both.
    states = torch.randn(3, 6)
    same_task = metadata[:1].expand(3, -1)
    out = care(states, same_task)
    assert not torch.allclose(out[0], out[1])
    # Training on two tasks whose metadata differ pulls their attention apart.
    before = care.attention(metadata[:2]).detach()
    opt = torch.optim.Adam(care.parameters(), lr=1e-2)
    for _ in range(150):
        batch = conflicting_batch(128, seed=_)
        c = metadata[batch.task_ids]
        x = torch.cat([batch.observations, torch.zeros(128, 2)], dim=-1)
        opt.zero_grad()
        ((care(x, c) - batch.actions) ** 2).mean().backward()
        opt.step()
    after = care.attention(metadata[:2]).detach()
    assert (after[0] - after[1]).abs().sum() > (before[0] - before[1]).abs().sum()


def test_soft_modularization_routes_each_module_by_a_distribution_of_the_task() -> None:
    torch.manual_seed(0)
    net = SoftModularNetwork(6, 2, [32, 32, 32], 3, modules=4)
    x = torch.randn(5, 6).expand(2, 5, 6).reshape(10, 6)
    c = torch.eye(2).repeat_interleave(5, dim=0)
    routes = net.routing(x, c)
    assert len(routes) == 2  # between three layers
    for route in routes:
        assert route.shape == (10, 4, 4)
        assert bool((route >= 0).all())
        torch.testing.assert_close(route.sum(-1), torch.ones(10, 4))
    # Same states, other task: other routes.
    assert not torch.allclose(routes[0][:5], routes[0][5:], atol=1e-4)
    assert net(x, c).shape == (10, 3)


#: Layouts with task-specific parts, and their options, for the learning test.
SPECIFIC = {
    "heads": {},
    "independent": {},
    "task_encoders": {},
    "task_encoder": {},
    "care": {},
    "soft_modular": {},
}


def _train_bc(model: BC, steps: int) -> float:
    """MSE BC for ``steps`` Adam steps on conflicting batches; the held-out squared error."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = conflicting_batch(128, seed=step)
        opt.zero_grad()
        model.objective_value(model.all_losses(batch)).backward()
        opt.step()
    held_out = conflicting_batch(512, seed=10_000)
    with torch.no_grad():
        return float(model.all_losses(held_out)["actor/loss"].mean())


@pytest.mark.parametrize("layout", list(SPECIFIC))
def test_task_specific_parts_fit_tasks_a_shared_network_cannot_tell_apart(layout: str) -> None:
    torch.manual_seed(0)
    common: dict[str, Any] = {"spec": two_task_spec(), "hidden_dims": [32, 32], "loss": "mse"}
    blind = _train_bc(BC(task_signal="none", **common), 300)
    # Ids select the parts of the task-id layouts; the others read the one-hot signal.
    model = BC(task_signal="onehot", layout=layout, layout_options=SPECIFIC[layout], **common)
    fitted = _train_bc(model, 300)
    # Without the task the best guess is 0: the error stays at the actions' variance (~0.25
    # per dimension here, clipped); with task parts it falls well below.
    assert blind > 0.15
    assert fitted < 0.3 * blind, (layout, fitted, blind)


def test_layouts_serve_value_networks_and_the_multitask_optimisers() -> None:
    torch.manual_seed(0)
    spec = two_task_spec()
    batch = conflicting_batch(64, seed=0)
    for layout in ("independent", "care", "soft_modular"):
        iql = IQL(spec=spec, task_signal="onehot", hidden_dims=[16, 16], layout=layout)
        losses = iql.all_losses(batch)
        assert torch.isfinite(iql.objective_value(losses))
        assert iql.critic.config["layout"]["kind"] == layout
    model = BC(spec=spec, task_signal="onehot", hidden_dims=[16, 16], layout="independent")
    assert set(map(id, model.actor.net.task_specific_parameters())) == set(
        map(id, model.actor.net.parameters())
    )
    with pytest.raises(ConfigError, match="independent layout shares no layer"):
        BC(
            spec=spec,
            task_signal="onehot",
            hidden_dims=[16, 16],
            layout="independent",
            optim="gradnorm",
        ).last_shared_layer()
    care = BC(spec=spec, task_signal="onehot", hidden_dims=[16, 16], layout="care")
    assert care.last_shared_layer() is care.actor.net.trunk.last_linear()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"layout": "towers"}, "layout: unknown 'towers'"),
        ({"layout": "care", "layout_options": {"expert": 2}}, "layout_options.expert: not an"),
        ({"layout": "care", "multi_head": True}, "multi_head: is the heads layout"),
        ({"layout": "care", "layout_options": {"encoder_layers": 2}}, "leaves no shared trunk"),
        ({"layout": "care", "task_signal": "none"}, "layout care: its task parts read"),
        ({"layout": "soft_modular", "hidden_dims": [16]}, "at least two hidden layers"),
        ({"layout": "independent", "conditioning": "film"}, "conditioning film: only"),
        ({"layout": "care", "layout_options": {"experts": 0}}, "experts: must be at least 1"),
    ],
)
def test_bad_layouts_are_one_line_errors(options: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {
        "spec": two_task_spec(),
        "task_signal": "onehot",
        "hidden_dims": [16, 16],
    }
    kwargs.update(options)
    with pytest.raises(ConfigError, match=message):
        BC(**kwargs)


def test_a_task_id_layout_needs_several_tasks() -> None:
    single = InputSpec(observation_dim=4, action_dim=2, discrete=False)
    with pytest.raises(ConfigError, match="need data of several tasks"):
        BC(spec=single, task_signal="none", hidden_dims=[16, 16], layout="independent")


def test_the_network_factory_keeps_the_shared_layout_unchanged() -> None:
    """The default layout is the plain conditioned MLP: same parameters, same outputs."""
    from gcrl.models.mlp import ConditionedMLP

    torch.manual_seed(0)
    a = conditioned_network(4, 2, [8, 8], 3)
    torch.manual_seed(0)
    b = ConditionedMLP(4, 2, [8, 8], 3)
    x, c = torch.randn(5, 4), torch.randn(5, 2)
    assert isinstance(a, ConditionedMLP)
    torch.testing.assert_close(a(x, c), b(x, c))
    assert np.isclose(
        sum(p.numel() for p in a.parameters()), sum(p.numel() for p in b.parameters())
    )


@pytest.mark.parametrize(("layout", "optim"), [("task_encoders", "pcgrad"), ("care", "gradnorm")])
def test_the_multitask_optimisers_train_through_the_layouts(
    layout: str, optim: str, tmp_path: Path
) -> None:
    """PCGrad leaves the per-task parts out of its surgery (and refuses a layout sharing
    nothing); GradNorm balances at the last shared layer (CARE's trunk): both train a few
    steps and GradNorm's weights move."""
    path = multitask_goal_reaching(tmp_path / "tasks.hdf5", tasks=3)
    dm = TrajectoryDataModule(str(path), batch_size=32, relabel="none", steps_per_epoch=5)
    agent = BC(spec=dm.spec, task_signal="onehot", hidden_dims=[16, 16], layout=layout, optim=optim)
    model = AgentModule(agent)
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, dm, 6)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    if optim == "pcgrad":
        surgery = {id(p) for p in model._multitask.gradients.parameters}
        encoders = {id(p) for p in model.actor.net.encoders.parameters()}
        assert surgery and not surgery & encoders
        independent = BC(spec=dm.spec, task_signal="onehot", layout="independent", optim=optim)
        with pytest.raises(ConfigError, match="independent layout shares no parameters"):
            fit(independent, dm, 1)
    else:
        assert model._multitask.layer is model.actor.net.trunk.last_linear()
        assert not torch.allclose(model._multitask.weights, torch.ones(3))


def test_dqn_takes_the_layouts_for_discrete_actions() -> None:
    spec = InputSpec(observation_dim=4, action_dim=3, discrete=True, tasks=TWO_TASKS)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(32, 4, generator=g)
    batch = Batch(
        obs,
        torch.randint(0, 3, (32,), generator=g),
        torch.randn(32, generator=g),
        torch.ones(32),
        obs,
        torch.randint(0, 2, (32,), generator=g),
    )
    for layout in ("independent", "soft_modular"):
        dqn = DQN(spec=spec, task_signal="onehot", hidden_dims=[16, 16], layout=layout)
        assert torch.isfinite(dqn.objective_value(dqn.all_losses(batch)))
        actions = dqn.act(obs, None, batch.task_ids)
        assert actions.shape == (32,) and actions.dtype == torch.int64
