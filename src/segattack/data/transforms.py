"""Albumentations pipelines: augmentation for training only, a plain resize for evaluation."""

from __future__ import annotations

import albumentations as A
import cv2

from ..labels import IGNORE_INDEX


def train_transform(size: tuple[int, int], crop: tuple[int, int] | None,
                    scale: tuple[float, float] = (0.75, 1.5), jitter: float = 0.2) -> A.Compose:
    """Resize to the model size, random scale, random crop (padded with ignore), flip, colour jitter.

    Args:
        size: (H, W) evaluation size in pixels.
        crop: (H, W) of the training crop; None trains on the whole (scaled, padded) image.
        scale: relative scale range around ``size``.
        jitter: strength of brightness/contrast/saturation jitter (0 disables it).
    """
    ch, cw = crop or size
    steps = [
        A.Resize(*size),
        A.RandomScale(scale_limit=(scale[0] - 1, scale[1] - 1), p=1.0),
        A.PadIfNeeded(ch, cw, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX),
        A.RandomCrop(ch, cw),
        A.HorizontalFlip(p=0.5),
    ]
    if jitter > 0:
        steps.append(A.ColorJitter(jitter, jitter, jitter, hue=0.02, p=0.8))
    return A.Compose(steps)


def eval_transform(size: tuple[int, int]) -> A.Compose:
    """Resize to the model resolution (labels with nearest neighbour)."""
    return A.Compose([A.Resize(*size)])
