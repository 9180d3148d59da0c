"""Normalisation inside the model, so every caller passes [0, 1] images (docs/design.md, "Data")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NormalizedModel(nn.Module):
    """``net((x - mean) / std)`` with a check that the input size fits the architecture.

    Args:
        net: an architecture from the registry, or any module mapping images to logits.
        mean, std: per-channel statistics in [0, 1] pixel units; None: the net takes [0, 1]
            images as they are (no arithmetic per call).

    Shape:
        x: (B, 3, H, W) float in [0, 1]; returns logits (B, C, H, W).
    """

    def __init__(self, net: nn.Module, mean: Sequence[float] | None = IMAGENET_MEAN,
                 std: Sequence[float] | None = IMAGENET_STD):
        super().__init__()
        self.net = net
        self.normalizes = mean is not None or std is not None
        self.register_buffer("mean", torch.tensor(mean or (0.0,) * 3, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std or (1.0,) * 3, dtype=torch.float32).view(1, 3, 1, 1))
        self.channels_last = False

    def use_channels_last(self, setting: bool | str = "auto") -> NormalizedModel:
        """Run in NHWC (channels_last) memory layout: ``True``, ``False`` or ``"auto"``.

        ``"auto"`` follows the architecture's ``channels_last_pays`` attribute, set where
        ``benchmarks/speed_options.py`` measured a gain on CPU (ERFNet 1.16x, 1.79x with bf16;
        ENet 0.79-0.93x, so off).
        The numbers do not change beyond float rounding. Returns the model.
        """
        if setting == "auto":
            setting = bool(getattr(self.net, "channels_last_pays", False))
        if not isinstance(setting, bool):
            raise ConfigError(f"channels_last={setting!r}: expected auto, true or false")
        self.channels_last = setting
        return self.to(memory_format=torch.channels_last if setting else torch.contiguous_format)

    def check_input_size(self, height: int, width: int) -> None:
        d = getattr(self.net, "size_divisor", 1)
        if height % d or width % d:
            raise ValueError(
                f"input size {height}x{width} does not fit {type(self.net).__name__}: "
                f"height and width must be multiples of {d} (e.g. 360x480, 512x1024)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(*x.shape[-2:])
        if self.channels_last:  # the first conv would otherwise run NCHW on an NCHW input
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net((x - self.mean) / self.std if self.normalizes else x)
