"""Per-image adversarial sets: ``save_adversarial=all`` writes, ``perturbation=FOLDER`` reads.

A set is a folder of safetensors shards ``shard_NNNNN.safetensors`` (NNNNN: the first image
index it holds). For every evaluated image ``i`` a shard holds ``delta.i``, the applied
perturbation ``x_adv - x`` cropped to the bounding box of its non-zero pixels (fp16, or fp32
with ``adversarial_dtype=fp32``), and ``origin.i``, the crop's top-left corner (y, x). So a
120x160 box costs its box, not the frame. The metadata of every shard says how the set was made
(method, eps, region, models, image size, data set, split, dtype) and which indices it holds.
Safetensors holds no code (docs/design.md, "Safe loading").

Each process of a distributed run writes the shards of its own images; their names never clash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from ..errors import WeightsError
from ..io import atomic_write
from .perturbation import PerturbationMeta, check_delta
from .tensorfile import check_metadata, read_metadata, read_tensors, write_tensor_file

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
SET_KIND = "per_image_set"


class SetMeta(PerturbationMeta):
    """The metadata of every shard of a per-image set (``AdversarialWriter``)."""

    kind: Literal["per_image_set"]
    mode: Literal["per_image"]
    dtype: Literal[tuple(DTYPES)]
    split: str
    num_images: Annotated[int, Field(gt=0)]
    indices: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


def crop_nonzero(delta: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(crop, (y0, x0))``: ``delta`` (3, H, W) cut to the box of its non-zero pixels
    (an all-zero delta gives a (3, 0, 0) crop at (0, 0))."""
    nz = delta.abs().amax(0) > 0
    if not bool(nz.any()):
        return delta[:, :0, :0], (0, 0)
    rows, cols = nz.any(1).nonzero()[:, 0], nz.any(0).nonzero()[:, 0]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return delta[:, y0:y1, x0:x1], (y0, x0)


