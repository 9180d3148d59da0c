"""ERFNet (Romera, Alvarez, Bergasa, Arroyo, 2018), written from the paper.

Encoder of factorised (3x1, 1x3) residual blocks with dilations, small deconvolution decoder.
About 2.06 M parameters at 11 classes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .registry import register_model


class Downsampler(nn.Module):
    """3x3/2 conv concatenated with a 2x2 max-pool (ENet's initial block, generalised)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch - in_ch, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class NonBottleneck1D(nn.Module):
    """Residual block of two factorised 3x3 convolutions, the second pair dilated."""

    def __init__(self, ch: int, dropout: float, dilation: int):
        super().__init__()
        d = dilation
        self.conv3x1_1 = nn.Conv2d(ch, ch, (3, 1), padding=(1, 0))
        self.conv1x3_1 = nn.Conv2d(ch, ch, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(ch, eps=1e-3)
        self.conv3x1_2 = nn.Conv2d(ch, ch, (3, 1), padding=(d, 0), dilation=(d, 1))
        self.conv1x3_2 = nn.Conv2d(ch, ch, (1, 3), padding=(0, d), dilation=(1, d))
        self.bn2 = nn.BatchNorm2d(ch, eps=1e-3)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x):
        y = F.relu(self.conv3x1_1(x))
        y = F.relu(self.bn1(self.conv1x3_1(y)))
        y = F.relu(self.conv3x1_2(y))
        y = self.dropout(self.bn2(self.conv1x3_2(y)))
        return F.relu(x + y)


class Upsampler(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


@register_model("erfnet")
class ERFNet(nn.Module):
    """ERFNet for semantic segmentation.

    Args:
        num_classes: output classes (11 for CamVid, 19 for Cityscapes).

    Shape:
        input (B, 3, H, W) with H and W divisible by 8; output logits (B, num_classes, H, W).

    Example:
        >>> ERFNet(11)(torch.zeros(1, 3, 360, 480)).shape
        torch.Size([1, 11, 360, 480])
    """

    size_divisor = 8
    channels_last_pays = True  # NHWC attack steps on CPU: 1.16x fp32, 1.79x with bf16 (docs/performance.md)

    def __init__(self, num_classes: int):
        super().__init__()
        layers = [Downsampler(3, 16), Downsampler(16, 64)]
        layers += [NonBottleneck1D(64, 0.03, 1) for _ in range(5)]
        layers.append(Downsampler(64, 128))
        for _ in range(2):
            layers += [NonBottleneck1D(128, 0.3, d) for d in (2, 4, 8, 16)]
        self.encoder = nn.Sequential(*layers)
        self.decoder = nn.Sequential(
            Upsampler(128, 64),
            NonBottleneck1D(64, 0.0, 1),
            NonBottleneck1D(64, 0.0, 1),
            Upsampler(64, 16),
            NonBottleneck1D(16, 0.0, 1),
            NonBottleneck1D(16, 0.0, 1),
            nn.ConvTranspose2d(16, num_classes, 2, stride=2),
        )

    def forward(self, x):
        return self.decoder(self.encoder(x))
