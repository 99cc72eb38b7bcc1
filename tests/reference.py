"""What the per-sample loss references of the algorithm tests share, written out plainly."""

from __future__ import annotations

import math

import torch


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> float:
    """``log N(x; mean, diag(std^2))`` of one sample (``[D]`` each), summed over dimensions."""
    z = (x - mean) / std
    normaliser = torch.log(std).sum() + len(z) * math.log(2 * math.pi) / 2
    return float(-0.5 * (z**2).sum() - normaliser)


def ivl_value_loss(
    reward: float,
    mask: float,
    next_targets: list[float],
    targets: list[float],
    values: list[float],
    expectile: float,
    discount: float = 0.99,
) -> float:
    """OGBench's IVL value loss of one row (GCIVL, HIQL): the expectile weight from the target
    twins' advantage ``r + discount m min_e V'_e(s') - mean_e V'_e(s)``, applied to each twin's
    squared error against its own target twin ``r + discount m V'_e(s')``, summed over twins."""
    advantage = reward + discount * mask * min(next_targets) - sum(targets) / len(targets)
    weight = expectile if advantage >= 0 else 1 - expectile
    pairs = zip(next_targets, values, strict=True)
    return sum(weight * (reward + discount * mask * t - v) ** 2 for t, v in pairs)
