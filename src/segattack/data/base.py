"""Shared dataset and datamodule for (image, label) PNG pairs.

Every sample is ``(image, label)``: image float32 (3, H, W) in [0, 1]; label int64 (H, W) with
class ids in [0, num_classes) and ``IGNORE_INDEX`` (255) for void (docs/design.md, "Data").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from ..labels import IGNORE_INDEX
from .transforms import eval_transform, train_transform

_INVALID = 254  # marks label values that no class maps to (checked after the look-up table)


def read_png(path: Path, mode: str) -> np.ndarray:
    """Read an image file as a numpy array, with an error that names the file."""
    try:
        with Image.open(path) as im:
            if mode == "RGB":
                return rgb_array(path, im)
            elif im.mode == "F":
                raise DataError(f"{path}: label image holds floating-point values, expected "
                                "integer class ids")
            elif im.mode not in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
                raise DataError(f"{path}: label image has mode {im.mode}, expected one channel")
            return np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from None


def rgb_array(path: Path, im: Image.Image) -> np.ndarray:
    """An image of any PNG/JPEG mode as 8-bit RGB: 16-bit grey scaled (PIL's convert would clip it
    to white), alpha that hides anything refused (flattening it would change the picture)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.array(im).astype(np.float64)
        if grey.min() < 0 or grey.max() > 65535:
            raise DataError(f"{path}: image of mode {im.mode} holds values outside 16 bits, expected an RGB image")
        grey = np.round(grey / 257).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        raise DataError(f"{path}: image holds floating-point values (mode F), expected an 8-bit RGB image")
    if "A" in im.getbands() or "transparency" in im.info:
        alpha = np.array(im.convert("RGBA"))[..., 3]
        if (alpha < 255).any():
            raise DataError(f"{path}: image has transparent pixels (mode {im.mode}), expected an opaque "
                            "RGB image")
    return np.array(im.convert("RGB"))


def label_lut(mapping: dict[int, int], size: int = 65536) -> np.ndarray:
    """Look-up table raw value -> class id; unmapped values become ``_INVALID``."""
    lut = np.full(size, _INVALID, dtype=np.uint8)
    for raw, cls in mapping.items():
        lut[raw] = cls
    return lut


