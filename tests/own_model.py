"""A segmentation model defined outside the package, as a user would bring one: a tiny U-Net.

``make_unet`` is the factory ``own_models.NAME.factory=tests.own_model:make_unet`` names; it
takes [0, 1] images (no normalisation of its own) and returns logits at the input size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class TinyUNet(nn.Module):
    """Two levels down, two up, skip connections; ``size_divisor`` as the shipped nets declare."""

    size_divisor = 4

    def __init__(self, num_classes: int = 11, width: int = 8):
        super().__init__()
        self.enc1, self.enc2 = block(3, width), block(width, 2 * width)
        self.mid = block(2 * width, 2 * width)
        self.dec2, self.dec1 = block(4 * width, width), block(2 * width, width)
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        return self.head(d1)


def make_unet(num_classes: int = 11, width: int = 8, seed: int = 0) -> TinyUNet:
    """The factory: a ``TinyUNet`` with weights drawn from ``seed`` (so a file is not needed)."""
    torch.manual_seed(seed)
    return TinyUNet(num_classes, width)
