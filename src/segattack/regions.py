"""Regions: where the perturbation may be non-zero (R) and where success is counted (A).

A region type is declared once, here: its class carries its config keys (``Keys``, a pydantic
model whose ``type`` names it; the schema's ``region``/``area`` is the union of them) and builds
itself from them (``from_keys``); ``REGIONS`` maps ``type`` to the class. Every region has one
interface, so the attack code never asks which kind it holds:

- ``place(batch)``: where each image's region lies (a box's top-left corners; None for regions
  that follow the image or its labels); ``place_at(index)``: the same for the images of given
  indices in the evaluated split, fixed per index (evaluation);
- ``mask(labels, placement)``: the (B, H, W) bool mask; ``placed_mask(labels, index)`` both;
- ``patch_size(image_size)``: the (h, w) of a universal perturbation for this region (a box's
  own size: a patch pasted per image; the whole image otherwise);
- ``paste(g, mask, placement)``: the per-image perturbation (B, 3, H, W) from ``g``, either an
  image-sized perturbation (kept inside the mask) or a patch (pasted at the placements).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch.nn import functional as F

from .errors import ConfigError
from .keytypes import KeyLine, NonNegInt, Size, Strict, as_typed, exactly
from .registry import Registry

REGIONS = Registry("region.type")


class Region:
    """Base: the whole interface; subclasses say how the mask is made, which keys they take
    (``Keys``) and how they are built from them (``from_keys``)."""

    name: ClassVar[str] = "region"
    Keys: ClassVar[type[Strict]]
    generator: torch.Generator | None = None  # random placements draw from it (checkpointed)

    @classmethod
    def from_keys(cls, keys, image_size: Sequence[int], num_classes: int, seed: int = 0) -> Region:
        """The region of validated ``keys``; what needs the image size or the number of classes
        is checked here (a ``ConfigError`` naming ``region.<key>``)."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def place(self, batch: int) -> torch.Tensor | None:
        return None

    def place_at(self, index: torch.Tensor) -> torch.Tensor | None:
        """Placements of the images whose indices in the evaluated split are ``index`` (B,):
        each a function of the index alone, so independent of the batch size, of the order and
        of whatever was drawn before (a fit)."""
        return self.place(int(index.numel()))

    def eval_placement(self) -> str | None:
        """How the evaluation places a random region (metrics.json); None when nothing is random."""
        return None

    def reset(self) -> None:
        """Start the sequence of random placements again (nothing to do when there is none)."""

    def mask(self, labels: torch.Tensor, placement: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def placed_mask(self, labels: torch.Tensor, index: torch.Tensor | None = None):
        """``(mask, placement)`` for a batch of labels: placed per image ``index`` (evaluation)
        or drawn from the region's generator (``index=None``: a fit)."""
        placement = self.place(labels.shape[0]) if index is None else self.place_at(index)
        return self.mask(labels, placement), placement

    def patch_size(self, image_size: Sequence[int]) -> tuple[int, int]:
        return tuple(int(v) for v in image_size)

    def paste(self, g: torch.Tensor, mask: torch.Tensor, placement: torch.Tensor | None) -> torch.Tensor:
        return g * mask[:, None].to(g.dtype)


def eval_seed(seed: int, index: int) -> int:
    """Seed of the evaluation placement of image ``index`` for a run seeded with ``seed``; the
    offset keeps it apart from the fit's generator, which is seeded with ``seed`` itself."""
    return (int(seed) * 1_000_003 + int(index) + 0x5EED_E7A1) % (2**63 - 1)


@REGIONS.register("full")
class FullRegion(Region):
    """The whole image."""

    class Keys(Strict):
        type: Literal["full"]

    @classmethod
    def from_keys(cls, keys, image_size, num_classes, seed=0):
        return cls()

    def mask(self, labels, placement=None):
        return torch.ones_like(labels, dtype=torch.bool)


@REGIONS.register("box")
class BoxRegion(Region):
    """An axis-aligned box of ``size`` (h, w) pixels.

    Args:
        size: (h, w) in pixels.
        position: ``"center"``; ``"fixed"`` (top-left corner at ``origin`` (y, x)); or
            ``"random"`` (a new place per image, drawn from a generator seeded with ``seed``).
        image_size: (H, W) the box must fit in.
    """

    class Keys(Strict):
        type: Literal["box"]
        size: Size
        position: Literal["center", "fixed", "random"] = "center"
        origin: exactly(2, NonNegInt, "[0,0] (y, x of the top-left corner)") | None = None

        @model_validator(mode="after")
        def _origin(self):
            if self.position == "fixed" and self.origin is None:
                raise KeyLine("origin=null: position=fixed needs origin=[y,x] (the top-left corner)")
            return self

    @classmethod
    def from_keys(cls, keys, image_size, num_classes, seed=0):
        return cls(keys.size, image_size, keys.position, keys.origin, seed)

    def __init__(self, size: Sequence[int], image_size: Sequence[int], position: str = "center",
                 origin: Sequence[int] | None = None, seed: int = 0):
        self.size = tuple(int(v) for v in size)
        self.image_size = tuple(int(v) for v in image_size)
        self.position = position
        h, w = self.size
        H, W = self.image_size
        if not (0 < h <= H and 0 < w <= W):
            raise ConfigError(f"region.size={list(self.size)}: the box must fit in the "
                              f"{H}x{W} image (0 < h <= {H}, 0 < w <= {W})")
        if position == "center":
            self.origin = ((H - h) // 2, (W - w) // 2)
        elif position == "fixed":
            if origin is None or not (0 <= origin[0] <= H - h and 0 <= origin[1] <= W - w):
                raise ConfigError(f"region.origin={origin}: a {h}x{w} box at (y, x) must satisfy "
                                  f"0 <= y <= {H - h}, 0 <= x <= {W - w}")
            self.origin = (int(origin[0]), int(origin[1]))
        else:  # "random" (the schema allows no other position)
            self.seed = seed
            self.generator = torch.Generator().manual_seed(seed)

    def describe(self) -> str:
        return f"box {self.size[0]}x{self.size[1]} ({self.position})"

    def eval_placement(self) -> str | None:
        return f"per image index, seed {self.seed}" if self.position == "random" else None

    def reset(self) -> None:
        """Random boxes: start the sequence of places again (same seed, same places)."""
        if self.position == "random":
            self.generator.manual_seed(self.seed)

    def place(self, batch: int) -> torch.Tensor:
        """(B, 2) top-left corners (y, x); fixed boxes repeat, random ones draw anew (centred and
        fixed boxes have no generator: they draw nothing)."""
        if self.position != "random":
            return torch.tensor([self.origin] * batch)
        H, W = self.image_size
        ys = torch.randint(0, H - self.size[0] + 1, (batch,), generator=self.generator)
        xs = torch.randint(0, W - self.size[1] + 1, (batch,), generator=self.generator)
        return torch.stack([ys, xs], 1)

    def place_at(self, index: torch.Tensor) -> torch.Tensor:
        """Random boxes: the place of image ``i`` is drawn from its own generator, seeded with
        ``eval_seed(seed, i)``, a stream apart from the fit's; the others as ``place``."""
        if self.position != "random":
            return self.place(int(index.numel()))
        H, W = self.image_size
        out = []
        for i in index.tolist():
            g = torch.Generator().manual_seed(eval_seed(self.seed, int(i)))
            out.append([int(torch.randint(0, H - self.size[0] + 1, (), generator=g)),
                        int(torch.randint(0, W - self.size[1] + 1, (), generator=g))])
        return torch.tensor(out, dtype=torch.long).view(-1, 2)

    def mask(self, labels, placement: torch.Tensor | None = None):
        B, H, W = labels.shape
        origins = self.place(B) if placement is None else placement
        ys = torch.arange(H).view(1, H, 1)
        xs = torch.arange(W).view(1, 1, W)
        y0, x0 = origins[:, 0].view(B, 1, 1), origins[:, 1].view(B, 1, 1)
        inside = (ys >= y0) & (ys < y0 + self.size[0]) & (xs >= x0) & (xs < x0 + self.size[1])
        return inside.to(labels.device)

    def patch_size(self, image_size):
        return self.size

    def paste(self, g, mask, placement):
        if tuple(g.shape[-2:]) == self.image_size:  # an image-sized perturbation: keep the box
            return super().paste(g, mask, placement)
        H, W = self.image_size
        h, w = self.size
        pads = [(int(x), W - int(x) - w, int(y), H - int(y) - h) for y, x in placement.tolist()]
        if len(set(pads)) == 1:
            return F.pad(g, pads[0]).expand(mask.shape[0], -1, -1, -1)
        return torch.cat([F.pad(g, p) for p in pads])


@REGIONS.register("class")
class ClassRegion(Region):
    """The ground-truth pixels of ``classes`` (e.g. pedestrians), optionally dilated.

    Args:
        classes: class ids; each must be < num_classes.
        dilate: grow the mask by this many pixels (square structuring element).
    """

    class Keys(Strict):
        type: Literal["class"]
        classes: Annotated[list[NonNegInt], Field(min_length=1)]
        dilate: NonNegInt = 0

        @model_validator(mode="after")
        def _unique(self):
            if len(set(self.classes)) != len(self.classes):
                raise KeyLine(f"classes={as_typed(self.classes)}: a class is listed twice")
            return self

    @classmethod
    def from_keys(cls, keys, image_size, num_classes, seed=0):
        return cls(keys.classes, num_classes, keys.dilate)

    def __init__(self, classes: Sequence[int], num_classes: int, dilate: int = 0):
        self.classes = [int(c) for c in classes]
        bad = [c for c in self.classes if not 0 <= c < num_classes]
        if not self.classes or bad:
            raise ConfigError(f"region.classes={list(classes)}: expected ids in 0..{num_classes - 1}")
        self.dilate = int(dilate)

    def describe(self) -> str:
        return f"class {self.classes}" + (f" +{self.dilate}px" if self.dilate else "")

    def mask(self, labels, placement=None):
        m = torch.isin(labels, torch.tensor(self.classes, device=labels.device))
        if self.dilate:
            k = 2 * self.dilate + 1
            m = F.max_pool2d(m[:, None].float(), k, stride=1, padding=self.dilate)[:, 0] > 0
        return m
