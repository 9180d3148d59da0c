"""Evaluate models on a split: mIoU and per-class IoU, no Lightning needed.

``run(cfg)`` is what ``train_models.py`` calls: ``task=train`` trains (and, with ``eval_split``,
then evaluates the exported weights on that split); ``task=evaluate`` only evaluates
``weights.<name>`` (the shipped weights by default) on ``eval_split`` (val by default).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from ..errors import ConfigError
from ..io import atomic_write
from ..labels import IGNORE_INDEX
from ..metrics.iou import SegmentationIoU
from ..models.loading import load_file_model, load_model, weights_path
from ..run import prepare_run
from ..schema import check_train_config


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, num_classes: int) -> dict:
    """``{"miou": float, "per_class": [float | nan, ...]}`` of ``model`` (eval mode) over ``loader``."""
    was_training = model.training
    model.eval()
    iou = SegmentationIoU(num_classes, IGNORE_INDEX)
    for x, y in loader:
        iou.update(model(x).argmax(1), y)
    model.train(was_training)
    out = iou.compute()
    return {"miou": float(out["miou"]), "per_class": out["per_class"].tolist()}


def evaluate_weights(path: str | Path, dm, split: str, channels_last="auto", architecture: str | None = None,
                     ckpt_weights: str = "validated") -> dict:
    """Load a weights file (or a training checkpoint) and evaluate it (fp32, no augmentation) on ``split``.

    Returns ``{"miou", "per_class", "weights", "epoch", "export", "val_miou", "num_images"}``; the
    last few come from the file's metadata (None where it has none, e.g. the original shipped files).
    A ``.ckpt`` needs ``architecture`` (a checkpoint names none); ``ckpt_weights`` picks its network
    (``files/checkpoint.py``) and is added to the result.
    """
    model, meta = load_file_model(path, dm.num_classes, dm.image_size, architecture, ckpt_weights,
                                  channels_last)
    return evaluate_model(model, meta, path, dm, split)


def evaluate_model(model: nn.Module, meta: dict, path, dm, split: str) -> dict:
    """``evaluate_weights``'s result for a loaded model and its metadata."""
    loader = dm.dataloader(split, train=False)
    out = evaluate(model, loader, dm.num_classes)
    return {**out, "weights": None if path is None else str(path), "epoch": meta.get("epoch"),
            "export": meta.get("export"), "val_miou": meta.get("val_miou"), "num_images": len(loader.dataset),
            **({"ckpt_weights": meta["ckpt_weights"]} if "ckpt_weights" in meta else {})}


def check_split(dm, split: str) -> None:
    """Raise the data set's one-line error (naming the folder) where ``split`` is absent."""
    try:
        dm.dataset(split, train=False)
    except ValueError as err:  # e.g. the synthetic set's unknown split name
        raise ConfigError(f"eval_split={split!r}: {err}") from None


def evaluate_models(cfg: DictConfig, names, split: str, paths: dict | None = None) -> dict:
    """Evaluate each model of ``names`` on ``split`` (``paths``: name -> weights file instead of
    the configured ones, e.g. what training exported); also written to ``eval_<split>.json``."""
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    check_split(dm, split)
    models = {}
    for name in names:
        path = (paths or {}).get(name) or weights_path(cfg, name)
        model, meta = load_model(cfg, name, dm.num_classes, dm.image_size, path)
        models[name] = evaluate_model(model, meta, path, dm, split)
    report = {"dataset": dm.name, "split": split, "image_size": list(dm.image_size),
              "precision": "fp32", "class_names": list(dm.class_names), "models": models}
    if split == "val" and dm.holdout:  # val is then those training sequences
        report["holdout"] = sorted(dm.holdout)
    out = Path(cfg.paths.output_dir) / f"eval_{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # NaN (a class absent from the split and never predicted) is written as null: strict JSON.
    clean = json.loads(json.dumps(report), parse_constant=lambda _: None)
    atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(clean, indent=2) + "\n"))
    report["path"] = str(out)
    return report


def format_report(report: dict) -> str:
    """The report as printed: a header, a markdown table (model, mIoU, per-class IoU in %), sources."""
    def pct(v):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    names = report["class_names"]
    first = next(iter(report["models"].values()))
    h, w = report["image_size"]
    held = f" (held-out training sequences {', '.join(report['holdout'])})" if report.get("holdout") else ""
    lines = [f"{report['dataset']} {report['split']} split{held}: {first['num_images']} images at {h}x{w}, "
             f"{report['precision']}; IoU in %",
             "| model | mIoU | " + " | ".join(names) + " |",
             "|---" * (len(names) + 2) + "|"]
    for name, r in report["models"].items():
        lines.append(f"| {name} | {100 * r['miou']:.2f} | " + " | ".join(pct(v) for v in r["per_class"]) + " |")
    for name, r in report["models"].items():
        if "ckpt_weights" in r:
            made = f" (checkpoint of epoch {r['epoch']}, {r['ckpt_weights']} weights)"
        else:
            made = "" if r["epoch"] is None else f" (epoch {r['epoch']}, export {r['export'] or 'best'})"
        lines.append(f"{name}: {r['weights']}{made}")
    lines.append(f"written to {report['path']}")
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict:
    """``task=train`` (then, with ``eval_split``, evaluate what it exported) or ``task=evaluate``.

    Returns ``{"train": [per-model results] or None, "eval": report or None}``.
    """
    from hydra.utils import instantiate

    check_train_config(cfg)  # the schema: before any data is read or any epoch is trained
    prepare_run(cfg, verbose_seed=False)
    split = cfg.get("eval_split")
    if cfg.get("task", "train") == "evaluate":
        return {"train": None, "eval": evaluate_models(cfg, list(cfg.models), split or "val")}

    from lightning.pytorch.utilities import rank_zero_only

    from .task import train

    if split is not None:  # a missing split stops the run now, not after hours of training
        check_split(instantiate(cfg.data), split)
    results = train(cfg)
    report = None
    if split is not None and rank_zero_only.rank == 0:  # DDP: every rank trains, one reports
        paths = {r["model"]: r["weights"] for r in results if r["weights"]}
        report = evaluate_models(cfg, list(paths), split, paths) if paths else None
    return {"train": results, "eval": report}
