"""Class weights for the training loss, from the pixel share of each class."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def class_weights(freq: torch.Tensor, method: str | None) -> torch.Tensor | None:
    """Weights from class frequencies ``freq`` (sums to 1).

    Args:
        method: ``"enet"``: ``1 / ln(1.02 + p)`` (Paszke et al. 2016); ``"median"``: median
            frequency balancing ``median(p) / p`` (Eigen and Fergus 2015); ``None``/``"none"``:
            no weighting.
    """
    if method in (None, "none"):
        return None
    freq = freq.double()
    if method == "enet":
        w = 1.0 / torch.log(1.02 + freq)
    elif method == "median":
        w = freq.median() / freq.clamp(min=1e-12)
        w[freq == 0] = 0.0
    else:
        raise ConfigError(f"class_weighting={method!r}: expected one of enet, median, none")
    return w.float()
