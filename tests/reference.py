"""What the per-sample loss references of the algorithm tests share, written out plainly."""

from __future__ import annotations

import math

import torch


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> float:
    """``log N(x; mean, diag(std^2))`` of one sample (``[D]`` each), summed over dimensions."""
    z = (x - mean) / std
    normaliser = torch.log(std).sum() + len(z) * math.log(2 * math.pi) / 2
    return float(-0.5 * (z**2).sum() - normaliser)