def write_png_image(path: Path, image: torch.Tensor) -> Path:
    """A (3, H, W) image in [0, 1] as an 8-bit PNG (rounded to the nearest level), atomically."""
    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return atomic_write(path, lambda tmp: Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG"))


class AdversarialWriter:
    """Called per evaluated batch with ``(index, x, x_adv)``; writes a shard every
    ``shard_size`` images and, with ``png_dir``, each ``x_adv`` as ``<name>.png``.

    Args:
        folder: the set's folder (created). metadata: how the set was made (JSON values).
        dtype: ``fp16`` or ``fp32``. names: image index -> file stem for the PNGs.
    """

    def __init__(self, folder: str | Path | None, metadata: dict, dtype: str = "fp16",
                 shard_size: int = 64, png_dir: str | Path | None = None, names=None):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}: expected one of {list(DTYPES)}")
        self.folder = Path(folder) if folder is not None else None
        self.png_dir = Path(png_dir) if png_dir is not None else None
        for d in (self.folder, self.png_dir):
            if d is not None:
                d.mkdir(parents=True, exist_ok=True)
        self.metadata = {**metadata, "kind": SET_KIND, "dtype": dtype}
        self.dtype, self.shard_size = dtype, int(shard_size)
        self.names = names
        self.buffer: dict[int, tuple[torch.Tensor, tuple[int, int]]] = {}

    def __call__(self, index: torch.Tensor, x: torch.Tensor, x_adv: torch.Tensor) -> None:
        for b, i in enumerate(index.tolist()):
            if self.folder is not None:
                crop, origin = crop_nonzero((x_adv[b] - x[b]).detach().float().cpu())
                self.buffer[int(i)] = (crop.to(DTYPES[self.dtype]).clone(), origin)
            if self.png_dir is not None:
                name = self.names(int(i)) if self.names else f"{int(i):05d}"
                write_png_image(self.png_dir / f"{name}.png", x_adv[b])
        if len(self.buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffer or self.folder is None:
            return
        indices = sorted(self.buffer)
        tensors = {}
        for i in indices:
            crop, origin = self.buffer[i]
            tensors[f"delta.{i}"] = crop
            tensors[f"origin.{i}"] = torch.tensor(origin, dtype=torch.long)
        write_tensor_file(self.folder / f"shard_{indices[0]:05d}.safetensors", tensors,
                          {**self.metadata, "indices": indices})
        self.buffer = {}

    close = flush


def set_folder(path: str | Path) -> Path | None:
    """The folder of a per-image set at ``path`` (the folder or one of its shards), else None."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_dir() or path.name.startswith("shard_"):
        if any(folder.glob("shard_*.safetensors")):
            return folder
    return None


def shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("shard_*.safetensors"))


def read_shard_metadata(shard: Path) -> dict:
    """A shard's metadata, checked (every key of ``SetMeta`` present and of its type)."""
    meta = read_metadata(shard, "perturbation")
    if meta.get("kind") != SET_KIND:
        raise WeightsError(f"{shard}: not a shard of a per-image set (metadata kind="
                           f"{meta.get('kind')!r}, expected {SET_KIND!r})")
    check_metadata(shard, SetMeta, meta, "shard of a per-image set")
    if max(meta["indices"]) >= meta["num_images"]:
        raise WeightsError(f"{shard}: metadata indices reach {max(meta['indices'])}, beyond its "
                           f"num_images={meta['num_images']}")
    return meta


def read_set_metadata(path: str | Path) -> dict:
    """The checked metadata of the set at ``path`` (its first shard's, without ``indices``)."""
    folder = set_folder(path)
    if folder is None:
        raise WeightsError(f"{path}: no per-image set here (expected shard_*.safetensors)")
    meta = read_shard_metadata(shards(folder)[0])
    meta.pop("indices")
    return meta


def check_image(shard: Path, i: int, delta: torch.Tensor, origin: torch.Tensor, meta: dict) -> tuple[int, int]:
    """One image's delta crop and origin against the shard's claims; returns the origin (y0, x0)."""
    dtype, (height, width) = DTYPES[meta["dtype"]], meta["image_size"]
    if delta.dtype != dtype:
        raise WeightsError(f"{shard}: delta.{i} is {str(delta.dtype).removeprefix('torch.')}, the "
                           f"metadata says dtype={meta['dtype']!r}")
    if delta.dim() != 3 or delta.shape[0] != 3:
        raise WeightsError(f"{shard}: delta.{i} has shape {list(delta.shape)}, expected [3, h, w] "
                           "(3 colour channels)")
    if origin.dtype != torch.long or tuple(origin.shape) != (2,):
        raise WeightsError(f"{shard}: origin.{i} is a {str(origin.dtype).removeprefix('torch.')} of "
                           f"shape {list(origin.shape)}, expected two int64 (y, x)")
    y0, x0 = (int(v) for v in origin.tolist())
    h, w = delta.shape[1:]
    if y0 < 0 or x0 < 0 or y0 + h > height or x0 + w > width:
        raise WeightsError(f"{shard}: delta.{i} ({h}x{w} at y={y0}, x={x0}) does not lie inside the "
                           f"stated image size {height}x{width}")
    check_delta(shard, f"delta.{i}", delta, float(meta["eps"]))
    return y0, x0


def load_adversarial_set(path: str | Path) -> tuple[dict, dict[int, tuple[torch.Tensor, tuple[int, int]]]]:
    """``(metadata, {index: (delta crop float32, (y0, x0))})`` of the set at ``path``, every shard
    checked against its own claims (metadata complete, each delta finite, of the stated dtype,
    3 channels, inside the image, within eps) before any of it is used.

    Raises WeightsError naming the file for an unreadable shard, a claim it breaks, or shards
    that disagree.
    """
    folder = set_folder(path)
    if folder is None:
        raise WeightsError(f"{path}: no per-image set here (expected shard_*.safetensors)")
    meta, deltas = None, {}
    for shard in shards(folder):
        m = read_shard_metadata(shard)
        indices = m.pop("indices")
        if meta is None:
            meta = m
        elif m != meta:
            diff = sorted(k for k in set(m) | set(meta) if m.get(k) != meta.get(k))
            raise WeightsError(f"{shard}: its {', '.join(diff)} differ from the other shards'")
        tensors = read_tensors(shard)
        listed = {f"{kind}.{i}" for i in indices for kind in ("delta", "origin")}
        extra = sorted(set(tensors) - listed)
        if extra:
            raise WeightsError(f"{shard}: holds {extra[0]!r}, which its metadata indices do not list")
        for i in indices:
            if f"delta.{i}" not in tensors or f"origin.{i}" not in tensors:
                raise WeightsError(f"{shard}: image {i} is listed but has no delta/origin")
            if i in deltas:
                raise WeightsError(f"{shard}: image {i} is also in another shard")
            origin = check_image(shard, i, tensors[f"delta.{i}"], tensors[f"origin.{i}"], m)
            deltas[i] = (tensors[f"delta.{i}"].float(), origin)
    return meta, deltas
