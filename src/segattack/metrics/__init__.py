"""torchmetrics ``Metric``s for segmentation quality and attack effect (docs/design.md, "Metrics")."""

from .attack import AttackRates, JointRates, PerturbationSize, batch_asr
from .iou import SegmentationIoU

__all__ = ["AttackRates", "JointRates", "PerturbationSize", "SegmentationIoU", "batch_asr"]
