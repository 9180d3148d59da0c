"""``train(cfg)``: train each model named in ``cfg.models`` one after the other."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..class_weights import class_weights
from ..config import load_group_option
from ..files.weights import load_weights, read_metadata
from ..models import NormalizedModel, create_model
from ..run import build_logger, prepare_run, resume_checkpoint, safe_load_kwargs
from ..schema import check_train_config
from .adversarial import AdversarialTraining, check_attacks
from .ema import EMAWeights
from .export import ExportBestWeights
from .module import SegmentationModule

log = logging.getLogger(__name__)


def build_trainer(cfg: DictConfig, name: str, ckpt_dir: Path, export: ExportBestWeights,
                  adversarial: bool = False) -> L.Trainer:
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=ckpt_dir, filename="best-epoch{epoch:03d}", monitor="val/miou", mode="max",
        save_top_k=1, auto_insert_metric_name=False)
    # last.ckpt of every epoch, for resuming. Not save_last=True above: Lightning writes that one
    # only when a best checkpoint is written in the same step, so on a flat val curve it stays
    # at the best epoch and a resume would redo every epoch since.
    last = L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None,
                                               save_top_k=1, enable_version_counter=False)
    kept = []
    if cfg.get("keep_every"):  # one checkpoint per N epochs, none replaced: to score any of them later
        # monitor="epoch" (always logged) with mode="max" keeps its state apart from last's on resume
        kept.append(L.pytorch.callbacks.ModelCheckpoint(
            dirpath=ckpt_dir, filename="epoch{epoch:03d}", auto_insert_metric_name=False,
            monitor="epoch", mode="max", save_top_k=-1, every_n_epochs=cfg.keep_every))
    logger = build_logger(cfg, name)
    extra = {}
    if cfg.trainer.get("sync_batchnorm") and not _uses_cuda(cfg.trainer.get("accelerator", "auto")):
        log.warning("sync_batchnorm needs CUDA: off for accelerator=%s", cfg.trainer.get("accelerator"))
        extra["sync_batchnorm"] = False  # torch's SyncBatchNorm raises on CPU modules (DDP with gloo)
    if adversarial:  # validation crafts attacks: it needs gradients, which inference mode forbids
        extra["inference_mode"] = False
    callbacks = [checkpoint, last, *kept, export] + ([export.ema] if export.ema is not None else [])
    return instantiate(cfg.trainer, callbacks=callbacks, logger=logger, **extra)


def _uses_cuda(accelerator) -> bool:
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def train_one(cfg: DictConfig, name: str) -> dict:
    """Train one architecture; return its best val mIoU and the paths of its outputs."""
    model_cfg = load_group_option(cfg, "model", name)
    prepare_run(cfg)
    dm = instantiate(cfg.data)
    init = (cfg.get("init_weights") or {}).get(name)
    if init:  # fine-tune from a weights file (e.g. continue training the shipped model)
        net, _ = load_weights(init, expect_architecture=model_cfg.name, expect_num_classes=dm.num_classes)
    else:
        net = NormalizedModel(create_model(model_cfg.name, dm.num_classes), cfg.mean, cfg.std)
    net.use_channels_last(cfg.get("channels_last", "auto"))
    weights = class_weights(dm.class_frequencies("train"), cfg.class_weighting)
    optimizer = instantiate(OmegaConf.merge(cfg.optimizer, model_cfg.get("optimizer", {})))
    adversarial = (AdversarialTraining(cfg, name, dm.crop_size or dm.image_size, dm.num_classes)
                   if cfg.get("adversarial") else None)
    module = SegmentationModule(net, dm.class_names, optimizer, cfg.schedule, weights, dm.palette,
                                adversarial=adversarial)
    out_dir = Path(cfg.paths.output_dir)
    ema = EMAWeights(decay=cfg.ema_decay) if cfg.get("ema_decay") else None
    export = ExportBestWeights(
        Path(cfg.paths.weights_dir) / f"{name}.safetensors",
        {"architecture": model_cfg.name, "num_classes": dm.num_classes,
         "class_names": list(dm.class_names), "input_size": list(dm.image_size),
         "dataset": dm.name, "seed": cfg.seed, "weight_decay": optimizer.keywords.get("weight_decay", 0.0),
         # val_miou is then on these training sequences, not on the val split
         **({"holdout": sorted(dm.holdout)} if dm.holdout else {}),
         **({"ema_decay": cfg.ema_decay} if ema else {}),  # the file is then the moving average
         **(adversarial.metadata() if adversarial else {})},  # the threat model it was trained against
        mode=cfg.get("export", "best"), ema=ema)
    trainer = build_trainer(cfg, name, out_dir / "checkpoints" / name, export, adversarial is not None)
    ckpt = resume_checkpoint(out_dir / "checkpoints" / name, module) if cfg.resume else None
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt, **safe_load_kwargs(trainer))
    result = {"model": name, "best_val_miou": export.best if export.best > -1 else None,
              "weights": str(export.path) if export.path.exists() else None,
              "epochs": trainer.current_epoch, "export": export.mode}
    if result["weights"]:  # what the file holds (after a resume the callback may not have written it)
        meta = read_metadata(export.path)
        result.update(exported_epoch=meta.get("epoch"), exported_val_miou=meta.get("val_miou"))
    log.info("%s: best val mIoU %s, weights in %s", name, result["best_val_miou"], result["weights"])
    return result


def train(cfg: DictConfig) -> list[dict]:
    """Train ``cfg.models`` in order (e.g. ``[enet, erfnet]``), the config checked first."""
    check_train_config(cfg)  # the schema: before any data or weights load
    if cfg.get("adversarial"):
        check_attacks(cfg)  # the inner attacks' keys, by the attack schema
    models = list(cfg.models)
    return [train_one(cfg, name) for name in models]
