"""torchmetrics ``Metric``s for segmentation quality and attack effect (docs/design.md, "Metrics")."""

from .attack import AttackRates, JointRates, PerturbationSize
from .iou import SegmentationIoU

__all__ = ["AttackRates", "JointRates", "PerturbationSize", "SegmentationIoU"]
