"""``AttackBatch``: the tensors of one attacked batch, travelling together through the objective
and the loops, and ``prepare_batch``, which makes one from images and labels as a spec says."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .spec import AttackSpec


@dataclass(frozen=True)
class AttackBatch:
    """Args:
        x: (B, 3, H, W) clean images in [0, 1]. y: (B, H, W) labels, 255 = ignore.
        mask, placement: where delta may be non-zero (the region R: its mask and its placement,
            e.g. a box's corners; None for regions that follow the image).
        area: (B, H, W) bool, where success counts (A). goal: targeted goal class per pixel.
        clean: model -> clean prediction (``label_source=clean`` and ``keep_weight`` read it).
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    placement: torch.Tensor | None
    area: torch.Tensor
    goal: torch.Tensor | None = None
    clean: dict[str, torch.Tensor] = field(default_factory=dict)

    def select(self, rows: torch.Tensor) -> AttackBatch:
        """The batch of the images ``rows`` only (an ensemble member skips fooled images)."""
        def pick(t):
            return None if t is None else t[rows]
        return AttackBatch(self.x[rows], self.y[rows], self.mask[rows], pick(self.placement),
                           self.area[rows], pick(self.goal), {k: v[rows] for k, v in self.clean.items()})


def prepare_batch(spec: AttackSpec, objective, x: torch.Tensor, y: torch.Tensor,
                  index: torch.Tensor | None = None, clean: dict | None = None) -> AttackBatch:
    """The ``AttackBatch`` of ``(x, y)``: the region and the area placed per image ``index``
    (evaluation: fixed per image) or drawn from their generators (``index=None``: a fit), the
    targeted goal, and the clean predictions the objective needs unless ``clean`` is given."""
    mask, placement = spec.region.placed_mask(y, index)
    area = mask if spec.area is None else spec.area.placed_mask(y, index)[0]
    if clean is None:
        clean = objective.predict(x, objective.source_models) if objective.needs_clean() else {}
    return AttackBatch(x, y, mask, placement, area, objective.goal(y), clean)
