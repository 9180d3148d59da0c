"""Procedural street-like scenes: learnable in seconds, deterministic by seed, no files needed."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..labels import IGNORE_INDEX, SYNTHETIC_CLASSES, SYNTHETIC_PALETTE
from .base import SegmentationDataModule

SKY, BUILDING, ROAD, TREE, CAR = range(5)
MIN_SIZE = 16  # smallest height and width make_scene can draw
# Base colour of each class in [0, 1]; texture and noise are added per pixel.
_BASE = np.array([(0.55, 0.70, 0.90), (0.55, 0.30, 0.25), (0.40, 0.40, 0.42),
                  (0.20, 0.50, 0.15), (0.80, 0.10, 0.10)], dtype=np.float32)


def make_scene(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (image float32 (H, W, 3) in [0, 1], label uint8 (H, W) with 255 = void)."""
    rng = np.random.default_rng(seed)
    label = np.full((height, width), SKY, dtype=np.uint8)
    horizon = int(height * rng.uniform(0.35, 0.55))
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(rng.integers(2, 5)):  # buildings standing on the horizon
        x0, w = rng.integers(0, width), rng.integers(width // 8, width // 3)
        top = int(horizon * rng.uniform(0.1, 0.7))
        label[top:horizon, x0:x0 + w] = BUILDING
    label[horizon:] = ROAD
    for _ in range(rng.integers(1, 3)):  # round tree crowns
        cy, cx = rng.integers(horizon // 3, horizon), rng.integers(0, width)
        r = rng.integers(min(6, height // 5 - 1), height // 5)  # 6 <= r < H/5 from H = 35 up
        label[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = TREE
    for _ in range(rng.integers(1, 4)):  # cars on the road
        h, w = rng.integers(height // 10, height // 5), rng.integers(width // 8, width // 4)
        y0, x0 = rng.integers(horizon, max(horizon + 1, height - h)), rng.integers(0, width - w)
        label[y0:y0 + h, x0:x0 + w] = CAR
    image = _BASE[label]
    stripes = 0.06 * np.sin(xx / rng.uniform(2, 6) + yy / rng.uniform(3, 9))[..., None]
    image = image + stripes * (label == BUILDING)[..., None] + rng.normal(0, 0.04, image.shape)
    image = np.clip(image * rng.uniform(0.8, 1.2), 0, 1).astype(np.float32)
    y0, x0 = rng.integers(0, height - 4), rng.integers(0, width - 4)
    label[y0:y0 + 4, x0:x0 + 4] = IGNORE_INDEX  # a small void patch, as real labels have
    return image, label


class SyntheticScenes(Dataset):
    def __init__(self, size: int, seed: int, height: int, width: int):
        self.size, self.seed, self.height, self.width = size, seed, height, width

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        image, label = make_scene(self.seed * 1_000_003 + index, self.height, self.width)
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(label).long()


class SyntheticDataModule(SegmentationDataModule):
    """Synthetic scenes with 5 classes (sky, building, road, tree, car).

    Args:
        num_train, num_val, num_test: samples per split.
        image_size: (H, W), default 96x128.
        seed: base seed; every split draws different scenes.
        **kwargs: see ``SegmentationDataModule`` (augmentation is not applied here).
    """

    name = "synthetic"
    class_names = SYNTHETIC_CLASSES
    palette = SYNTHETIC_PALETTE

    def __init__(self, num_train: int = 64, num_val: int = 16, num_test: int = 16,
                 image_size=(96, 128), seed: int = 0, **kwargs):
        super().__init__(image_size=image_size, **kwargs)
        if min(self.image_size) < MIN_SIZE:
            raise ValueError(f"image_size={list(self.image_size)}: synthetic scenes need at least "
                             f"{MIN_SIZE}x{MIN_SIZE} pixels")
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed

    def dataset(self, split: str, train: bool | None = None, whole: bool = False) -> Dataset:
        if split not in self.sizes:
            raise ValueError(f"unknown split {split!r}: expected one of {sorted(self.sizes)}")
        offset = list(self.sizes).index(split)
        size = min(self.sizes[split], self.limit or self.sizes[split])
        return SyntheticScenes(size, self.seed * 3 + offset, *self.image_size)
