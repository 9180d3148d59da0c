"""Figures: colour-coded label maps and per-image attack panels."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def colorize(label: torch.Tensor, palette: Sequence[Sequence[int]]) -> torch.Tensor:
    """(H, W) class ids -> (H, W, 3) float RGB in [0, 1]; ignored/unknown ids are black."""
    lut = torch.zeros(256, 3)
    lut[: len(palette)] = torch.tensor(palette, dtype=torch.float32) / 255
    return lut[label.long().clamp(0, 255)]
