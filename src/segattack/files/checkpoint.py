"""A training checkpoint (``last.ckpt``, ``best-epochNNN.ckpt``) as a model, to score any epoch.

``train_models.py`` writes Lightning checkpoints beside its exported ``.safetensors``; with
``ema_decay`` each one holds two networks: ``state_dict``, the moving average (the weights it
validated and exports), and ``current_model_state``, the raw training weights. Either can be
scored without exporting it (``task=evaluate weights.NAME=...ckpt ckpt_weights=raw``). The file is
read with ``weights_only`` (docs/design.md, "Safe loading"); a checkpoint names no architecture,
so the caller gives it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import WeightsError
from ..models.registry import create_model
from ..models.wrapper import NormalizedModel
from .weights import check_tensors

# ckpt_weights= -> the checkpoint entry holding that network (without ema_decay: the same weights)
CHECKPOINT_WEIGHTS = {"validated": "state_dict", "raw": "current_model_state"}
PREFIX = "model."  # SegmentationModule.model, the NormalizedModel


def is_checkpoint(path: str | Path) -> bool:
    return Path(path).suffix == ".ckpt"


def check_state_dict(path, ckpt, entry: str = "state_dict") -> dict:
    """``ckpt[entry]``, checked to be what Lightning writes: a mapping of names to tensors."""
    if not isinstance(ckpt, dict) or entry not in ckpt:
        raise WeightsError(f"{path}: not a Lightning checkpoint (no {entry})")
    state = ckpt[entry]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: {entry} is a {type(state).__name__}, expected a mapping of names to tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: {entry} entry {key!r} is a {type(value).__name__}, "
                               "expected a tensor under a string name")
    return state


def check_fits(path, ckpt, module: torch.nn.Module) -> None:
    """A checkpoint to resume ``module`` from holds its tensors: names, shapes, dtypes, finite."""
    check_tensors(path, check_state_dict(path, ckpt), module, type(module).__name__)


def load_checkpoint_model(path: str | Path, architecture: str, num_classes: int,
                          which: str = "validated") -> tuple[NormalizedModel, dict]:
    """``(model in eval mode, metadata)`` from a checkpoint of ``train_models.py``.

    ``which``: ``validated`` (the checkpoint's ``state_dict``: the average with ``ema_decay``) or
    ``raw`` (the training weights; the same file entry when the run kept no average). Metadata:
    ``epoch`` and ``global_step`` of the checkpoint and ``ckpt_weights``.
    """
    from ..run import (
        load_torch_file,  # run imports Lightning: only when a checkpoint is read
    )

    if which not in CHECKPOINT_WEIGHTS:
        raise WeightsError(f"ckpt_weights={which!r}: expected one of {list(CHECKPOINT_WEIGHTS)}")
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    ckpt = load_torch_file(path)
    check_state_dict(path, ckpt)
    entry = CHECKPOINT_WEIGHTS[which]
    if which == "raw" and entry not in ckpt:  # no moving average: state_dict is the raw weights
        entry = "state_dict"
    state = {k.removeprefix(PREFIX): v for k, v in check_state_dict(path, ckpt, entry).items()
             if k.startswith(PREFIX)}
    if "mean" not in state or "std" not in state:
        raise WeightsError(f"{path}: not a checkpoint of train_models.py (no {PREFIX}mean/{PREFIX}std)")
    model = NormalizedModel(create_model(architecture, num_classes))  # mean/std: loaded below
    check_tensors(path, state, model, f"{architecture} with {num_classes} classes")
    model.load_state_dict(state)
    return model.eval(), {"epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
                          "ckpt_weights": which}