class SegmentationDataset(Dataset):
    """(image, label) pairs read from files, labels mapped through a look-up table.

    Args:
        pairs: (image path, label path) per sample.
        lut: raw label value -> class id or 255 (see ``label_lut``).
        transform: albumentations pipeline applied to image and mask together.
        random: the transform is random (training augmentation): it is reseeded per sample from
            torch's generator, so the run's seed, DataLoader workers and resumed checkpoints
            govern it (albumentations 2 otherwise seeds its own generator from the OS).
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], lut: np.ndarray,
                 transform: Callable | None = None, random: bool = False):
        self.pairs = list(pairs)
        self.lut = lut
        self.transform = transform
        self.random = random

    def __len__(self) -> int:
        return len(self.pairs)

    def read_label(self, index: int) -> np.ndarray:
        """The label map of a sample as class ids (no transform), validated."""
        path = self.pairs[index][1]
        raw = read_png(path, "L")
        if raw.dtype.kind not in "ui":  # e.g. a float array from a custom reader
            raise DataError(f"{path}: label values of type {raw.dtype}, expected integer class ids")
        # any integer type and range: values outside the table (negative, > 65535) map to no class
        inside = (raw >= 0) & (raw < len(self.lut))
        label = np.where(inside, self.lut[np.where(inside, raw, 0)], _INVALID).astype(np.uint8)
        if (label == _INVALID).any():
            bad = np.unique(raw[label == _INVALID])[:5].tolist()
            valid = sorted(int(v) for v in np.flatnonzero(self.lut != _INVALID)[:40])
            raise DataError(f"{path}: label values {bad} are not classes (expected values in {valid})")
        return label

    def __getitem__(self, index: int):
        image_path, label_path = self.pairs[index]
        image = read_png(image_path, "RGB")
        label = self.read_label(index)
        if image.shape[:2] != label.shape:
            raise DataError(f"{label_path}: label size {label.shape[1]}x{label.shape[0]} does not "
                            f"match image {image_path} ({image.shape[1]}x{image.shape[0]})")
        if self.transform is not None:
            if self.random and hasattr(self.transform, "set_random_seed"):
                self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ())))
            out = self.transform(image=image, mask=label)
            image, label = out["image"], out["mask"]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
        return x, torch.from_numpy(np.ascontiguousarray(label)).long()


def pair_by_name(image_dir: Path, label_dir: Path, label_suffix: Callable[[str], str] = lambda s: s,
                 pattern: str = "*.png") -> list[tuple[Path, Path]]:
    """Pair every image in ``image_dir`` with its label in ``label_dir``; errors name what is missing."""
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found")
    images = sorted(image_dir.glob(pattern))
    if not images:
        raise DataError(f"{image_dir}: no images matching {pattern!r} (empty split)")
    pairs = []
    for image in images:
        rel = image.relative_to(image_dir)
        label = label_dir / rel.parent / label_suffix(rel.name)
        if not label.is_file():
            raise DataError(f"{image}: image has no label (expected {label})")
        pairs.append((image, label))
    return pairs


class SegmentationDataModule(L.LightningDataModule):
    """Base datamodule: subclasses say which files form a split (``pairs``) and how labels map.

    Args:
        image_size: (H, W) the model sees at evaluation, in pixels.
        crop_size: (H, W) of training crops; None trains on whole images.
        batch_size, num_workers: DataLoader settings (eval uses the same batch size).
        augment: apply the training augmentation to the train split.
        limit: use only the first ``limit`` samples of every split (quick tries, tests).
    """

    name = "base"
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    ignore_index = IGNORE_INDEX
    holdout: frozenset[str] = frozenset()  # training sequences that serve as val (CamVid's data.holdout)

    def __init__(self, image_size: Sequence[int], crop_size: Sequence[int] | None = None,
                 batch_size: int = 8, num_workers: int = 0, augment: bool = True,
                 scale: Sequence[float] = (0.75, 1.5), jitter: float = 0.2,
                 limit: int | None = None):
        super().__init__()
        self.image_size = tuple(int(v) for v in image_size)
        self.crop_size = tuple(int(v) for v in crop_size) if crop_size else None
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.scale = tuple(scale)
        self.jitter = jitter
        self.limit = limit

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # --- what subclasses provide -------------------------------------------------------------
    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        raise NotImplementedError

    def lut(self) -> np.ndarray:
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------
    def dataset(self, split: str, train: bool | None = None, whole: bool = False) -> Dataset:
        """The samples of ``split``; augmented when ``train`` (default: split == 'train').

        ``whole``: augmented samples keep the model size (no training crop), as a universal
        perturbation of that size needs.
        """
        train = (split == "train") if train is None else train
        augment = train and self.augment
        if augment:
            crop = None if whole else self.crop_size
            tf = train_transform(self.image_size, crop, self.scale, self.jitter)
        else:
            tf = eval_transform(self.image_size)
        pairs = self.pairs(split)[: self.limit]
        return SegmentationDataset(pairs, self.lut(), tf, random=augment)

    def check_labels(self, split: str) -> None:
        """Read every label of ``split`` now (they are small), so a bad one stops a run before any
        image is attacked rather than midway; the error names the file."""
        ds = self.dataset(split, train=False)
        if not isinstance(ds, SegmentationDataset):  # generated data: no files to read
            return
        for i in range(len(ds)):
            ds.read_label(i)

    def dataloader(self, split: str, shuffle: bool = False, train: bool | None = None,
                   batch_size: int | None = None) -> DataLoader:
        return DataLoader(self.dataset(split, train), batch_size=batch_size or self.batch_size,
                          shuffle=shuffle, num_workers=self.num_workers, drop_last=False,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self):
        return self.dataloader("val")

    def test_dataloader(self):
        return self.dataloader("test")

    def class_frequencies(self, split: str = "train") -> torch.Tensor:
        """Pixel share of each class over the labels of ``split`` (void excluded)."""
        ds = self.dataset(split, train=False)
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for i in range(len(ds)):
            label = ds.read_label(i) if isinstance(ds, SegmentationDataset) else ds[i][1].numpy()
            counts += np.bincount(label[label != IGNORE_INDEX].ravel(), minlength=self.num_classes)[: self.num_classes]
        return torch.from_numpy(counts / max(counts.sum(), 1)).float()
