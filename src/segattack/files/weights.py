"""Model weight files: safetensors with the metadata the attack side needs (no pickle, no Lightning)."""

from __future__ import annotations

from pathlib import Path

from ..errors import WeightsError
from ..models.registry import MODELS, create_model
from ..models.wrapper import NormalizedModel
from .tensorfile import read_metadata as read_file_metadata
from .tensorfile import read_tensors, write_tensor_file

REQUIRED_KEYS = ("architecture", "num_classes", "class_names", "mean", "std", "input_size")


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


def read_metadata(path: str | Path) -> dict:
    """The metadata of a weights file, decoded, with errors that name the file."""
    meta = read_file_metadata(path, "weights")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise WeightsError(f"{path}: metadata lacks {missing} (was it written by segattack?)")
    return meta


def load_weights(path: str | Path, expect_architecture: str | None = None,
                 expect_num_classes: int | None = None) -> tuple[NormalizedModel, dict]:
    """Build the architecture named in the file's metadata and load its weights.

    Returns ``(model in eval mode, metadata)``. Raises ``WeightsError`` naming the file when it is
    missing, truncated, of another architecture or class count than expected.
    """
    meta = read_metadata(path)
    arch, classes = meta["architecture"], int(meta["num_classes"])
    if arch not in MODELS:
        raise WeightsError(f"{path}: architecture {arch!r} is not registered ({sorted(MODELS)})")
    if expect_architecture is not None and arch != expect_architecture:
        raise WeightsError(f"{path}: holds a {arch} model, expected {expect_architecture}")
    if expect_num_classes is not None and classes != expect_num_classes:
        raise WeightsError(f"{path}: model has {classes} classes, the data has {expect_num_classes}")
    state = read_tensors(path)
    model = NormalizedModel(create_model(arch, classes), meta["mean"], meta["std"])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0:2]
        raise WeightsError(f"{path}: tensors do not fit a {arch} with {classes} classes ({' '.join(first)})") from None
    return model.eval(), meta
