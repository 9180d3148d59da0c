"""What an attack run gives W&B (``logger=wandb``): per-image results as a Table, the
perturbation as an image, the config, and metrics.json as the run's summary. It takes the run's
data (``attacks/outputs.py`` gathers it), not the attack module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf


def _rgb(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def per_image_rows(samples: list[dict], models: list[str], class_labels: dict[int, str]):
    """One row per kept image: the image, the clean and adversarial predictions of every model
    as W&B mask overlays (with the label), and each model's asr (``sample["asr"][model]``)."""
    import wandb

    def overlay(image, preds, target):
        masks = {"label": {"mask_data": target.numpy().astype(np.uint8), "class_labels": class_labels}}
        masks.update({m: {"mask_data": preds[m].numpy().astype(np.uint8), "class_labels": class_labels}
                      for m in models})
        return wandb.Image(_rgb(image), masks=masks)

    for i, s in enumerate(samples):
        yield [i, wandb.Image(_rgb(s["image"])), overlay(s["image"], s["clean"], s["target"]),
               overlay(s["x_adv"], s["adv"], s["target"]), *(s["asr"][m] for m in models)]


def log_wandb_run(logger, cfg, dm, metrics: dict, samples: list[dict], models: list[str],
                  delta: torch.Tensor | None, eps: float) -> str:
    """Log the run's results to its W&B run; return a one-line note of where the run is.

    ``samples``: the kept images (``figure_samples`` with each model's ``asr``); ``models``: the
    evaluated models; ``delta``: the perturbation to show (3, h, w), None for none."""
    import wandb

    run = logger.experiment
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation only Hydra's app can resolve: keep it as written
        config = OmegaConf.to_container(cfg, resolve=False)
    run.config.update(config, allow_val_change=True)
    class_labels = {i: name for i, name in enumerate(dm.class_names)}
    class_labels[dm.ignore_index] = "void"
    columns = ["index", "image", "clean prediction", "adversarial prediction", *(f"asr {m}" for m in models)]
    table = wandb.Table(columns=columns, data=list(per_image_rows(samples, models, class_labels)))
    logs = {"per_image": table}
    if delta is not None:  # delta / eps mapped to [0, 1] (grey is 0)
        logs["perturbation"] = wandb.Image(_rgb((delta.cpu() / max(eps, 1e-12) + 1) / 2),
                                           caption=f"delta / eps, eps = {eps * 255:.1f}/255")
    run.log(logs)
    run.summary.update(metrics)  # metrics.json, nested as it is on disk
    if run.offline:
        return f"W&B run saved offline; upload it with: wandb sync {Path(run.dir).parent}"
    return f"W&B run: {run.url}"
