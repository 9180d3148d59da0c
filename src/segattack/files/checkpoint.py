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

from ..errors import WeightsError
from ..models.registry import create_model
from ..models.wrapper import NormalizedModel
from .weights import check_tensors

# ckpt_weights= -> the checkpoint entry holding that network (without ema_decay: the same weights)
CHECKPOINT_WEIGHTS = {"validated": "state_dict", "raw": "current_model_state"}
PREFIX = "model."  # SegmentationModule.model, the NormalizedModel


def is_checkpoint(path: str | Path) -> bool:
    return Path(path).suffix == ".ckpt"


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
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise WeightsError(f"{path}: not a Lightning checkpoint (no state_dict)")
    entry = CHECKPOINT_WEIGHTS[which]
    if which == "raw" and entry not in ckpt:  # no moving average: state_dict is the raw weights
        entry = "state_dict"
    state = {k.removeprefix(PREFIX): v for k, v in ckpt[entry].items() if k.startswith(PREFIX)}
    if "mean" not in state or "std" not in state:
        raise WeightsError(f"{path}: not a checkpoint of train_models.py (no {PREFIX}mean/{PREFIX}std)")
    model = NormalizedModel(create_model(architecture, num_classes), state["mean"].flatten().tolist(),
                            state["std"].flatten().tolist())
    check_tensors(path, state, model, f"{architecture} with {num_classes} classes")
    model.load_state_dict(state)
    return model.eval(), {"epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
                          "ckpt_weights": which}
