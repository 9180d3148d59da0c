"""Evaluate a model on a split: mIoU and per-class IoU, no Lightning needed."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..labels import IGNORE_INDEX
from ..metrics.iou import SegmentationIoU


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, num_classes: int) -> dict:
    """``{"miou": float, "per_class": [float | nan, ...]}`` of ``model`` (eval mode) over ``loader``."""
    was_training = model.training
    model.eval()
    iou = SegmentationIoU(num_classes, IGNORE_INDEX)
    for x, y in loader:
        iou.update(model(x).argmax(1), y)
    model.train(was_training)
    out = iou.compute()
    return {"miou": float(out["miou"]), "per_class": out["per_class"].tolist()}
