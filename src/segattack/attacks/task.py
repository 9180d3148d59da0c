"""``run_attack(cfg)`` and ``run_transfer(cfg)``: what ``attack.py`` runs."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import logging
import math
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..files.adversarial import AdversarialWriter, load_adversarial_set, read_set_metadata, set_folder
from ..files.perturbation import (
    check_made_for_run,
    load_universal_w,
    read_universal_metadata,
    save_perturbation,
)
from ..io import staged, write_text
from ..models.loading import load_models
from ..report.metrics_json import SCHEMA_VERSION
from ..run import build_logger, prepare_run, resume_checkpoint, safe_load_kwargs
from ..schema import check_attack_config
from .module import PerturbationModule
from .progress import AttackProgressBar
from .regions import BoxRegion
from .sampling import Indexed, UnpaddedDistributedSampler
from .shuffle import EpochShuffle, ShuffleState
from .spec import AttackSpec, build_attack_spec

log = logging.getLogger(__name__)


def perturbation_tensors(module: PerturbationModule) -> dict[str, torch.Tensor]:
    """Universal: ``w`` and ``delta``; per image: the deltas of the figure images."""
    if module.universal:
        return {"w": module.w.detach(), "delta": module.universal_delta()}
    deltas = [s["x_adv"] - s["image"] for s in module.evaluation.figure_samples]  # none if num_figures=0
    return {"delta": torch.stack(deltas) if deltas else torch.zeros(0, 3, *module.spec.image_size)}


PERTURBATION_EPS = ("run", "file")
SAVE_ADVERSARIAL = ("none", "all")


def perturbation_eps(cfg: DictConfig, spec: AttackSpec) -> tuple[AttackSpec, dict | None]:
    """``perturbation=PATH``: check how the file was made against the run (eps, region, image
    size, source models; one-line errors) and return the spec at the eps it is applied at, with
    what metrics.json records about it. Without a file: ``(spec, None)``."""
    path = cfg.get("perturbation")
    if not path:
        return spec, None
    mode = cfg.get("perturbation_eps", "run")
    if mode not in PERTURBATION_EPS:
        raise ConfigError(f"perturbation_eps={mode!r}: expected run (refuse a file made at another "
                          "eps) or file (apply it at its own eps)")
    folder = set_folder(path)
    if (folder is not None) != (spec.mode == "per_image"):
        want = "per_image" if folder is not None else "universal"
        raise ConfigError(f"perturbation={path}: a {'per-image set' if folder else 'universal perturbation'} "
                          f"is evaluated with mode={want}")
    meta = read_set_metadata(folder) if folder is not None else read_universal_metadata(path)
    run = {"eps": spec.eps, "region": spec.region.describe(), "image_size": list(spec.image_size),
           "source_models": list(spec.source_models)}
    eps = check_made_for_run(path, meta, run, own_eps=mode == "file")
    return dataclasses.replace(spec, eps=eps), {"perturbation_eps": mode, "file_eps": meta.get("eps"),
                                                "run_eps": run["eps"]}


def load_perturbation(path: Path, module: PerturbationModule, num_images: int | None = None) -> None:
    """Put a saved universal ``w`` into ``module`` (shape and method checked), or a per-image
    set's deltas (every image of the evaluated split must be in it)."""
    spec = module.spec
    if set_folder(path) is not None:
        meta, deltas = load_adversarial_set(path)
        if meta.get("method") and meta["method"] != spec.method:
            raise ConfigError(f"attack.method={spec.method!r}: {path} was made with "
                              f"{meta['method']!r}; run with attack={meta['method']}")
        missing = sorted(set(range(num_images or 0)) - set(deltas))
        if missing:
            raise ConfigError(f"perturbation={path}: holds {len(deltas)} images, the evaluated split "
                              f"has {num_images} (missing indices {missing[:5]}...); "
                              f"evaluate it on the split it was made on ({meta.get('split')!r})")
        module.loaded_deltas = deltas
        return
    w = load_universal_w(path, module.w.shape, spec.method,
                         f"region {spec.region.describe()} and image size {list(spec.image_size)}")
    with torch.no_grad():
        module.w.copy_(w)


