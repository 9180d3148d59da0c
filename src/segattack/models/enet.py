"""ENet (Paszke, Chaurasia, Kim, Culurciello, 2016), written from the paper.

Encoder-decoder with bottleneck modules; the decoder reuses the encoder's max-pooling indices.
About 0.36 M parameters at 11 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class InitialBlock(nn.Module):
    """3x3/2 conv (13 maps) concatenated with a 2x2 max-pool of the input (3 maps)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch - in_ch, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.PReLU(out_ch)

    def forward(self, x):
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


def _conv_bn_act(in_ch, out_ch, kernel, stride=1, padding=0, dilation=1):
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.PReLU(out_ch),
    )


class Bottleneck(nn.Module):
    """Regular, dilated or asymmetric bottleneck (1x1 reduce, main conv, 1x1 expand)."""

    def __init__(self, ch: int, dropout: float, dilation: int = 1, asymmetric: int = 0):
        super().__init__()
        mid = ch // 4
        if asymmetric:
            k, p = asymmetric, asymmetric // 2
            main = nn.Sequential(
                nn.Conv2d(mid, mid, (k, 1), padding=(p, 0), bias=False),
                _conv_bn_act(mid, mid, (1, k), padding=(0, p)),
            )
        else:
            main = _conv_bn_act(mid, mid, 3, padding=dilation, dilation=dilation)
        self.branch = nn.Sequential(
            _conv_bn_act(ch, mid, 1),
            main,
            nn.Conv2d(mid, ch, 1, bias=False),
            nn.BatchNorm2d(ch),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(ch)

    def forward(self, x):
        return self.act(x + self.branch(x))


class DownsamplingBottleneck(nn.Module):
    """2x2/2 conv branch; the shortcut is a max-pool (indices kept) padded with zero maps."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float):
        super().__init__()
        mid = in_ch // 4
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.branch = nn.Sequential(
            _conv_bn_act(in_ch, mid, 2, stride=2),
            _conv_bn_act(mid, mid, 3, padding=1),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.Dropout2d(dropout),
        )
        self.extra = out_ch - in_ch
        self.act = nn.PReLU(out_ch)

    def forward(self, x):
        main, indices = self.pool(x)
        b, _, h, w = main.shape
        main = torch.cat([main, main.new_zeros(b, self.extra, h, w)], dim=1)
        return self.act(main + self.branch(x)), indices


class UpsamplingBottleneck(nn.Module):
    """Transposed-conv branch; the shortcut is 1x1 conv + max-unpool with the encoder's indices."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float):
        super().__init__()
        mid = in_ch // 4
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        self.branch = nn.Sequential(
            _conv_bn_act(in_ch, mid, 1),
            nn.ConvTranspose2d(mid, mid, 2, stride=2, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(out_ch)

    def forward(self, x, indices):
        main = self.unpool(self.shortcut(x), indices)
        return self.act(main + self.branch(x))


def _stage(ch: int, dropout: float):
    """ENet stage 2/3 body: regular, dilated 2, asym 5, dilated 4, regular, dilated 8, asym 5, dilated 16."""
    return nn.Sequential(
        Bottleneck(ch, dropout),
        Bottleneck(ch, dropout, dilation=2),
        Bottleneck(ch, dropout, asymmetric=5),
        Bottleneck(ch, dropout, dilation=4),
        Bottleneck(ch, dropout),
        Bottleneck(ch, dropout, dilation=8),
        Bottleneck(ch, dropout, asymmetric=5),
        Bottleneck(ch, dropout, dilation=16),
    )


@register_model("enet")
class ENet(nn.Module):
    """ENet for semantic segmentation.

    Args:
        num_classes: output classes (11 for CamVid, 19 for Cityscapes).

    Shape:
        input (B, 3, H, W) with H and W divisible by 8 (three 2x down-samplings);
        output logits (B, num_classes, H, W).

    Example:
        >>> ENet(11)(torch.zeros(1, 3, 360, 480)).shape
        torch.Size([1, 11, 360, 480])
    """

    size_divisor = 8

    def __init__(self, num_classes: int):
        super().__init__()
        self.initial = InitialBlock(3, 16)
        self.down1 = DownsamplingBottleneck(16, 64, 0.01)
        self.stage1 = nn.Sequential(*[Bottleneck(64, 0.01) for _ in range(4)])
        self.down2 = DownsamplingBottleneck(64, 128, 0.1)
        self.stage2 = _stage(128, 0.1)
        self.stage3 = _stage(128, 0.1)
        self.up4 = UpsamplingBottleneck(128, 64, 0.1)
        self.stage4 = nn.Sequential(Bottleneck(64, 0.1), Bottleneck(64, 0.1))
        self.up5 = UpsamplingBottleneck(64, 16, 0.1)
        self.stage5 = Bottleneck(16, 0.1)
        self.classifier = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    def forward(self, x):
        x = self.initial(x)
        x, idx1 = self.down1(x)
        x = self.stage1(x)
        x, idx2 = self.down2(x)
        x = self.stage3(self.stage2(x))
        x = self.stage4(self.up4(x, idx2))
        x = self.stage5(self.up5(x, idx1))
        return self.classifier(x)
