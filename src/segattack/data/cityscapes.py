"""Cityscapes in its official layout: ``leftImg8bit/<split>/<city>/`` and ``gtFine/<split>/<city>/``."""

from __future__ import annotations

from pathlib import Path

from ..labels import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_ID_TO_TRAINID,
    CITYSCAPES_NUM_LABEL_IDS,
    CITYSCAPES_PALETTE,
    IGNORE_INDEX,
)
from .base import SegmentationDataModule, label_lut, pair_by_name
from .sources import CITYSCAPES_HELP, require_folders

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


class CityscapesDataModule(SegmentationDataModule):
    """Cityscapes fine annotations: labelIds -> 19 trainIds, every other id -> 255.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``.
        image_size: (H, W) the images are resized to, default 512x1024 (half resolution).
        **kwargs: see ``SegmentationDataModule``.
    """

    name = "cityscapes"
    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(self, root: str, image_size=(512, 1024), **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        self.root = Path(root).expanduser()

    def pairs(self, split: str):
        require_folders(f"Cityscapes {split} split", self.root,
                        [self.root / "leftImg8bit" / split, self.root / "gtFine" / split], CITYSCAPES_HELP)
        return pair_by_name(self.root / "leftImg8bit" / split, self.root / "gtFine" / split,
                            label_suffix=lambda name: name.replace(IMAGE_SUFFIX, LABEL_SUFFIX),
                            pattern=f"*/*{IMAGE_SUFFIX}")

    def lut(self):
        # 255 also appears in some converted label sets for "license plate" (id -1): ignore it.
        mapping = {i: IGNORE_INDEX for i in [*range(CITYSCAPES_NUM_LABEL_IDS), 255]}
        mapping.update(CITYSCAPES_ID_TO_TRAINID)
        return label_lut(mapping)
