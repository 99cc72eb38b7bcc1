"""PCGrad and GradNorm from one backward pass, against straightforward references."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.optim import GradNorm, PCGrad, TaskGradients, TaskLosses, random_orders

torch.set_num_threads(1)


def problem(num_tasks: int, seed: int, dtype: torch.dtype = torch.float64):
    """A shared trunk (Linear, LayerNorm, GELU) with per-sample regression losses."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    trunk = nn.Sequential(
        nn.Linear(5, 16),
        nn.LayerNorm(16),
        nn.GELU(),
        nn.Linear(16, 16),
        nn.GELU(),
        nn.Linear(16, 3),
    ).to(dtype)
    batch = 6 * num_tasks
    x = torch.randn(batch, 5, generator=g, dtype=dtype)
    y = torch.randn(batch, 3, generator=g, dtype=dtype)
    task_ids = torch.randint(0, num_tasks, (batch,), generator=g)
    # Tasks pull towards different targets, so their gradients conflict.
    y = y + torch.randn(num_tasks, 3, generator=g, dtype=dtype)[task_ids] * 3
    return trunk, x, y, task_ids


def per_sample_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).sum(-1)


def reference_task_grads(model, x, y, task_ids, num_tasks, weights=None):  # type: ignore[no-untyped-def]
    """One backward pass per task: the gradient of each task's mean loss, flattened."""
    params = list(model.parameters())
    grads = []
    for task in range(num_tasks):
        mask = task_ids == task
        model.zero_grad()
        if mask.any():
            loss = per_sample_losses(model, x[mask], y[mask]).mean()
            if weights is not None:
                loss = loss * weights[task]
            loss.backward()
        grads.append(
            torch.cat(
                [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]
            )
        )
    model.zero_grad()
    return torch.stack(grads)


