"""CamVid in the SegNet tutorial's 11-class layout: ``split/`` and ``splitannot/`` PNG folders."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from ..labels import CAMVID_CLASSES, CAMVID_PALETTE, IGNORE_INDEX
from .base import SegmentationDataModule, label_lut, pair_by_name
from .sources import CAMVID_HELP, require_folders


def sequence_of(path: Path) -> str:
    """A CamVid frame's video sequence: the file name's part before the first ``_`` (0016E5_07959.png)."""
    return path.stem.split("_", 1)[0]


class CamVidDataModule(SegmentationDataModule):
    """CamVid: classes 0..10, 11 (void) -> 255; splits train, val and (optional) test.

    Args:
        root: folder holding ``train/``, ``trainannot/``, ``val/``, ``valannot/`` (``test/`` optional).
        image_size: (H, W), default 360x480 (the data set's own size).
        holdout: video sequences taken out of train to serve as val (e.g. ``[0006R0]``). The
            SegNet val split shares its sequence (0016E5) with 204 of the 367 training frames,
            while 171 of the 233 test frames are a sequence training never sees (Seq05VD); a
            held-out training sequence measures that kind of generalisation (docs/results.md).
        **kwargs: see ``SegmentationDataModule``.
    """

    name = "camvid"
    class_names = CAMVID_CLASSES
    palette = CAMVID_PALETTE

    def __init__(self, root: str, image_size=(360, 480), holdout: Sequence[str] | None = None, **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        self.root = Path(root).expanduser()
        self.holdout = frozenset(holdout or ())

    def folder_pairs(self, split: str):
        folders = [self.root / split, self.root / f"{split}annot"]
        require_folders(f"CamVid {split} split", self.root, folders, CAMVID_HELP)
        return pair_by_name(*folders)

    def pairs(self, split: str):
        if not self.holdout or split not in ("train", "val"):
            return self.folder_pairs(split)
        train = self.folder_pairs("train")
        found = Counter(sequence_of(image) for image, _ in train)
        missing = sorted(self.holdout - found.keys())
        if missing:
            raise DataError(f"data.holdout={sorted(self.holdout)}: {missing} not among the training "
                            f"sequences of {self.root / 'train'} (found: "
                            f"{', '.join(f'{s} ({n} frames)' for s, n in sorted(found.items()))})")
        if self.holdout == found.keys():
            raise DataError(f"data.holdout={sorted(self.holdout)}: holds out every training sequence, "
                            "leaving nothing to train on")
        return [p for p in train if (sequence_of(p[0]) in self.holdout) == (split == "val")]

    def lut(self):
        return label_lut({**{c: c for c in range(11)}, 11: IGNORE_INDEX})
