"""``run_attack(cfg)`` and ``run_transfer(cfg)``: what ``attack.py`` runs."""

from __future__ import annotations

import copy
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..files.adversarial import AdversarialWriter
from ..models.loading import load_model
from ..run import build_logger, prepare_run, resume_checkpoint, safe_load_kwargs
from ..schema import check_attack_config
from .loaded import load_perturbation, perturbation_eps
from .module import PerturbationModule
from .outputs import (
    assemble_metrics,
    image_names,
    perturbation_metadata,
    warn_if_area_empty,
    write_outputs,
    write_per_image,
)
from .progress import AttackProgressBar
from .sampling import Indexed, UnpaddedDistributedSampler
from .shuffle import EpochShuffle, ShuffleState
from .spec import AttackSpec, build_attack_spec

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, spec: AttackSpec) -> PerturbationModule:
    loaded = {name: load_model(cfg, name, spec.num_classes, spec.image_size) for name in spec.eval_models}
    return PerturbationModule({name: model for name, (model, _) in loaded.items()}, spec,
                              {name: meta.get("adversarial") for name, (_, meta) in loaded.items()})


def run_attack(cfg: DictConfig) -> dict:
    """One attack run: fit (universal) or optimise per image, evaluate, write every output."""
    # The frozen models are in eval mode on purpose (docs/design.md, "Attacks"): not worth a warning.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")
    check_attack_config(cfg, models_known=True)  # the schema: before any weights or data load
    prepare_run(cfg, verbose_seed=False)
    dm = instantiate(cfg.data)
    spec = build_attack_spec(cfg, dm.image_size, dm.num_classes)  # every attack key checked here
    spec, loaded = perturbation_eps(cfg, spec)
    for split in {cfg.eval_split, *([cfg.fit_split] if spec.mode == "universal" else [])}:
        if hasattr(dm, "check_labels"):  # files on disk: every label read before any image is attacked
            dm.check_labels(split)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = build_module(cfg, spec)
    logger = build_logger(cfg, cfg.get("name"))
    fit_loader, callbacks = fit_setup(cfg, dm, spec, out)
    # The frozen models run in eval mode and never use batch statistics, so there is nothing to
    # synchronise; SyncBatchNorm would also refuse CPU modules (trainer=ddp on CPU).
    universal = spec.mode == "universal"
    trainer = instantiate(cfg.trainer, inference_mode=False, logger=logger, callbacks=callbacks,
                          max_steps=cfg.attack.steps if universal else -1,
                          enable_checkpointing=universal, sync_batchnorm=False)
    eval_loader = eval_dataloader(dm, cfg.eval_split)
    eval_set = eval_loader.dataset.dataset
    names = image_names(eval_set)
    attach_writers(cfg, module, dm, out, len(eval_set), names)
    start = time.perf_counter()
    if cfg.get("perturbation"):
        load_perturbation(Path(cfg.perturbation), module, len(eval_set))
    elif fit_loader is not None:
        fit_universal(cfg, trainer, module, fit_loader, out)
    trainer.test(module, dataloaders=eval_loader, verbose=False)
    if module.on_adversarial is not None:
        module.on_adversarial.close()
    seconds = time.perf_counter() - start
    warn_if_area_empty(module, len(eval_set))
    metrics = assemble_metrics(cfg, module, dm, seconds, len(eval_set), loaded)
    header, rows = module.evaluation.per_image_table()  # synced: every process takes part
    if trainer.is_global_zero:  # DDP: the metrics are synced; one process writes the outputs
        write_outputs(cfg, out, module, dm, metrics, logger)
        write_per_image(out / "per_image.csv", header, rows, names)
    finish = getattr(getattr(logger, "experiment", None), "finish", None)
    if callable(finish):  # W&B: close the run now, so its messages come before our summary
        finish()
    return metrics


