"""``run_attack(cfg)`` and ``run_transfer(cfg)``: what ``attack.py`` runs."""

from __future__ import annotations

import copy
import json
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

from ..config import load_group_option
from ..errors import ConfigError, WeightsError
from ..io import atomic_write, write_text
from ..models.weights import load_weights, resume_checkpoint, safe_load_kwargs
from .module import PerturbationModule
from .progress import AttackProgressBar
from .regions import build_region
from .settings import check_attack, goal_map, parse_eps
from .shuffle import EpochShuffle, ShuffleState

log = logging.getLogger(__name__)


def weights_path(cfg: DictConfig, name: str) -> Path:
    """``weights.<name>`` if given, else the ``weights`` entry of ``configs/model/<name>.yaml``."""
    explicit = (cfg.get("weights") or {}).get(name)
    if explicit:
        return Path(explicit)
    try:
        return Path(load_group_option(cfg, "model", name).weights)
    except ConfigError:
        raise ConfigError(f"source_models/eval_models: unknown model {name!r}; give weights.{name}=PATH "
                          f"or add configs/model/{name}.yaml") from None


def load_models(cfg: DictConfig, names: list[str], num_classes: int, image_size) -> dict:
    models = {}
    for name in names:
        try:
            model, _ = load_weights(weights_path(cfg, name), expect_num_classes=num_classes)
        except WeightsError as err:  # name the key to change, not only the file
            raise WeightsError(f"weights.{name}: {err}") from None
        try:
            model.check_input_size(*image_size)
        except ValueError as err:
            raise ConfigError(f"data.image_size={list(image_size)}: {err}") from None
        models[name] = model.use_channels_last(cfg.get("channels_last", "auto"))
    return models


def save_perturbation(path: Path, module: PerturbationModule, meta: dict) -> None:
    """Universal: ``w`` and ``delta``; per image: the deltas of the figure images."""
    if module.mode == "universal":
        tensors = {"w": module.w.detach().contiguous(), "delta": module.universal_delta().contiguous()}
    else:
        deltas = [s["x_adv"] - s["image"] for s in module.figure_samples]  # none if num_figures=0
        delta = torch.stack(deltas) if deltas else torch.zeros(0, 3, *module.image_size)
        tensors = {"delta": delta.contiguous()}
    encoded = {k: json.dumps(v) for k, v in meta.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=encoded))


