"""Image augmentation of training batches: random shifts (DrQ's and OGBench's random crop).

Each shifted batch moves every row's images by one offset of its own, the same for the
row's observation, next observation, goals and subgoal states (as OGBench's
``GCDataset.augment``); a batch is shifted with probability ``probability`` (OGBench's
``p_aug``, 0.5 in its visual configurations). The offsets are drawn from the batch stream's
generator, so a resumed run shifts as the uninterrupted one does; the crop runs in torch on
whichever device holds the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gcrl.errors import ConfigError


@dataclass(frozen=True)
class ImageShift:
    """Random shifts of up to ``padding`` pixels, applied to a batch with ``probability``."""

    probability: float
    padding: int = 3

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigError(
                f"image_shift_probability: must lie in [0, 1], got {self.probability}"
            )
        if self.padding < 1:
            raise ConfigError(f"image_shift_padding: must be at least 1, got {self.padding}")

    def draw(self, rows: int, rng: np.random.Generator) -> np.ndarray | None:
        """Offsets ``[rows, 2]`` (row, column; each in ``[0, 2 * padding]``) for one batch, or
        None when this batch is not shifted. Draws one number when it is not, ``1 + 2 *
        rows`` when it is."""
        if rng.random() >= self.probability:
            return None
        return rng.integers(0, 2 * self.padding + 1, size=(rows, 2))


def random_shift(
    images: torch.Tensor, image_shape: Sequence[int], offsets: torch.Tensor, padding: int
) -> torch.Tensor:
    """Flat images ``[B, H * W * C]`` shifted by ``offsets`` ``[B, 2]`` (rows, columns, each
    in ``[0, 2 * padding]``): the crop at that offset of the image padded by ``padding``
    pixels of its edge values (an offset of ``padding`` is no shift). Same dtype and shape;
    the padded image is never built (edge padding is a clamped index)."""
    height, width, channels = (int(d) for d in image_shape)
    grid = images.reshape(-1, height, width, channels)
    shift = offsets.to(images.device, torch.long) - padding
    rows = (shift[:, :1] + torch.arange(height, device=images.device)).clamp_(0, height - 1)
    cols = (shift[:, 1:] + torch.arange(width, device=images.device)).clamp_(0, width - 1)
    batch = torch.arange(len(grid), device=images.device)[:, None, None]
    return grid[batch, rows[:, :, None], cols[:, None, :]].reshape(images.shape)


__all__ = ["ImageShift", "random_shift"]