def build_module(cfg: DictConfig, spec: AttackSpec) -> PerturbationModule:
    models = load_models(cfg, list(spec.eval_models), spec.num_classes, spec.image_size)
    return PerturbationModule(models, spec)


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
    save_adv = cfg.get("save_adversarial", "none") or "none"
    if save_adv not in SAVE_ADVERSARIAL:
        raise ConfigError(f"save_adversarial={save_adv!r}: expected none or all")
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = build_module(cfg, spec)
    universal = spec.mode == "universal"
    logger = build_logger(cfg, cfg.get("name"))
    callbacks = [AttackProgressBar()] if cfg.trainer.get("enable_progress_bar", True) else []
    fitting = universal and not cfg.get("perturbation")
    if fitting:  # a killed universal run resumes its perturbation (and its shuffle) from last.ckpt
        fit_set = dm.dataset(cfg.fit_split, train=cfg.fit_augment, whole=True)
        sampler = EpochShuffle(len(fit_set), cfg.seed)
        fit_loader = torch.utils.data.DataLoader(
            fit_set, batch_size=dm.batch_size, sampler=sampler, num_workers=dm.num_workers,
            persistent_workers=dm.num_workers > 0)
        callbacks.append(ShuffleState(sampler, dm.batch_size))
    if universal:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(
            dirpath=out / "checkpoints", save_last=True, save_top_k=0,
            every_n_train_steps=cfg.checkpoint_every))
    # The frozen models run in eval mode and never use batch statistics, so there is nothing to
    # synchronise; SyncBatchNorm would also refuse CPU modules (trainer=ddp on CPU).
    trainer = instantiate(cfg.trainer, inference_mode=False, logger=logger, callbacks=callbacks,
                          max_steps=cfg.attack.steps if universal else -1,
                          enable_checkpointing=universal, sync_batchnorm=False)
    eval_loader = eval_dataloader(dm, cfg.eval_split)
    eval_set = eval_loader.dataset.dataset
    names = image_names(eval_set)
    if cfg.get("export_png"):
        module.evaluation_png = module.new_evaluation(0)
    if save_adv == "all" or cfg.get("export_png"):
        meta = {**perturbation_metadata(spec, dm), "split": cfg.eval_split,
                "num_images": len(eval_set)}
        module.on_adversarial = AdversarialWriter(
            out / "adversarial" if save_adv == "all" else None, meta,
            cfg.get("adversarial_dtype", "fp16"),
            png_dir=out / "adversarial_png" if cfg.get("export_png") else None,
            names=lambda i: names[i])
    start = time.perf_counter()
    if cfg.get("perturbation"):
        load_perturbation(Path(cfg.perturbation), module, len(eval_set))
    elif universal:
        ckpt = resume_checkpoint(out / "checkpoints") if cfg.resume else None
        with warnings.catch_warnings():
            if trainer.world_size == 1:  # ShuffleState makes a mid-epoch resume exact
                warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before")
            trainer.fit(module, train_dataloaders=fit_loader, ckpt_path=ckpt, **safe_load_kwargs(trainer))
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


def warn_if_area_empty(module: PerturbationModule, num_images: int) -> None:
    """A run whose area holds no valid pixel in any image (e.g. a class absent from the split)
    can finish, but its success rates measure nothing: say so."""
    spec = module.spec
    if int(module.evaluation.rates[spec.eval_models[0]].n_in) == 0:
        log.warning("the area (%s) holds no valid pixel in any of the %d evaluated images: asr and "
                    "fooling_rate measure nothing (choose classes present in eval_split)",
                    (spec.area or spec.region).describe(), num_images)


def target_fields(a) -> dict:
    """``target_class`` and ``target_map`` for metrics.json. A map that sends every class to one
    goal (e.g. ``{9: 3}``) also fills ``target_class`` with that goal."""
    if not a.targeted:
        return {"target_class": None, "target_map": None}
    if a.target_class is not None:
        return {"target_class": int(a.target_class), "target_map": None}
    tmap = {str(k): int(v) for k, v in a.target_map.items()}
    goals = set(tmap.values())
    return {"target_class": goals.pop() if len(goals) == 1 else None, "target_map": tmap}


def eval_dataloader(dm, split: str) -> torch.utils.data.DataLoader:
    """The evaluated split as (x, y, index) batches, in order; under DDP every image goes to
    exactly one process (no padding: ``UnpaddedDistributedSampler``)."""
    dataset = Indexed(dm.dataset(split, train=False))
    return torch.utils.data.DataLoader(
        dataset, batch_size=dm.batch_size, sampler=UnpaddedDistributedSampler(dataset),
        num_workers=dm.num_workers, drop_last=False, persistent_workers=dm.num_workers > 0)


def image_names(dataset) -> list[str]:
    """Image ids of a split: the image file stems, or the index as text for generated data."""
    pairs = getattr(dataset, "pairs", None)
    if pairs and len(pairs) == len(dataset):
        return [Path(p[0]).stem for p in pairs]
    return [f"{i:05d}" for i in range(len(dataset))]