def load_perturbation(path: Path, module: PerturbationModule) -> None:
    """Put a saved universal ``w`` into ``module`` (shape and mode checked)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        w = load_file(str(path))["w"]
    except (SafetensorError, OSError, KeyError, ValueError) as err:
        raise WeightsError(f"{path}: not a universal perturbation file ({err})") from None
    if tuple(w.shape) != tuple(module.w.shape):
        raise WeightsError(f"{path}: perturbation of shape {list(w.shape)} does not fit this run "
                           f"(expected {list(module.w.shape)} for region {module.region.describe()} "
                           f"and image size {list(module.image_size)})")
    if meta.get("method") and meta["method"] != module.method:
        raise ConfigError(f"attack.method={module.method!r}: {path} was made with "
                          f"{meta['method']!r}; run with attack={meta['method']}")
    with torch.no_grad():
        module.w.copy_(w)


def build_module(cfg: DictConfig, dm, eps: float) -> PerturbationModule:
    sources = list(cfg.source_models)
    names = sources + [m for m in (cfg.eval_models or []) if m not in sources]
    models = load_models(cfg, names, dm.num_classes, dm.image_size)
    region = build_region(cfg.region, dm.image_size, dm.num_classes, cfg.seed, "region")
    area = build_region(cfg.area, dm.image_size, dm.num_classes, cfg.seed, "area") if cfg.area else None
    a = cfg.attack
    return PerturbationModule(
        models, sources, eps, a.method, instantiate(a.optimizer), a.steps, cfg.mode, region, area,
        dm.image_size, dm.num_classes, a.targeted, goal_map(cfg, dm.num_classes), a.label_source,
        a.keep_weight, a.norm_weight, a.ce_max, a.lambdas, cfg.seed, cfg.num_figures)


def run_attack(cfg: DictConfig) -> dict:
    """One attack run: fit (universal) or optimise per image, evaluate, write every output."""
    # The frozen models are in eval mode on purpose (DESIGN invariant 3): not worth a warning.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training")
    check_attack(cfg)
    eps = parse_eps(cfg.eps)
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dm = instantiate(cfg.data)
    module = build_module(cfg, dm, eps)
    universal = cfg.mode == "universal"
    logger = instantiate(cfg.logger, name=cfg.get("name")) if cfg.get("logger") else False
    callbacks = [AttackProgressBar()] if cfg.trainer.get("enable_progress_bar", True) else []
    fitting = universal and not cfg.get("perturbation")
    if fitting:  # a killed universal run resumes its perturbation (and its shuffle) from last.ckpt
        fit_set = dm.dataset(cfg.fit_split, train=False)
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
    eval_loader = dm.dataloader(cfg.eval_split, train=False)
    start = time.perf_counter()
    if cfg.get("perturbation"):
        if not universal:
            raise ConfigError("perturbation=PATH evaluates a saved universal perturbation: set mode=universal")
        load_perturbation(Path(cfg.perturbation), module)
    elif universal:
        ckpt = resume_checkpoint(out / "checkpoints") if cfg.resume else None
        with warnings.catch_warnings():
            if trainer.world_size == 1:  # ShuffleState makes a mid-epoch resume exact
                warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before")
            trainer.fit(module, train_dataloaders=fit_loader, ckpt_path=ckpt, **safe_load_kwargs(trainer))
    trainer.test(module, dataloaders=eval_loader, verbose=False)
    seconds = time.perf_counter() - start
    metrics = assemble_metrics(cfg, module, dm, eps, seconds, len(eval_loader.dataset))
    if trainer.is_global_zero:  # DDP: the metrics are synced; one process writes the outputs
        write_outputs(cfg, out, module, dm, metrics, logger)
    finish = getattr(getattr(logger, "experiment", None), "finish", None)
    if callable(finish):  # W&B: close the run now, so its messages come before our summary
        finish()
    return metrics


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


def assemble_metrics(cfg, module, dm, eps, seconds, num_images) -> dict:
    a = cfg.attack
    area = module.area.describe() if module.area else module.region.describe()
    steps_done = a.steps * (num_images if cfg.mode == "per_image" else 1)
    return {
        "schema": 1,
        "attack": {"method": a.method, "mode": cfg.mode, "eps": eps, "steps": a.steps,
                   "region": module.region.describe(), "area": area, "targeted": bool(a.targeted),
                   **target_fields(a), "label_source": a.label_source,
                   "loaded_perturbation": cfg.get("perturbation")},
        "source_models": list(module.source_models),
        "data": {"name": dm.name, "fit_split": cfg.fit_split if cfg.mode == "universal" else None,
                 "eval_split": cfg.eval_split, "num_images": num_images},
        **module.results(),
        "runtime": {"seconds": seconds, "images_per_second": num_images / max(seconds, 1e-9),
                    "image_steps_per_second": steps_done / max(seconds, 1e-9)},
    }


def write_outputs(cfg, out: Path, module, dm, metrics: dict, logger) -> None:
    from ..report import attack_panel, write_metrics, write_report

    meta = {"method": module.method, "mode": module.mode, "eps": module.eps,
            "region": module.region.describe(), "source_models": module.source_models,
            "image_size": list(module.image_size), "dataset": dm.name}
    save_perturbation(out / "perturbation.safetensors", module, meta)
    (out / "figures").mkdir(exist_ok=True)
    figures = []
    for i, s in enumerate(module.figure_samples):
        figures.append(attack_panel(out / "figures" / f"sample_{i}.png", s["image"], s["x_adv"],
                                    s["target"], s["clean"], s["adv"], dm.palette, dm.class_names,
                                    area=s["area"], title=f"{module.method}, eps={module.eps * 255:.1f}/255"))
    write_metrics(out / "metrics.json", metrics)
    write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=False))
    write_report(out, metrics, figures)
    if logger and hasattr(logger, "log_metrics"):
        flat = {f"{m}/{k}": v for m, d in metrics["per_model"].items() for k, v in d.items()}
        flat.update({f"joint/{k}": v for k, v in metrics["joint"].items()})
        logger.log_metrics(flat)
        if hasattr(logger, "log_image") and figures:
            logger.log_image(key="figures", images=[str(f) for f in figures])
    if isinstance(logger, WandbLogger):  # per-image table, perturbation, config and summary
        from ..report.wandb_run import log_wandb_run
        print(log_wandb_run(logger, cfg, module, dm, metrics))


def run_transfer(cfg: DictConfig) -> dict:
    """Craft on each single model and on the joint set; evaluate on all: the asr matrix."""
    from ..report import transfer_heatmap, write_transfer

    models = list(cfg.source_models)
    if len(models) < 2:
        raise ConfigError("task=transfer needs at least two source_models, e.g. source_models=[enet,erfnet]")
    sources = [[m] for m in models] + [models]
    out = Path(cfg.paths.output_dir)
    rows, asr = [], []
    for src in sources:
        sub = copy.deepcopy(cfg)
        name = "+".join(src)
        OmegaConf.update(sub, "source_models", src)
        OmegaConf.update(sub, "eval_models", models)
        OmegaConf.update(sub, "paths.output_dir", str(out / name))
        m = run_attack(sub)
        rows.append(name)
        asr.append([m["per_model"][t]["asr"] for t in models])
    write_transfer(out / "transfer.json", rows, models, asr)
    transfer_heatmap(out / "transfer.png", rows, models, asr)
    return {"rows": rows, "cols": models, "asr": asr}
