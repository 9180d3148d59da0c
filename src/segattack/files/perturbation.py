"""Perturbation files: ``perturbation.safetensors`` of an attack run, and reading one back.

Universal runs hold ``w`` and ``delta`` (patch-sized for a box region); per-image runs hold the
deltas of the figure images. The metadata says how it was made (method, mode, eps, region,
source models, image size, data set).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError, WeightsError
from .tensorfile import read_metadata, read_tensors, write_tensor_file


def save_perturbation(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict) -> Path:
    return write_tensor_file(path, tensors, metadata)


def load_universal_w(path: str | Path, shape, method: str, describe_fit: str) -> torch.Tensor:
    """The saved universal ``w`` of ``path``, checked against this run's shape and method.

    ``describe_fit`` says what the shape follows from (region and image size), for the error.
    """
    try:
        meta = read_metadata(path, "perturbation")
        w = read_tensors(path)["w"]
    except (WeightsError, KeyError) as err:
        reason = "it holds no 'w'" if isinstance(err, KeyError) else str(err).removeprefix(f"{path}: ")
        raise WeightsError(f"{path}: not a universal perturbation file ({reason})") from None
    if tuple(w.shape) != tuple(shape):
        raise WeightsError(f"{path}: perturbation of shape {list(w.shape)} does not fit this run "
                           f"(expected {list(shape)} for {describe_fit})")
    if not w.is_floating_point() or not torch.isfinite(w).all():
        raise WeightsError(f"{path}: w holds NaN or infinite values (expected finite numbers)")
    if meta.get("method") and meta["method"] != method:
        raise ConfigError(f"attack.method={method!r}: {path} was made with "
                          f"{meta['method']!r}; run with attack={meta['method']}")
    return w
