"""Datamodules (CamVid, Cityscapes, synthetic) sharing one dataset class and its checks."""

from .base import IGNORE_INDEX, SegmentationDataModule, SegmentationDataset
from .camvid import CamVidDataModule
from .cityscapes import CityscapesDataModule
from .synthetic import SyntheticDataModule

__all__ = ["IGNORE_INDEX", "SegmentationDataModule", "SegmentationDataset", "CamVidDataModule",
           "CityscapesDataModule", "SyntheticDataModule"]
