"""What an attack run measures: clean/adversarial IoU, attack rates, joint rates, perturbation size,
and the first images kept for figures. Metric states sync across DDP processes (torchmetrics)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import MeanMetric

from ..metrics import AttackRates, JointRates, PerturbationSize, SegmentationIoU


class AttackEvaluation(nn.Module):
    """Args:
        eval_models: every evaluated model; source_models: the attacked ones (joint rates).
        num_classes: C of every model. targeted: success is ``pred == goal``.
        num_figures: how many evaluated images to keep for figures.
    """

    def __init__(self, eval_models: Sequence[str], source_models: Sequence[str], num_classes: int,
                 targeted: bool, num_figures: int):
        super().__init__()
        self.eval_models, self.source_models = list(eval_models), list(source_models)
        self.clean_iou = nn.ModuleDict({m: SegmentationIoU(num_classes) for m in self.eval_models})
        self.adv_iou = nn.ModuleDict({m: SegmentationIoU(num_classes) for m in self.eval_models})
        self.rates = nn.ModuleDict({m: AttackRates(targeted) for m in self.eval_models})
        self.joint = JointRates(targeted)
        self.size = PerturbationSize()
        self.steps_used = MeanMetric()  # per image, per-image attacks only
        self.num_figures = num_figures
        self.figure_samples: list[dict] = []

    def update(self, x, x_adv, y, area, goal, clean: dict, adv: dict) -> None:
        for m in self.eval_models:
            self.clean_iou[m].update(clean[m], y)
            self.adv_iou[m].update(adv[m], y)
            self.rates[m].update(clean[m], adv[m], y, area, goal)
        self.joint.update(torch.stack([adv[k] for k in self.source_models]), y, area, goal)
        self.size.update(x, x_adv)
        self.keep_figures(x, x_adv, y, area, clean, adv)

    def running_asr(self) -> dict[str, torch.Tensor]:
        """asr so far of each attacked model (and asr_all of a joint attack), as tensors."""
        running = {f"asr_{k}": self.rates[k].adv_success / self.rates[k].n_in.clamp(min=1)
                   for k in self.source_models}
        if len(self.source_models) > 1:
            running["asr_all"] = self.joint.all_success / self.joint.n_in.clamp(min=1)
        return running

    def keep_figures(self, x, x_adv, y, area, clean, adv) -> None:
        for i in range(min(x.shape[0], self.num_figures - len(self.figure_samples))):
            self.figure_samples.append({
                "image": x[i].cpu(), "x_adv": x_adv[i].cpu(), "target": y[i].cpu(),
                "area": area[i].cpu(), "clean": {m: p[i].cpu() for m, p in clean.items()},
                "adv": {m: p[i].cpu() for m, p in adv.items()}})

    def results(self) -> dict:
        """per_model, joint and perturbation blocks of metrics.json (plain floats)."""
        per_model = {}
        for m in self.eval_models:
            rates = {k: float(v) for k, v in self.rates[m].compute().items()}
            per_model[m] = {"clean_miou": float(self.clean_iou[m].compute()["miou"]),
                            "adv_miou": float(self.adv_iou[m].compute()["miou"]), **rates}
        return {"per_model": per_model,
                "joint": {k: float(v) for k, v in self.joint.compute().items()},
                "perturbation": {k: float(v) for k, v in self.size.compute().items()},
                **({"steps_per_image": float(self.steps_used.compute())}
                   if self.steps_used.update_count else {})}
