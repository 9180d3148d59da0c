"""Normalisation inside the model, so every caller passes [0, 1] images (DESIGN invariant 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NormalizedModel(nn.Module):
    """``net((x - mean) / std)`` with a check that the input size fits the architecture.

    Args:
        net: an architecture from the registry (logits out).
        mean, std: per-channel statistics in [0, 1] pixel units.

    Shape:
        x: (B, 3, H, W) float in [0, 1]; returns logits (B, C, H, W).
    """

    def __init__(self, net: nn.Module, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def check_input_size(self, height: int, width: int) -> None:
        d = getattr(self.net, "size_divisor", 1)
        if height % d or width % d:
            raise ValueError(
                f"input size {height}x{width} does not fit {type(self.net).__name__}: "
                f"height and width must be multiples of {d} (e.g. 360x480, 512x1024)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(*x.shape[-2:])
        return self.net((x - self.mean) / self.std)
