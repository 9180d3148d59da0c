"""Perturbation files: ``perturbation.safetensors`` of an attack run, and reading one back.

Universal runs hold ``w`` and ``delta`` (patch-sized for a box region); per-image runs hold the
deltas of the figure images. The metadata says how it was made (method, mode, eps, region,
source models, image size, data set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, WeightsError
from .tensorfile import check_metadata, read_metadata, read_tensors, write_tensor_file

Size = Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=2, max_length=2)]


class PerturbationMeta(BaseModel):
    """What every perturbation file says about how it was made (``perturbation_metadata``)."""

    model_config = ConfigDict(strict=True, extra="allow")

    method: Annotated[str, Field(min_length=1)]
    mode: Literal["universal", "per_image"]
    eps: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    region: Annotated[str, Field(min_length=1)]
    source_models: Annotated[list[str], Field(min_length=1)]
    image_size: Size
    dataset: str


def save_perturbation(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict) -> Path:
    return write_tensor_file(path, tensors, metadata)


def rounding_tolerance(eps: float, dtype: torch.dtype) -> float:
    """How far past ``eps`` a stored delta may lie from rounding alone: a step of ``dtype`` at
    eps (twice its rounding error), plus a float32 step at 1 (``x_adv - x`` of [0, 1] images)."""
    return eps * torch.finfo(dtype).eps + torch.finfo(torch.float32).eps


def check_delta(path, name: str, delta: torch.Tensor, eps: float) -> None:
    """A stored delta is finite and within the eps its file states (plus rounding)."""
    if not delta.is_floating_point() or not bool(torch.isfinite(delta).all()):
        raise WeightsError(f"{path}: {name} holds NaN or infinite values (expected finite numbers)")
    peak = float(delta.abs().max()) if delta.numel() else 0.0
    if peak > eps + rounding_tolerance(eps, delta.dtype):
        raise WeightsError(f"{path}: {name} reaches |delta|={peak:.6g} ({peak * 255:.4g}/255), beyond "
                           f"the file's eps={eps:.6g} ({eps * 255:.4g}/255); the file was altered "
                           "or is not what its metadata says")


def read_universal_metadata(path: str | Path) -> dict:
    """The checked metadata of a universal perturbation file (every key of ``PerturbationMeta``)."""
    meta = check_metadata(path, PerturbationMeta, read_metadata(path, "perturbation"), "perturbation file")
    if meta["mode"] != "universal":
        raise WeightsError(f"{path}: metadata mode={meta['mode']!r}: not a universal perturbation "
                           "(a per-image set is the adversarial/ folder of save_adversarial=all)")
    return meta


def load_universal_w(path: str | Path, shape, method: str, describe_fit: str) -> torch.Tensor:
    """The saved universal ``w`` of ``path``, checked against its own metadata and this run's
    shape and method.

    ``describe_fit`` says what the shape follows from (region and image size), for the error.
    """
    try:
        read_metadata(path, "perturbation")
        tensors = read_tensors(path)
        w = tensors["w"]
    except (WeightsError, KeyError) as err:
        reason = "it holds no 'w'" if isinstance(err, KeyError) else str(err).removeprefix(f"{path}: ")
        raise WeightsError(f"{path}: not a universal perturbation file ({reason})") from None
    meta = read_universal_metadata(path)
    if tuple(w.shape) != tuple(shape):
        raise WeightsError(f"{path}: perturbation of shape {list(w.shape)} does not fit this run "
                           f"(expected {list(shape)} for {describe_fit})")
    if not w.is_floating_point() or not torch.isfinite(w).all():
        raise WeightsError(f"{path}: w holds NaN or infinite values (expected finite numbers)")
    if "delta" in tensors:
        check_delta(path, "delta", tensors["delta"], float(meta["eps"]))
    if meta["method"] != method:
        raise ConfigError(f"attack.method={method!r}: {path} was made with "
                          f"{meta['method']!r}; run with attack={meta['method']}")
    return w


def _eps_text(eps: float) -> str:
    return f"{eps:.6g} ({eps * 255:.4g}/255)"


def check_made_for_run(path: str | Path, meta: dict, run: dict, own_eps: bool) -> float:
    """The eps to apply a saved perturbation at, after checking how it was made against the run.

    ``meta``: the file's metadata; ``run``: this run's ``eps``, ``region``, ``image_size`` and
    ``source_models``. A mismatch raises a one-line ConfigError naming the key to change; with
    ``own_eps`` (``perturbation_eps=file``) a different eps is not a mismatch: the file's eps is
    returned and applied.
    """
    checks = (("region", "region", meta.get("region"), run["region"]),
              ("data.image_size", "image size", meta.get("image_size"), list(run["image_size"])),
              ("source_models", "source models", meta.get("source_models"), list(run["source_models"])))
    for key, what, theirs, ours in checks:
        if theirs is not None and theirs != ours:
            hint = " (evaluate other models with eval_models=[...])" if key == "source_models" else ""
            raise ConfigError(f"{key}: {path} was made for {what} {theirs}, this run has {ours}; "
                              f"run with the same {what}{hint}")
    file_eps = meta.get("eps")
    if file_eps is None:
        return float(run["eps"])
    if own_eps:
        return float(file_eps)
    if abs(float(file_eps) - float(run["eps"])) > 1e-9 * max(1.0, abs(float(file_eps))):
        raise ConfigError(f"eps={_eps_text(run['eps'])}: {path} was made at eps={_eps_text(file_eps)}; "
                          f"run with eps={file_eps!r}, or perturbation_eps=file to apply it at its own eps")
    return float(file_eps)