def fit_setup(cfg: DictConfig, dm, spec: AttackSpec, out: Path):
    """``(fit loader or None, Trainer callbacks)``: a universal fit shuffles its split per epoch
    (resumable mid-epoch) and checkpoints ``w``; per-image runs fit nothing."""
    callbacks = [AttackProgressBar()] if cfg.trainer.get("enable_progress_bar", True) else []
    loader = None
    if spec.mode == "universal" and not cfg.get("perturbation"):
        fit_set = dm.dataset(cfg.fit_split, train=cfg.fit_augment, whole=True)
        sampler = EpochShuffle(len(fit_set), cfg.seed)
        loader = torch.utils.data.DataLoader(
            fit_set, batch_size=dm.batch_size, sampler=sampler, num_workers=dm.num_workers,
            persistent_workers=dm.num_workers > 0)
        callbacks.append(ShuffleState(sampler, dm.batch_size))
    if spec.mode == "universal":
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(
            dirpath=out / "checkpoints", save_last=True, save_top_k=0,
            every_n_train_steps=cfg.checkpoint_every))
    return loader, callbacks


def fit_universal(cfg: DictConfig, trainer, module: PerturbationModule, loader, out: Path) -> None:
    """``Trainer.fit`` of the universal ``w``; a killed run resumes from its last.ckpt."""
    ckpt = resume_checkpoint(out / "checkpoints") if cfg.resume else None
    with warnings.catch_warnings():
        if trainer.world_size == 1:  # ShuffleState makes a mid-epoch resume exact
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before")
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt, **safe_load_kwargs(trainer))


def attach_writers(cfg: DictConfig, module: PerturbationModule, dm, out: Path, num_images: int,
                   names: list[str]) -> None:
    """``export_png``: a second evaluation on the 8-bit images; ``save_adversarial=all`` or
    ``export_png``: a writer of every adversarial image as the evaluation makes it."""
    save_all = (cfg.get("save_adversarial", "none") or "none") == "all"
    if cfg.get("export_png"):
        module.evaluation_png = module.new_evaluation(0)
    if save_all or cfg.get("export_png"):
        meta = {**perturbation_metadata(module.spec, dm), "split": cfg.eval_split, "num_images": num_images}
        module.on_adversarial = AdversarialWriter(
            out / "adversarial" if save_all else None, meta, cfg.get("adversarial_dtype", "fp16"),
            png_dir=out / "adversarial_png" if cfg.get("export_png") else None,
            names=lambda i: names[i])


def eval_dataloader(dm, split: str) -> torch.utils.data.DataLoader:
    """The evaluated split as (x, y, index) batches, in order; under DDP every image goes to
    exactly one process (no padding: ``UnpaddedDistributedSampler``)."""
    dataset = Indexed(dm.dataset(split, train=False))
    return torch.utils.data.DataLoader(
        dataset, batch_size=dm.batch_size, sampler=UnpaddedDistributedSampler(dataset),
        num_workers=dm.num_workers, drop_last=False, persistent_workers=dm.num_workers > 0)





def run_transfer(cfg: DictConfig) -> dict:
    """Craft on each single model and on the joint set; evaluate on all: the asr matrix."""
    from ..report import transfer_heatmap, write_transfer

    check_attack_config(cfg, models_known=True)
    dm = instantiate(cfg.data)
    build_attack_spec(cfg, dm.image_size, dm.num_classes)  # every key checked before any run starts
    models = list(cfg.source_models)
    sources = [[m] for m in models] + [models]
    out = Path(cfg.paths.output_dir)
    rows, asr = [], []
    for src in sources:
        sub = copy.deepcopy(cfg)
        name = "+".join(src)
        OmegaConf.update(sub, "task", "attack")
        OmegaConf.update(sub, "source_models", src)
        OmegaConf.update(sub, "eval_models", models)
        OmegaConf.update(sub, "paths.output_dir", str(out / name))
        m = run_attack(sub)
        rows.append(name)
        row = [m["per_model"][t]["asr"] for t in models]
        if None in row:  # an empty area: nothing to put in the matrix (never a 0)
            raise ConfigError(f"task=transfer: the area holds no pixel to score for {name}; "
                              "check area/region")
        asr.append(row)
    write_transfer(out / "transfer.json", rows, models, asr)
    transfer_heatmap(out / "transfer.png", rows, models, asr)
    return {"rows": rows, "cols": models, "asr": asr}