def reference_pcgrad(grads: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """The original algorithm, a double loop over gradient vectors in the given orders."""
    projected = []
    for i in range(len(grads)):
        g = grads[i].clone()
        for j in orders[i].tolist():
            dot = g @ grads[j]
            norm = grads[j] @ grads[j]
            if dot < 0 and norm > 0:
                g = g - dot / norm * grads[j]
        projected.append(g)
    return torch.stack(projected).sum(0)


def flat_grad(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("num_tasks", [2, 3, 5, 10, 50])
def test_task_gradients_equal_one_backward_per_task(num_tasks: int) -> None:
    model, x, y, task_ids = problem(num_tasks, seed=num_tasks)
    gradients = TaskGradients([model], list(model.parameters()))
    assert len(gradients.covered_layers) == 4 and not gradients.fallback
    with gradients.capture():
        losses = per_sample_losses(model, x, y)
    per_task = gradients.backward(TaskLosses(losses, task_ids, num_tasks))
    got = torch.cat([per_task[p].reshape(num_tasks, -1) for p in model.parameters()], 1)
    # The backward pass skipped the covered weights' own gradients: .grad is the caller's.
    assert all(p.grad is None for p in model.parameters())
    expected = reference_task_grads(model, x, y, task_ids, num_tasks)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_captured_activations_are_freed_after_each_step() -> None:
    """The gradient hook on a captured output refers back to its record; unless the cycle is
    cut, autograd keeps every step's activations alive (a leak of ~3 MB per MT10 step)."""
    import gc
    import weakref

    model, x, y, task_ids = problem(3, seed=0)
    gradients = TaskGradients([model], list(model.parameters()))
    outputs: list[weakref.ref[torch.Tensor]] = []
    for _ in range(3):
        with gradients.capture():
            losses = per_sample_losses(model, x, y)
        outputs += [weakref.ref(r[2]) for rs in gradients._records.values() for r in rs]
        gradients.backward(TaskLosses(losses, task_ids, 3))
        # GradNorm's path releases its record too.
        norms = TaskGradients([model[-1]], [model[-1].weight])
        with norms.capture():
            losses = per_sample_losses(model, x, y)
        outputs += [weakref.ref(r[2]) for rs in norms._records.values() for r in rs]
        norms.weight_norms(TaskLosses(losses, task_ids, 3))
        del losses
    gc.collect()
    assert len(outputs) == 3 * 5 and all(ref() is None for ref in outputs)


@pytest.mark.parametrize("strategy", ["kernel", "per-task", "auto"])
@pytest.mark.parametrize("num_tasks", [2, 3, 5, 10, 50])
def test_one_pass_pcgrad_equals_the_reference(num_tasks: int, strategy: str) -> None:
    model, x, y, task_ids = problem(num_tasks, seed=100 + num_tasks)
    orders = random_orders(num_tasks, torch.Generator().manual_seed(num_tasks))
    pcgrad = PCGrad([model], num_tasks, strategy=strategy)  # type: ignore[arg-type]
    with pcgrad.capture():
        losses = per_sample_losses(model, x, y)
    pcgrad.backward(losses, task_ids, orders=orders)
    got = flat_grad(model)
    expected = reference_pcgrad(reference_task_grads(model, x, y, task_ids, num_tasks), orders)
    assert (got - expected).norm() <= 1e-5 * expected.norm()
    # Conflicts were there to project: PCGrad differs from the plain summed gradient.
    plain = reference_task_grads(model, x, y, task_ids, num_tasks).sum(0)
    assert (got - plain).norm() > 1e-3 * plain.norm()


@pytest.mark.parametrize("strategy", ["kernel", "per-task"])
@pytest.mark.parametrize("num_tasks", [3, 20])
def test_gram_matrix_and_combinations_equal_the_reference(num_tasks: int, strategy: str) -> None:
    """Per-sample kernels and per-task gradients give the same Gram matrix and combination,
    with a task absent from the batch and a covered layer's bias left out of the parameters
    (it keeps its plain gradient)."""
    model, x, y, task_ids = problem(num_tasks, seed=3)
    task_ids = torch.where(task_ids == 1, 0, task_ids)  # task 1 has no samples
    params = [p for p in model.parameters() if p is not model[3].bias]
    gradients = TaskGradients([model], params, strategy=strategy)  # type: ignore[arg-type]
    with gradients.capture():
        losses = per_sample_losses(model, x, y)
    terms = gradients.gram(TaskLosses(losses, task_ids, num_tasks))
    assert bool(terms.kernel_calls) == (strategy == "kernel")
    bias_grad = model[3].bias.grad.clone()
    coefficients = torch.linspace(-1.0, 2.0, num_tasks, dtype=torch.float64)
    terms.accumulate(coefficients)
    got = torch.cat([p.grad.flatten() for p in params])
    reference = reference_task_grads(model, x, y, task_ids, num_tasks)
    sizes = [p.numel() for p in model.parameters()]
    keep = torch.cat(
        [
            torch.full((n,), p is not model[3].bias)
            for p, n in zip(model.parameters(), sizes, strict=True)
        ]
    )
    wanted = reference[:, keep]
    torch.testing.assert_close(terms.matrix, wanted @ wanted.T, rtol=1e-9, atol=1e-12)
    plain_bias = reference[:, ~keep].sum(0)
    torch.testing.assert_close(bias_grad, plain_bias, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got, coefficients @ wanted, rtol=1e-9, atol=1e-12)


def test_auto_strategy_follows_the_layer_sizes() -> None:
    """Wide layers with few samples per task use kernels; a narrow input layer, or a batch
    much larger than the widths, forms per-task gradients."""
    trunk = nn.Sequential(nn.Linear(32, 256), nn.GELU(), nn.Linear(256, 256))
    x = torch.randn(256, 32)
    for batch, expected in ((256, [trunk[2]]), (4096, [])):
        gradients = TaskGradients([trunk], list(trunk.parameters()))
        task_ids = torch.arange(batch) % 10
        with gradients.capture():
            losses = trunk(x.repeat(batch // 256, 1)).pow(2).sum(-1)
        terms = gradients.gram(TaskLosses(losses, task_ids, 10))
        assert [layer for layer, _, _ in terms.kernel_calls] == expected


def test_float32_matches_the_reference_to_1e5() -> None:
    model, x, y, task_ids = problem(10, seed=7, dtype=torch.float32)
    orders = random_orders(10, torch.Generator().manual_seed(1))
    pcgrad = PCGrad([model], 10)
    with pcgrad.capture():
        losses = per_sample_losses(model, x, y)
    pcgrad.backward(losses, task_ids, orders=orders)
    got = flat_grad(model)
    expected = reference_pcgrad(reference_task_grads(model, x, y, task_ids, 10), orders)
    assert (got - expected).norm() <= 1e-5 * expected.norm()


def test_two_conflicting_tasks_give_the_closed_form_projection() -> None:
    """g1 = (1, 0), g2 = (-1, 1): g1' = (0.5, 0.5), g2' = (0, 1), summed (0.5, 1.5)."""
    layer = nn.Linear(2, 1, bias=False)
    x = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # d(out)/dW = x: task gradients g1, g2
    pcgrad = PCGrad([layer], 2)
    with pcgrad.capture():
        losses = layer(x).squeeze(-1)
    pcgrad.backward(losses, torch.tensor([0, 1]))
    torch.testing.assert_close(layer.weight.grad, torch.tensor([[0.5, 1.5]]))
    layer.weight.grad = None
    mean = PCGrad([layer], 2, reduction="mean")  # the reduction flag is honoured
    with mean.capture():
        losses = layer(x).squeeze(-1)
    mean.backward(losses, torch.tensor([0, 1]))
    torch.testing.assert_close(layer.weight.grad, torch.tensor([[0.25, 0.75]]))


@pytest.mark.parametrize("num_tasks", [4, 12, 30])
def test_projection_loops_and_vectors_agree(num_tasks: int) -> None:
    """Both routes of project_conflicts (Python loops for few tasks, numpy beyond) give the
    same coefficients, a zero gradient among the tasks included."""
    from gcrl.optim.pcgrad import _project_loops, _project_vectors

    torch.manual_seed(num_tasks)
    grads = torch.randn(num_tasks, 40, dtype=torch.float64)
    grads[1] = 0.0
    gram = grads @ grads.T
    orders = random_orders(num_tasks, torch.Generator().manual_seed(1))
    loops = torch.tensor(_project_loops(gram.tolist(), orders.tolist()), dtype=torch.float64)
    vectors = torch.from_numpy(_project_vectors(gram.numpy(), orders.numpy()))
    torch.testing.assert_close(loops, vectors)
    expected = reference_pcgrad(grads, orders)
    torch.testing.assert_close(loops.sum(0) @ grads, expected)


@pytest.mark.parametrize(
    "task_ids, num_tasks, balanced",
    [([2, 0, 1, 0, 2, 1], 3, True), ([1, 0, 1, 3, 1, 0], 4, False)],
)
def test_task_segments_group_the_samples_in_batch_order(
    task_ids: list[int], num_tasks: int, balanced: bool
) -> None:
    """Each task's row lists its samples in batch order, padded with the batch size (read as
    a zero row) when tasks differ in size; an absent task is all padding."""
    from gcrl.optim.task_gradients import _segments

    index, is_balanced = _segments(torch.tensor(task_ids), num_tasks)
    assert index.shape[0] == num_tasks
    assert is_balanced == balanced
    for task, row in enumerate(index.tolist()):
        members = [i for i, t in enumerate(task_ids) if t == task]
        assert row[: len(members)] == members
        assert all(i == len(task_ids) for i in row[len(members) :])


def test_the_shuffle_is_used_and_seeded() -> None:
    """With three tasks the visiting order changes the result; the seed fixes it."""

    def run(seed: int) -> torch.Tensor:
        model, x, y, task_ids = problem(3, seed=5)
        pcgrad = PCGrad([model], 3, seed=seed)
        results = []
        for _ in range(4):  # several steps: the orders differ from step to step too
            model.zero_grad()
            with pcgrad.capture():
                losses = per_sample_losses(model, x, y)
            pcgrad.backward(losses, task_ids)
            results.append(flat_grad(model).clone())
        return torch.stack(results)

    a, b = run(0), run(0)
    torch.testing.assert_close(a, b)
    assert any(not torch.allclose(run(0), run(s)) for s in range(1, 6))
    orders = [random_orders(3, torch.Generator().manual_seed(s)) for s in range(20)]
    grads = reference_task_grads(*problem(3, seed=5)[:1], *problem(3, seed=5)[1:], 3)
    outcomes = {tuple(reference_pcgrad(grads, o).round(decimals=8).tolist()) for o in orders}
    assert len(outcomes) > 1, "the order must matter on this problem"


def test_task_specific_heads_keep_their_own_gradient() -> None:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(4, 8), nn.GELU()).double()
    heads = nn.Linear(8, 3 * 2).double()  # task t reads outputs [2t, 2t+2)
    x, y = torch.randn(12, 4, dtype=torch.float64), torch.randn(12, 2, dtype=torch.float64)
    task_ids = torch.arange(12) % 3

    def losses() -> torch.Tensor:
        out = heads(trunk(x)).view(12, 3, 2)[torch.arange(12), task_ids]
        return ((out - y) ** 2).sum(-1)

    pcgrad = PCGrad([trunk], 3)  # only the trunk is shared
    with pcgrad.capture():
        values = losses()
    pcgrad.backward(values, task_ids)
    got = heads.weight.grad.clone()
    heads.zero_grad(), trunk.zero_grad()
    sum(losses()[task_ids == t].mean() for t in range(3)).backward()
    torch.testing.assert_close(got, heads.weight.grad)
    assert heads.weight in {p for p in heads.parameters()}
    assert all(
        id(p) not in {id(q) for q in pcgrad.gradients.parameters} for p in heads.parameters()
    )


def test_uncovered_parameters_fall_back_to_one_backward_per_task() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2).double()
            self.scale = nn.Parameter(torch.tensor([1.5, -0.5], dtype=torch.float64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) * self.scale

    torch.manual_seed(1)
    model = Scaled()
    x, y = torch.randn(9, 3, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    task_ids = torch.tensor([0, 1, 2] * 3)
    gradients = TaskGradients([model], list(model.parameters()))
    assert gradients.fallback == [model.scale]
    with gradients.capture():
        values = per_sample_losses(model, x, y)
    per_task = gradients.backward(TaskLosses(values, task_ids, 3))
    got = torch.cat([per_task[p].reshape(3, -1) for p in model.parameters()], 1)
    torch.testing.assert_close(got, reference_task_grads(model, x, y, task_ids, 3))


# --------------------------------------------------------------------- GradNorm
def reference_gradnorm_step(model, last, x, y, task_ids, weights, initial, alpha, lr, opt_state):  # type: ignore[no-untyped-def]
    """GradNorm done the straightforward way: one backward per task for the norms."""
    num_tasks = len(weights)
    norms = []
    losses = []
    for task in range(num_tasks):
        mask = task_ids == task
        loss = per_sample_losses(model, x[mask], y[mask]).mean()
        losses.append(loss.detach())
        (grad,) = torch.autograd.grad(weights[task] * loss, last.weight)
        norms.append(grad.norm())
    norms_t, losses_t = torch.stack(norms), torch.stack(losses)
    if initial is None:
        initial = losses_t.clone()
    ratio = losses_t / initial
    target = norms_t.mean() * (ratio / ratio.mean()) ** alpha
    grad = torch.sign(norms_t - target) * norms_t / weights
    new = opt_state.step(weights, grad, lr)
    new = new.clamp(min=1e-3)
    return new * num_tasks / new.sum(), initial


class AdamRef:
    def __init__(self) -> None:
        self.m = self.v = None
        self.t = 0

    def step(self, w, g, lr, b1=0.9, b2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
        self.t += 1
        self.m = g * (1 - b1) if self.m is None else b1 * self.m + (1 - b1) * g
        self.v = g * g * (1 - b2) if self.v is None else b2 * self.v + (1 - b2) * g * g
        m_hat, v_hat = self.m / (1 - b1**self.t), self.v / (1 - b2**self.t)
        return w - lr * m_hat / (v_hat.sqrt() + eps)


@pytest.mark.parametrize("num_tasks", [2, 5, 20])
def test_one_pass_gradnorm_equals_the_reference(num_tasks: int) -> None:
    model, x, y, task_ids = problem(num_tasks, seed=200 + num_tasks)
    task_ids = torch.arange(len(task_ids)) % num_tasks  # every task present at every step
    last = model[3]
    gradnorm = GradNorm(last, num_tasks, alpha=1.5, learning_rate=0.05)
    weights = torch.ones(num_tasks, dtype=torch.float64)
    initial = None
    adam = AdamRef()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(4):
        model.zero_grad()
        expected_grad = reference_task_grads(model, x, y, task_ids, num_tasks, weights).sum(0)
        weights, initial = reference_gradnorm_step(
            model, last, x, y, task_ids, weights, initial, 1.5, 0.05, adam
        )
        model.zero_grad()
        with gradnorm.capture():
            losses = per_sample_losses(model, x, y)
        gradnorm.backward(losses, task_ids)
        got = flat_grad(model)  # weights are float32 in GradNorm: agree to 1e-5, not 1e-12
        assert (got - expected_grad).norm() <= 1e-5 * expected_grad.norm()
        torch.testing.assert_close(
            gradnorm.weights.detach().double(), weights, rtol=1e-5, atol=1e-6
        )
        optimizer.step()
    assert not torch.allclose(weights, torch.ones(num_tasks, dtype=torch.float64))


def test_gradnorm_weights_stay_positive_normalised_and_keep_initial_losses() -> None:
    model, x, y, task_ids = problem(4, seed=3)
    gradnorm = GradNorm(model[3], 4, learning_rate=5.0)  # a huge step to push weights down
    initial = None
    for step in range(10):
        model.zero_grad()
        with gradnorm.capture():
            losses = per_sample_losses(model, x, y) * (1 + step)  # losses grow every step
        gradnorm.backward(losses, task_ids)
        if initial is None:
            initial = gradnorm.initial_losses.clone()
        assert (gradnorm.weights > 0).all()
        torch.testing.assert_close(gradnorm.weights.sum(), torch.tensor(4.0))
        torch.testing.assert_close(gradnorm.initial_losses, initial)  # never overwritten


def test_bf16_autocast_on_cpu() -> None:
    model, x, y, task_ids = problem(5, seed=9, dtype=torch.float32)
    orders = random_orders(5, torch.Generator().manual_seed(0))
    pcgrad = PCGrad([model], 5)
    with pcgrad.capture(), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = per_sample_losses(model, x, y).float()
    pcgrad.backward(losses, task_ids, orders=orders)
    got = flat_grad(model)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    expected = reference_pcgrad(reference_task_grads(model, x, y, task_ids, 5), orders)
    cosine = (got @ expected) / (got.norm() * expected.norm())
    assert cosine > 0.99, cosine


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="reduction"):
        PCGrad([nn.Linear(2, 2)], 2, reduction="max")
    with pytest.raises(ConfigError, match=r"nn\.Linear"):
        GradNorm(nn.GELU(), 2)
    with pytest.raises(ConfigError, match="task_ids"):
        TaskLosses(torch.zeros(3), torch.tensor([0, 1, 5]), 2)


def test_pcgrad_and_gradnorm_state_round_trips() -> None:
    """What a checkpoint keeps: PCGrad's generator continues its visiting orders, GradNorm's
    weights and moments continue their updates."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    pcgrad = PCGrad([net], 5, seed=1)
    random_orders(5, pcgrad.generator)
    saved = pcgrad.state_dict()
    expected = random_orders(5, pcgrad.generator)
    other = PCGrad([net], 5, seed=2)
    other.load_state_dict(saved)
    assert torch.equal(random_orders(5, other.generator), expected)

    x, task_ids = torch.randn(40, 3), torch.arange(40) % 4
    gradnorm = GradNorm(net[0], 4)
    for _ in range(3):
        with gradnorm.capture():
            losses = net(x).squeeze(1) ** 2 * (1 + task_ids)
        gradnorm.backward(losses, task_ids)
    restored = GradNorm(net[0], 4)
    restored.load_state_dict(gradnorm.state_dict())
    for method in (gradnorm, restored):
        with method.capture():
            losses = net(x).squeeze(1) ** 2 * (1 + task_ids)
        method.backward(losses, task_ids)
    assert not torch.equal(restored.weights, torch.ones(4))
    torch.testing.assert_close(restored.weights, gradnorm.weights, rtol=0, atol=0)
