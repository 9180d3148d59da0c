"""Class IoU from a confusion matrix accumulated over valid (non-ignored) pixels."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from ..labels import IGNORE_INDEX


class SegmentationIoU(Metric):
    """Per-class and mean IoU (``tp / (tp + fp + fn)``) over pixels whose target is a class.

    Classes with an empty union (absent from target and prediction) are NaN in ``per_class`` and
    left out of the mean. Pixels with target ``ignore_index`` count nowhere.

    Args:
        num_classes: C.
        ignore_index: target value to skip (255).

    Shape:
        update(pred (B, H, W) int, target (B, H, W) int); compute() -> {"miou": (), "per_class": (C,),
        "accuracy": () the share of valid pixels predicted right}
    """

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long),
                       dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != self.ignore_index
        idx = target[valid] * self.num_classes + pred[valid]
        self.confmat += torch.bincount(idx, minlength=self.num_classes ** 2).view(
            self.num_classes, self.num_classes)

    def compute(self) -> dict[str, torch.Tensor]:
        cm = self.confmat.double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        per_class = torch.where(union > 0, tp / union.clamp(min=1), torch.nan)
        miou = per_class.nanmean() if (union > 0).any() else torch.tensor(0.0, dtype=torch.float64)
        accuracy = tp.sum() / cm.sum().clamp(min=1)
        return {"miou": miou.float(), "per_class": per_class.float(), "accuracy": accuracy.float()}


def per_image_iou_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                         ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and class: intersection ``tp`` and union ``tp + fp + fn`` over valid pixels.

    Both add up over images to ``SegmentationIoU``'s, so a bootstrap over images can resample
    them (``bootstrap_miou``).

    Shape:
        pred, target (B, H, W) int -> (tp (B, C), union (B, C)) long.
    """
    B, C = target.shape[0], num_classes
    valid = target != ignore_index
    image = torch.arange(B, device=target.device).view(B, 1, 1).expand_as(target)
    idx = (image * C + target.clamp(0, C - 1)) * C + pred
    cm = torch.bincount(idx[valid], minlength=B * C * C).view(B, C, C)
    tp = cm.diagonal(dim1=1, dim2=2)
    return tp, cm.sum(1) + cm.sum(2) - tp
