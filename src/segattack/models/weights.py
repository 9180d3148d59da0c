"""Model weight files: safetensors with the metadata the attack side needs (no pickle, no Lightning)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import WeightsError
from ..io import atomic_write
from .registry import MODELS, create_model
from .wrapper import NormalizedModel

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
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    encoded = {k: json.dumps(v) for k, v in meta.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=encoded))


def read_metadata(path: str | Path) -> dict:
    """The metadata of a weights file, decoded, with errors that name the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        meta = {k: json.loads(v) for k, v in raw.items()}
    except ValueError:  # e.g. {"format": "pt"} from other tools: not JSON-encoded
        meta = {}
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
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{path}: cannot read tensors ({err})") from None
    model = NormalizedModel(create_model(arch, classes), meta["mean"], meta["std"])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0:2]
        raise WeightsError(f"{path}: tensors do not fit a {arch} with {classes} classes ({' '.join(first)})") from None
    return model.eval(), meta


def load_torch_file(path: str | Path):
    """Load a ``.pt``/``.ckpt`` without running code from it (DESIGN invariant 9)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any refusal becomes one user-facing message
        raise WeightsError(f"{path}: refused to load ({type(err).__name__}: "
                           f"{str(err).splitlines()[0]}); only plain tensors are accepted") from None


def resume_checkpoint(folder: str | Path) -> str | None:
    """The checkpoint ``ckpt_path="last"`` would resume from in ``folder``, checked first.

    Lightning unpickles the file itself: it is first read with ``load_torch_file``, so a file that
    would run code, or a truncated one, stops the run with a ``WeightsError`` naming it. Returns
    the newest ``last*.ckpt`` (as Lightning picks it) or None where there is none.
    """
    found = sorted(Path(folder).glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    load_torch_file(found[-1])
    return str(found[-1])


def safe_load_kwargs(trainer) -> dict:
    """``weights_only=True`` for ``trainer.fit(ckpt_path=...)`` where Lightning takes it (>= 2.6).

    Explicit, so that ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off (torch obeys that
    variable only where the caller left ``weights_only`` unset).
    """
    import inspect

    return {"weights_only": True} if "weights_only" in inspect.signature(trainer.fit).parameters else {}
