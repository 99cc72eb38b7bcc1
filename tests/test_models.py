"""gcrl.models: conditioned MLPs, policy heads, target networks."""

from __future__ import annotations

import pytest
import torch

from gcrl.errors import ConfigError
from gcrl.models import ConditionedMLP, Policy, polyak_update, target_copy

# The test networks are tiny: one thread avoids synchronisation costs (and oversubscribing
# the 2 cores when other work runs).
torch.set_num_threads(1)


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
