"""What an attack run writes: metrics.json (assembled here), per_image.csv, the perturbation
file with its metadata, figures, report.md and the logger's copy (docs/design.md, "Outputs")."""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path

import torch
from lightning.pytorch.loggers import WandbLogger
from omegaconf import OmegaConf

from ..files.perturbation import save_perturbation
from ..io import staged, write_text
from ..metrics import batch_asr
from ..report.metrics_json import SCHEMA_VERSION
from .module import PerturbationModule
from .spec import AttackSpec

log = logging.getLogger(__name__)


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


def image_names(dataset) -> list[str]:
    """Image ids of a split: the image file stems, or the index as text for generated data."""
    pairs = getattr(dataset, "pairs", None)
    if pairs and len(pairs) == len(dataset):
        return [Path(p[0]).stem for p in pairs]
    return [f"{i:05d}" for i in range(len(dataset))]


def eval_placement(spec: AttackSpec) -> str | None:
    """How random boxes are placed at evaluation (metrics.json), None when nothing is random."""
    notes = [f"{k}: {r.eval_placement()}" for k, r in (("region", spec.region), ("area", spec.area))
             if r is not None and r.eval_placement() is not None]
    return "; ".join(notes) or None


def perturbation_metadata(spec: AttackSpec, dm) -> dict:
    return {"method": spec.method, "mode": spec.mode, "eps": spec.eps,
            "region": spec.region.describe(), "source_models": list(spec.source_models),
            "image_size": list(spec.image_size), "dataset": dm.name}


def perturbation_tensors(module: PerturbationModule) -> dict[str, torch.Tensor]:
    """Universal: ``w`` and ``delta``; per image: the deltas of the figure images."""
    if module.universal:
        return {"w": module.w.detach(), "delta": module.universal_delta()}
    deltas = [s["x_adv"] - s["image"] for s in module.evaluation.figure_samples]  # none if num_figures=0
    return {"delta": torch.stack(deltas) if deltas else torch.zeros(0, 3, *module.spec.image_size)}


def assemble_metrics(cfg, module, dm, seconds, num_images, loaded: dict | None = None) -> dict:
    a, spec = cfg.attack, module.spec
    area = (spec.area or spec.region).describe()
    results = module.results()
    steps_per_image = results.pop("steps_per_image", None)  # early stop: fewer than spec.steps
    steps_done = (steps_per_image or spec.steps) * (num_images if spec.mode == "per_image" else 1)
    return {
        "schema": SCHEMA_VERSION,
        "attack": {"method": spec.method, "mode": spec.mode, "eps": spec.eps, "steps": spec.steps,
                   "loss": spec.loss.name, "schedule": spec.schedule.name, "best_iterate": spec.best,
                   "early_stop": spec.early_stop,
                   "members": [m.label for m in spec.members] or None,
                   "region": spec.region.describe(), "area": area, "targeted": spec.targeted,
                   **target_fields(a), "label_source": spec.label_source,
                   "loaded_perturbation": cfg.get("perturbation"),
                   "loaded_eps": loaded, "seed": spec.seed, "eval_placement": eval_placement(spec)},
        "source_models": list(spec.source_models),
        "defences": dict(module.defences),  # each model's adversarial training, None: none
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


def cell(v) -> str:
    """A per_image.csv cell: empty for None (nothing to count), numbers to 6 digits."""
    return "" if v is None else v if isinstance(v, str) else f"{v:.6g}"


def write_per_image(path: Path, header: list[str], rows: list[list], names: list[str]) -> Path:
    """``per_image.csv``: one row per evaluated image (empty cell: nothing to count there)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([header[0], "image", *header[1:]])
    for row in rows:
        writer.writerow([row[0], names[row[0]], *(cell(v) for v in row[1:])])
    return write_text(path, buf.getvalue())


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
        print(log_wandb_run(logger, cfg, dm, metrics, scored_samples(module), list(spec.eval_models),
                            shown_delta(module), spec.eps))


def scored_samples(module: PerturbationModule) -> list[dict]:
    """The kept images (``figure_samples``), each with every evaluated model's asr on it."""
    out = []
    for s in module.evaluation.figure_samples:
        y, area = s["target"][None], s["area"][None]
        goal = module.objective.goal(y.to(module.device))
        goal = goal.cpu() if goal is not None else None
        has_goal = module.evaluation.has_goal(y)
        asr = {m: float(batch_asr(s["adv"][m][None], y, area, goal, has_goal)) for m in module.spec.eval_models}
        out.append({**s, "asr": asr})
    return out


def shown_delta(module: PerturbationModule) -> torch.Tensor | None:
    """The perturbation to show: a universal run's delta (patch-sized for a box), a per-image
    run's delta on its first kept image; None when no image was kept."""
    samples = module.evaluation.figure_samples
    if module.universal:
        return module.universal_delta()[0].cpu()
    return samples[0]["x_adv"] - samples[0]["image"] if samples else None
