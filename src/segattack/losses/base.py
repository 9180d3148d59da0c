"""What every attack loss shares: the per-batch inputs, the per-image mean, the base class and
the registry (``attack.loss`` names one of ``LOSSES``).

A loss is an object with its own settings (a frozen dataclass, e.g. ``Margin(kappa=1.0)``), built
once from the config, then called per step with the logits and one ``LossInputs``:
``loss(logits, inputs) -> (B,)``, to minimise. It is built from a per-pixel term
``ell(logits, t)`` that grows as the prediction moves away from class ``t``, weighted per pixel:

- untargeted (``t`` = the label): minimise ``-mean(w * ell)``, i.e. push pixels off their label;
- targeted (``t`` = the goal): minimise ``mean(w * ell)``, i.e. pull pixels to their goal.

The mean is per image, over its valid pixels of the area A, so a batch of images is a batch of
independent attacks. A pixel is *done* where the attack already succeeds there (untargeted:
``pred != label``; targeted: ``pred == goal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.nn import functional as F

from ..labels import IGNORE_INDEX
from ..registry import Registry

LOSSES = Registry("attack.loss")


@dataclass(frozen=True)
class LossInputs:
    """The per-batch tensors a loss reads besides the logits.

    Args:
        labels: (B, H, W) int64, 255 = ignore (the ground truth or the clean prediction).
        area: (B, H, W) bool, where the loss counts (A).
        goal: (B, H, W) targeted goal class per pixel; None = untargeted.
        step, steps: where the attack is (SegPGD's lambda_t).
    """

    labels: torch.Tensor
    area: torch.Tensor
    goal: torch.Tensor | None = None
    step: int = 0
    steps: int = 1

    @property
    def targeted(self) -> bool:
        return self.goal is not None

    @property
    def target(self) -> torch.Tensor:
        """``t``: the goal (targeted) or the label (untargeted)."""
        return self.goal if self.goal is not None else self.labels

    @property
    def valid(self) -> torch.Tensor:
        """Pixels of the area with a label: the pixels every mean runs over."""
        return self.area & (self.labels != IGNORE_INDEX)

    def done(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bool: the attack already succeeds at the pixel."""
        pred = logits.argmax(1)
        return pred == self.target if self.targeted else pred != self.target


def per_image_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean of ``values`` over each image's ``mask`` (0 when it is empty, never NaN)."""
    m = mask.to(values.dtype)
    return (values * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)


def safe_target(t: torch.Tensor) -> torch.Tensor:
    """Ignored pixels get class 0 for the arithmetic; they are masked out of every mean."""
    return torch.where(t == IGNORE_INDEX, 0, t)


def cross_entropy(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy (0 at ignored pixels)."""
    return F.cross_entropy(logits, t, ignore_index=IGNORE_INDEX, reduction="none")


@dataclass(frozen=True)
class Loss:
    """Base: subclasses give ``term`` (the weighted per-pixel ``w * ell``) and their settings."""

    name: ClassVar[str] = ""

    def term(self, logits: torch.Tensor, inputs: LossInputs) -> torch.Tensor:
        """(B, H, W) ``w * ell`` towards ``inputs.target``."""
        raise NotImplementedError

    def __call__(self, logits: torch.Tensor, inputs: LossInputs) -> torch.Tensor:
        """(B,) per-image loss to minimise."""
        value = per_image_mean(self.term(logits, inputs), inputs.valid)
        return value if inputs.targeted else -value
