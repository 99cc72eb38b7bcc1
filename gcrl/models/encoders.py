"""Image encoders: camera images (flat uint8 bytes, HWC order, as :class:`gcrl.spec.InputSpec`
gives them) to feature vectors. (Random-shift augmentation is a batch transform:
:mod:`gcrl.training.augment`.)

* ``impala``: OGBench's IMPALA encoder (``impls/utils/encoders.py``): three stacks of a 3 x 3
  convolution (16, 32, 32 channels), a 3 x 3 max-pool of stride 2 and two residual blocks,
  then ReLU, flatten and one GELU layer of ``features`` (OGBench: 512) units;
* ``impala_small``: the same with one residual block per stack (OGBench's visual default);
* ``conv``: a small convolutional encoder: three 3 x 3 convolutions of stride 2 (32, 64, 64
  channels, ReLU), then one GELU layer of ``features`` units.

Every encoder scales its input by 1/255 itself, so batches and device-held data stay uint8
until the first layer (a quarter of float32's bytes to move).

>>> import torch
>>> encoder = image_encoder("conv", (16, 16, 3), 32)
>>> encoder(torch.zeros(5, 16 * 16 * 3, dtype=torch.uint8)).shape
torch.Size([5, 32])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from gcrl.errors import ConfigError


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
    nn.init.xavier_uniform_(conv.weight)  # OGBench's kernel initialiser
    assert conv.bias is not None
    nn.init.zeros_(conv.bias)
    return conv


class ResidualStack(nn.Module):
    """One IMPALA stack: convolution, 3 x 3 max-pool of stride 2 (halving height and width,
    rounded up), ``blocks`` residual blocks of two ReLU-convolutions each."""

    def __init__(self, in_channels: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.conv = _conv(in_channels, channels)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(), _conv(channels, channels), nn.ReLU(), _conv(channels, channels)
            )
            for _ in range(blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv(x), 3, stride=2, padding=1)
        for block in self.blocks:
            x = x + block(x)
        return x


class ImageEncoder(nn.Module):
    """Flat image bytes ``[..., H * W * C]`` (uint8, or floats in [0, 255]) to features
    ``[..., features]``: the convolutional ``trunk`` on ``[B, C, H, W]`` in [0, 1], flattened,
    then a GELU layer.

    Attributes:
        image_shape: ``(height, width, channels)`` of the images.
        features: the output width.
    """

    def __init__(
        self, image_shape: Sequence[int], trunk: nn.Module, features: int, *, final_relu: bool
    ) -> None:
        super().__init__()
        self.image_shape = tuple(int(d) for d in image_shape)
        self.features = features
        self.trunk = trunk
        self.final_relu = final_relu
        height, width, channels = self.image_shape
        with torch.no_grad():
            flat = trunk(torch.zeros(1, channels, height, width)).numel()
        self.head = nn.Linear(flat, features)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width, channels = self.image_shape
        leading = x.shape[:-1]
        images = x.reshape(-1, height, width, channels).permute(0, 3, 1, 2)
        h = self.trunk(images.float() / 255.0)
        if self.final_relu:
            h = F.relu(h)
        out = F.gelu(self.head(h.flatten(1)))
        return out.reshape(*leading, self.features)


def impala(image_shape: Sequence[int], features: int, blocks: int) -> ImageEncoder:
    """OGBench's IMPALA encoder with ``blocks`` residual blocks per stack."""
    channels = int(image_shape[2])
    stacks, previous = [], channels
    for width in (16, 32, 32):
        stacks.append(ResidualStack(previous, width, blocks))
        previous = width
    return ImageEncoder(image_shape, nn.Sequential(*stacks), features, final_relu=True)


def small_conv(image_shape: Sequence[int], features: int) -> ImageEncoder:
    """Three stride-2 ReLU convolutions (32, 64, 64 channels)."""
    channels = int(image_shape[2])
    trunk = nn.Sequential(
        _conv(channels, 32, 2), nn.ReLU(), _conv(32, 64, 2), nn.ReLU(), _conv(64, 64, 2), nn.ReLU()
    )
    return ImageEncoder(image_shape, trunk, features, final_relu=False)


#: Encoder name -> builder ``(image_shape, features) -> ImageEncoder``.
ENCODERS: dict[str, Callable[[Sequence[int], int], ImageEncoder]] = {
    "impala": lambda shape, features: impala(shape, features, blocks=2),
    "impala_small": lambda shape, features: impala(shape, features, blocks=1),
    "conv": small_conv,
}


def image_encoder(kind: str, image_shape: Sequence[int], features: int) -> ImageEncoder:
    """The encoder ``kind`` of :data:`ENCODERS` for images of ``image_shape`` (height, width,
    channels), with ``features`` outputs."""
    if kind not in ENCODERS:
        raise ConfigError(f"image_encoder: unknown {kind!r}; choose one of {', '.join(ENCODERS)}")
    if features < 1:
        raise ConfigError(f"image_features: must be at least 1, got {features}")
    return ENCODERS[kind](image_shape, features)


__all__ = ["ENCODERS", "ImageEncoder", "image_encoder"]
