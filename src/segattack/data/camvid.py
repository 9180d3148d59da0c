"""CamVid in the SegNet tutorial's 11-class layout: ``split/`` and ``splitannot/`` PNG folders."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..labels import CAMVID_CLASSES, CAMVID_PALETTE, IGNORE_INDEX
from .base import SegmentationDataModule, label_lut, pair_by_name


class CamVidDataModule(SegmentationDataModule):
    """CamVid: classes 0..10, 11 (void) -> 255; splits train, val and (optional) test.

    Args:
        root: folder holding ``train/``, ``trainannot/``, ``val/``, ``valannot/`` (``test/`` optional).
        image_size: (H, W), default 360x480 (the data set's own size).
        **kwargs: see ``SegmentationDataModule``.
    """

    name = "camvid"
    class_names = CAMVID_CLASSES
    palette = CAMVID_PALETTE

    def __init__(self, root: str, image_size=(360, 480), **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        self.root = Path(root).expanduser()

    def pairs(self, split: str):
        images, labels = self.root / split, self.root / f"{split}annot"
        for folder in (images, labels):
            if not folder.is_dir():  # say what the layout wants, e.g. for test/ which is optional
                raise DataError(f"{folder}: folder not found (CamVid split {split!r} expects "
                                f"{images}/ with the images and {labels}/ with same-named label PNGs)")
        return pair_by_name(images, labels)

    def lut(self):
        return label_lut({**{c: c for c in range(11)}, 11: IGNORE_INDEX})
