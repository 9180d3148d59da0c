"""Per-image counts of an evaluation, for ``per_image.csv`` and bootstrap intervals over images.

Each evaluated image adds one row of integer counts with its index in the evaluated split. The
rows are list states reduced by ``cat``, so under DDP every process's images are gathered
before ``compute()``; the rows come back sorted by image index.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torchmetrics import Metric


class PerImageCounts(Metric):
    """Rows of ``len(fields)`` integer counts, one per image, keyed by the image's index.

    Shape:
        update(index (B,) long, counts: field -> (B,) long); compute() -> (index (N,), rows (N, F))
        sorted by index.
    """

    full_state_update = False

    def __init__(self, fields, **kwargs):
        super().__init__(**kwargs)
        self.fields = tuple(fields)
        self.add_state("index", [], dist_reduce_fx="cat")
        self.add_state("rows", [], dist_reduce_fx="cat")  # flattened (B * F,)

    def update(self, index: torch.Tensor, counts: dict[str, torch.Tensor]) -> None:
        rows = torch.stack([counts[f].long() for f in self.fields], 1)
        if rows.shape[0] != index.numel():
            raise ValueError(f"{index.numel()} image indices for {rows.shape[0]} rows of counts")
        self.index.append(index.long().flatten().cpu())
        self.rows.append(rows.flatten().cpu())

    def _sync_dist(self, *args, **kwargs) -> None:
        # A process that saw no image still takes part in the gather with an empty long tensor
        # (torchmetrics would make it a float one, whose dtype the others do not share).
        for name in ("index", "rows"):
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.zeros(0, dtype=torch.long)])
        super()._sync_dist(*args, **kwargs)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        def cat(state):
            if isinstance(state, list):
                return torch.cat(state) if state else torch.zeros(0, dtype=torch.long)
            return state.flatten()

        index, rows = cat(self.index).long(), cat(self.rows).long().view(-1, len(self.fields))
        order = torch.argsort(index)
        return index[order], rows[order]


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, seed: int = 0, resamples: int = 2000,
                    level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval over images of ``sum(num) / sum(den)``.

    Images are drawn with replacement (``resamples`` times, from a generator seeded with
    ``seed``); resamples whose denominator is 0 are left out. None for no image or a zero total.

    Shape:
        num, den: (N,) per-image counts.
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if num.size == 0 or den.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, num.size, size=(resamples, num.size))
    n, d = num[pick].sum(1), den[pick].sum(1)
    ratios = n[d > 0] / d[d > 0]
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))]


def bootstrap_miou(tp: np.ndarray, union: np.ndarray, seed: int = 0, resamples: int = 2000,
                   level: float = 0.95) -> tuple[list[float] | None, list[list[float] | None]]:
    """Percentile bootstrap intervals over images of the mIoU and of each class's IoU.

    Images are drawn with replacement as in ``bootstrap_ratio``; in each resample a class with an
    empty union is left out of the mean (as ``SegmentationIoU`` does) and of its own interval.

    Shape:
        tp, union: (N, C) per-image intersections and unions (``per_image_iou_counts``).
    Returns:
        (mIoU interval or None, per class: interval or None).
    """
    tp, union = np.asarray(tp, dtype=np.float64), np.asarray(union, dtype=np.float64)
    if tp.size == 0 or union.sum() == 0:
        return None, [None] * (tp.shape[1] if tp.ndim == 2 else 0)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, tp.shape[0], size=(resamples, tp.shape[0]))
    i, u = tp[pick].sum(1), union[pick].sum(1)  # (resamples, C)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(u > 0, i / u, np.nan)
    tail = 100 * (1 - level) / 2

    def interval(values):
        values = values[~np.isnan(values)]
        return None if values.size == 0 else [float(np.percentile(values, tail)),
                                              float(np.percentile(values, 100 - tail))]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where every class is empty
        miou = np.nanmean(iou, axis=1)
    return interval(miou), [interval(iou[:, c]) if union[:, c].sum() > 0 else None
                            for c in range(tp.shape[1])]
