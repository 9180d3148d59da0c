"""What an attack run gives W&B (``logger=wandb``): per-image results as a Table, the
perturbation as an image, the config, and metrics.json as the run's summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from ..metrics import batch_asr


def _rgb(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def perturbation_image(module) -> np.ndarray | None:
    """The perturbation, ``delta / eps`` mapped to [0, 1] (grey is 0): a universal run's delta
    (patch-sized for a box), a per-image run's delta on its first kept image."""
    samples = module.evaluation.figure_samples
    if module.universal:
        delta = module.universal_delta()[0].cpu()
    elif samples:
        s = samples[0]
        delta = s["x_adv"] - s["image"]
    else:
        return None
    return _rgb((delta / max(module.spec.eps, 1e-12) + 1) / 2)


def per_image_rows(module, class_labels: dict[int, str]):
    """One row per kept image (``num_figures`` of them): the image, the clean and adversarial
    predictions of every model as W&B mask overlays (with the label), and each model's asr."""
    import wandb

    models = list(module.spec.eval_models)
    for i, s in enumerate(module.evaluation.figure_samples):
        y, area = s["target"][None], s["area"][None]
        goal = module.objective.goal(y.to(module.device))
        goal = goal.cpu() if goal is not None else None
        label = {"label": {"mask_data": s["target"].numpy().astype(np.uint8), "class_labels": class_labels}}
        clean = wandb.Image(_rgb(s["image"]), masks={
            **label, **{m: {"mask_data": s["clean"][m].numpy().astype(np.uint8), "class_labels": class_labels}
                        for m in models}})
        adv = wandb.Image(_rgb(s["x_adv"]), masks={
            **label, **{m: {"mask_data": s["adv"][m].numpy().astype(np.uint8), "class_labels": class_labels}
                        for m in models}})
        has_goal = module.evaluation.has_goal(y)
        asr = [float(batch_asr(s["adv"][m][None], y, area, goal, has_goal)) for m in models]
        yield [i, wandb.Image(_rgb(s["image"])), clean, adv, *asr]


def log_wandb_run(logger, cfg, module, dm, metrics: dict) -> str:
    """Log the run's results to its W&B run; return a one-line note of where the run is."""
    import wandb

    run = logger.experiment
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation only Hydra's app can resolve: keep it as written
        config = OmegaConf.to_container(cfg, resolve=False)
    run.config.update(config, allow_val_change=True)
    class_labels = {i: name for i, name in enumerate(dm.class_names)}
    class_labels[dm.ignore_index] = "void"
    columns = ["index", "image", "clean prediction", "adversarial prediction",
               *(f"asr {m}" for m in module.spec.eval_models)]
    table = wandb.Table(columns=columns, data=list(per_image_rows(module, class_labels)))
    logs = {"per_image": table}
    delta = perturbation_image(module)
    if delta is not None:
        logs["perturbation"] = wandb.Image(delta, caption=f"delta / eps, eps = {module.spec.eps * 255:.1f}/255")
    run.log(logs)
    run.summary.update(metrics)  # metrics.json, nested as it is on disk
    if run.offline:
        return f"W&B run saved offline; upload it with: wandb sync {Path(run.dir).parent}"
    return f"W&B run: {run.url}"
