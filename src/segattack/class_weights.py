"""Class weights for the training loss, from the pixel share of each class
(``class_weighting`` names one of ``CLASS_WEIGHTINGS``, which the schema reads its choices from)."""

from __future__ import annotations

import torch

from .registry import Registry

CLASS_WEIGHTINGS = Registry("class_weighting")


@CLASS_WEIGHTINGS.register("enet")
def enet(freq: torch.Tensor) -> torch.Tensor:
    """``1 / ln(1.02 + p)`` (Paszke et al. 2016)."""
    return 1.0 / torch.log(1.02 + freq)


@CLASS_WEIGHTINGS.register("median")
def median(freq: torch.Tensor) -> torch.Tensor:
    """Median frequency balancing ``median(p) / p`` (Eigen and Fergus 2015); absent classes 0."""
    w = freq.median() / freq.clamp(min=1e-12)
    w[freq == 0] = 0.0
    return w


@CLASS_WEIGHTINGS.register("none")
def none(freq: torch.Tensor) -> None:
    """No weighting."""
    return None


def class_weights(freq: torch.Tensor, method: str | None) -> torch.Tensor | None:
    """Weights from class frequencies ``freq`` (sums to 1) by ``method`` (None = ``none``)."""
    w = CLASS_WEIGHTINGS.build(method or "none")(freq.double())
    return None if w is None else w.float()