def write_per_image(path: Path, header: list[str], rows: list[list], names: list[str]) -> Path:
    """``per_image.csv``: one row per evaluated image (empty cell: nothing to count there)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([header[0], "image", *header[1:]])
    for row in rows:
        writer.writerow([row[0], names[row[0]], *("" if v is None else f"{v:.6g}" for v in row[1:])])
    return write_text(path, buf.getvalue())


def eval_placement(spec: AttackSpec) -> str | None:
    """How random boxes are placed at evaluation (metrics.json), None when nothing is random."""
    random = [(k, r) for k, r in (("region", spec.region), ("area", spec.area))
              if isinstance(r, BoxRegion) and r.position == "random"]
    if not random:
        return None
    return "; ".join(f"{k}: per image index, seed {r.seed}" for k, r in random)


def perturbation_metadata(spec: AttackSpec, dm) -> dict:
    return {"method": spec.method, "mode": spec.mode, "eps": spec.eps,
            "region": spec.region.describe(), "source_models": list(spec.source_models),
            "image_size": list(spec.image_size), "dataset": dm.name}


def assemble_metrics(cfg, module, dm, seconds, num_images, loaded: dict | None = None) -> dict:
    a, spec = cfg.attack, module.spec
    area = (spec.area or spec.region).describe()
    results = module.results()
    steps_per_image = results.pop("steps_per_image", None)  # early stop: fewer than spec.steps
    steps_done = (steps_per_image or spec.steps) * (num_images if spec.mode == "per_image" else 1)
    return {
        "schema": SCHEMA_VERSION,
        "attack": {"method": spec.method, "mode": spec.mode, "eps": spec.eps, "steps": spec.steps,
                   "loss": spec.loss, "schedule": spec.schedule, "best_iterate": spec.best,
                   "early_stop": spec.early_stop,
                   "members": [m.method for m in spec.members] or None,
                   "region": spec.region.describe(), "area": area, "targeted": spec.targeted,
                   **target_fields(a), "label_source": spec.label_source,
                   "loaded_perturbation": cfg.get("perturbation"),
                   "loaded_eps": loaded, "seed": spec.seed, "eval_placement": eval_placement(spec)},
        "source_models": list(spec.source_models),
        "data": {"name": dm.name, "fit_split": cfg.fit_split if cfg.mode == "universal" else None,
                 "eval_split": cfg.eval_split, "num_images": num_images,
                 "batch_size": int(dm.batch_size)},
        "saved": {"adversarial": cfg.get("save_adversarial", "none") or "none",
                  "adversarial_dtype": cfg.get("adversarial_dtype", "fp16"),
                  "export_png": bool(cfg.get("export_png", False))},
        **results,
        "runtime": {"seconds": seconds, "images_per_second": num_images / max(seconds, 1e-9),
                    "image_steps_per_second": steps_done / max(seconds, 1e-9),
                    "steps_per_image": steps_per_image},
    }


def write_outputs(cfg, out: Path, module, dm, metrics: dict, logger) -> None:
    from ..report import attack_panel, write_metrics, write_report

    spec = module.spec
    with staged(out) as stage:  # every output appears only once all of them are written
        save_perturbation(stage / "perturbation.safetensors", perturbation_tensors(module),
                          perturbation_metadata(spec, dm))
        (stage / "figures").mkdir()
        staged_figures = [
            attack_panel(stage / "figures" / f"sample_{i}.png", s["image"], s["x_adv"], s["target"],
                         s["clean"], s["adv"], dm.palette, dm.class_names, area=s["area"],
                         title=f"{spec.method}, eps={spec.eps * 255:.1f}/255")
            for i, s in enumerate(module.evaluation.figure_samples)]
        write_metrics(stage / "metrics.json", metrics)
        write_text(stage / "config.yaml", OmegaConf.to_yaml(cfg, resolve=False))
        write_report(stage, metrics, staged_figures)  # links relative to the folder: still valid
    figures = [out / "figures" / Path(f).name for f in staged_figures]
    if logger and hasattr(logger, "log_metrics"):
        flat = {f"{m}/{k}": v for m, d in metrics["per_model"].items() for k, v in d.items()}
        flat.update({f"joint/{k}": v for k, v in metrics["joint"].items()})
        logger.log_metrics({k: v for k, v in flat.items()  # numbers only: no null, no interval
                            if isinstance(v, (int, float)) and math.isfinite(v)})
        if hasattr(logger, "log_image") and figures:
            logger.log_image(key="figures", images=[str(f) for f in figures])
    if isinstance(logger, WandbLogger):  # per-image table, perturbation, config and summary
        from ..report.wandb_run import log_wandb_run
        print(log_wandb_run(logger, cfg, module, dm, metrics))


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
