"""Model weight files: safetensors with the metadata the attack side needs (no pickle, no Lightning).

A file is checked as a whole before it is used: its metadata against a schema (architecture
registered, ``num_classes`` an integer, ``mean``/``std`` three numbers ...), its tensors finite
and of the names and shapes the architecture has; every message names the file and stays short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..errors import WeightsError
from ..models.registry import MODELS, create_model
from ..models.wrapper import NormalizedModel
from .tensorfile import read_metadata as read_file_metadata
from .tensorfile import check_metadata, read_tensors, write_tensor_file

REQUIRED_KEYS = ("architecture", "num_classes", "class_names", "mean", "std", "input_size")
SHOWN = 3  # names listed in a message before "and N more"
Finite = Annotated[float, Field(allow_inf_nan=False)]


class WeightsMeta(BaseModel):
    """The metadata every weights file must hold (others, e.g. val mIoU, are kept as they are)."""

    model_config = ConfigDict(strict=True, extra="allow")

    architecture: str
    num_classes: Annotated[int, Field(gt=0)]
    class_names: list[str]
    mean: Annotated[list[Finite], Field(min_length=3, max_length=3)]
    std: Annotated[list[Annotated[Finite, Field(gt=0)]], Field(min_length=3, max_length=3)]
    input_size: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=2, max_length=2)]

    @field_validator("architecture")
    @classmethod
    def _registered(cls, value):
        if value not in MODELS:
            raise ValueError(f"not a registered architecture (expected one of {sorted(MODELS)})")
        return value

    @model_validator(mode="after")
    def _names(self):
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for num_classes={self.num_classes}")
        return self


def save_weights(model: NormalizedModel, path: str | Path, **metadata) -> Path:
    """Write ``model``'s state (normalisation buffers included) and JSON-encoded metadata.

    ``metadata`` must hold at least architecture, num_classes, class_names, input_size; mean/std
    are taken from the model.
    """
    meta = {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(), **metadata}
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ValueError(f"weights metadata lacks {missing}")
    return write_tensor_file(path, model.state_dict(), meta)


def _listed(names) -> str:
    names = sorted(names)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return f"{names[:SHOWN]}{more}"


def read_metadata(path: str | Path) -> dict:
    """The metadata of a weights file, decoded and checked, with errors that name the file."""
    return check_metadata(path, WeightsMeta, read_file_metadata(path, "weights"), "weights file")


def check_tensors(path, state: dict[str, torch.Tensor], model: torch.nn.Module, what: str) -> None:
    """The file's tensors fit ``model`` (names and shapes) and are finite; messages stay short."""
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        parts = ([f"{len(missing)} missing ({_listed(missing)})"] if missing else []) + \
                ([f"{len(unexpected)} unexpected ({_listed(unexpected)})"] if unexpected else [])
        raise WeightsError(f"{path}: tensors do not fit a {what}: {', '.join(parts)}")
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise WeightsError(f"{path}: tensors do not fit a {what}: {len(wrong)} of other shape, e.g. "
                           f"{k} {list(state[k].shape)} (expected {list(expected[k].shape)})")
    kind = [k for k in expected if state[k].is_floating_point() != expected[k].is_floating_point()]
    if kind:
        k = kind[0]
        raise WeightsError(f"{path}: tensor {k} is {str(state[k].dtype).removeprefix('torch.')}, expected "
                           f"{'a floating' if expected[k].is_floating_point() else 'an integer'} type")
    bad = [k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise WeightsError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values ({_listed(bad)})")
    if "std" in state and not bool((state["std"] > 0).all()):
        raise WeightsError(f"{path}: tensor std={state['std'].flatten().tolist()}: expected values > 0")


def check_normalisation(path, state: dict[str, torch.Tensor], meta: dict) -> None:
    """The metadata's mean/std are those of the tensors the model normalises with."""
    for key in ("mean", "std"):
        stored = state[key].flatten().double()
        if stored.shape != (len(meta[key]),) or not torch.allclose(
                stored, torch.tensor(meta[key], dtype=torch.float64), rtol=1e-6, atol=1e-7):
            raise WeightsError(f"{path}: metadata {key}={meta[key]} differs from the file's {key} "
                               f"tensor {[round(v, 6) for v in stored.tolist()]}")


def load_weights(path: str | Path, expect_architecture: str | None = None,
                 expect_num_classes: int | None = None) -> tuple[NormalizedModel, dict]:
    """Build the architecture named in the file's metadata and load its weights.

    Returns ``(model in eval mode, metadata)``. Raises ``WeightsError`` naming the file when it is
    missing, truncated, malformed, of another architecture or class count than expected, or
    holds non-finite tensors.
    """
    meta = read_metadata(path)
    arch, classes = meta["architecture"], int(meta["num_classes"])
    if expect_architecture is not None and arch != expect_architecture:
        raise WeightsError(f"{path}: holds a {arch} model, expected {expect_architecture}")
    if expect_num_classes is not None and classes != expect_num_classes:
        raise WeightsError(f"{path}: model has {classes} classes, the data has {expect_num_classes}")
    state = read_tensors(path)
    model = NormalizedModel(create_model(arch, classes), meta["mean"], meta["std"])
    check_tensors(path, state, model, f"{arch} with {classes} classes")
    check_normalisation(path, state, meta)
    model.load_state_dict(state)
    return model.eval(), meta
