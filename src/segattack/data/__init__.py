"""Datamodules (CamVid, Cityscapes, synthetic) sharing one dataset class and its checks."""

from ..labels import IGNORE_INDEX
from .base import SegmentationDataModule, SegmentationDataset
from .camvid import CamVidDataModule
from .cityscapes import CityscapesDataModule
from .synthetic import SyntheticDataModule

__all__ = ["IGNORE_INDEX", "SegmentationDataModule", "SegmentationDataset", "CamVidDataModule",
           "CityscapesDataModule", "SyntheticDataModule"]
