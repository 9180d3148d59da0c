"""What an attack run measures: clean/adversarial IoU, attack rates, joint rates, perturbation size,
per-image counts (``per_image.csv``, bootstrap intervals) and the first images kept for figures.
Metric states sync across DDP processes (torchmetrics)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torchmetrics import MeanMetric

from ..metrics import AttackRates, JointRates, PerturbationSize, SegmentationIoU
from ..metrics.attack import (
    JOINT_COUNTS,
    RATE_COUNTS,
    attack_counts,
    joint_counts,
    joint_from_counts,
    rates_from_counts,
)
from ..labels import IGNORE_INDEX
from ..metrics.iou import per_image_iou_counts
from ..metrics.per_image import PerImageCounts, bootstrap_miou, bootstrap_ratio

# metrics.json names of the pixel counts of AttackRates.
PIXEL_COUNTS = (("pixels_in_area", "n_in"), ("pixels_scored", "n_scored"),
                ("pixels_correct_in_area", "n_correct"))
# Columns of per_image.csv for each model, and the rates they come from.
PER_IMAGE_RATES = (("clean_error", "clean_error_in_area"), ("asr", "asr"),
                   ("asr_on_correct", "asr_on_correct"), ("fooling", "fooling_rate"))


def goal_pixels(goal_map: torch.Tensor | None, num_classes: int) -> torch.Tensor | None:
    """(256,) bool: the labels that have a goal in a targeted attack, or None when every pixel
    has one (untargeted, or ``target_class``: every class goes to one goal).

    A ``target_map`` sends its classes to their goals and leaves the others as they are; those
    others ask for nothing, so they are not scored (docs/method.md, "Metrics").
    """
    if goal_map is None:
        return None
    classes = goal_map[:num_classes]
    if bool((classes == classes[0]).all()):
        return None
    return goal_map != torch.arange(goal_map.numel())


def _value(v) -> float | None:
    """A plain float, None for NaN (a rate with nothing to count)."""
    v = float(v)
    return None if math.isnan(v) else v


def warn(message: str) -> None:
    """One warning line on stderr, from the first process only."""
    if rank_zero_only.rank == 0:
        print(f"warning: {message}", file=sys.stderr)


class AttackEvaluation(nn.Module):
    """Args:
        eval_models: every evaluated model; source_models: the attacked ones (joint rates).
        num_classes: C of every model. targeted: success is ``pred == goal``.
        num_figures: how many evaluated images to keep for figures.
        goal_map: the spec's (256,) label -> goal look-up (targeted), for which pixels are scored.
        seed: of the bootstrap over images.
        members: an ensemble's member labels (which one won each image, what each reached).
    """

    def __init__(self, eval_models: Sequence[str], source_models: Sequence[str], num_classes: int,
                 targeted: bool, num_figures: int, goal_map: torch.Tensor | None = None,
                 seed: int = 0, members: Sequence[str] = ()):
        super().__init__()
        self.num_classes, self.members = num_classes, list(members)
        self.eval_models, self.source_models = list(eval_models), list(source_models)
        self.targeted, self.seed = targeted, int(seed)
        self.goal_lut = goal_pixels(goal_map, num_classes) if targeted else None
        self.clean_iou = nn.ModuleDict({m: SegmentationIoU(num_classes) for m in self.eval_models})
        self.adv_iou = nn.ModuleDict({m: SegmentationIoU(num_classes) for m in self.eval_models})
        self.rates = nn.ModuleDict({m: AttackRates(targeted) for m in self.eval_models})
        self.joint = JointRates(targeted)
        self.size = PerturbationSize()
        self.steps_used = MeanMetric()  # per image, per-image attacks only
        self.fields = [f"{m}/{c}" for m in self.eval_models for c in RATE_COUNTS] + \
                      [f"joint/{c}" for c in JOINT_COUNTS] + \
                      [f"{m}/adv_{k}/{c}" for m in self.eval_models for k in ("tp", "union")
                       for c in range(num_classes)] + \
                      ["valid", "winner"] + [f"member/{i}/fooled" for i in range(len(self.members))]
        self.per_image = PerImageCounts(self.fields)
        self.num_figures = num_figures
        self.figure_samples: list[dict] = []
        self.seen = 0  # images seen by this process (indices when a batch brings none)

    def reset(self) -> None:
        """Forget everything seen (a new evaluation of the same module)."""
        for metric in self.modules():
            if metric is not self and hasattr(metric, "reset"):
                metric.reset()
        self.figure_samples, self.seen = [], 0

    def has_goal(self, y: torch.Tensor) -> torch.Tensor | None:
        return None if self.goal_lut is None else self.goal_lut.to(y.device)[y.clamp(0, 255)]

    def update(self, x, x_adv, y, area, goal, clean: dict, adv: dict,
               index: torch.Tensor | None = None, winner: torch.Tensor | None = None,
               member_counts: torch.Tensor | None = None) -> None:
        """One batch; ``index``: the images' indices in the evaluated split (default: in the
        order this process sees them); an ensemble's ``winner`` (B,) and ``member_counts``
        (M, B) (``PerImageResult``)."""
        if index is None:
            index = torch.arange(self.seen, self.seen + x.shape[0])
        self.seen += x.shape[0]
        has_goal = self.has_goal(y)
        counts = {}
        for m in self.eval_models:
            self.clean_iou[m].update(clean[m], y)
            self.adv_iou[m].update(adv[m], y)
            self.rates[m].update(clean[m], adv[m], y, area, goal, has_goal)
            counts.update({f"{m}/{k}": v for k, v in attack_counts(
                clean[m], adv[m], y, area, goal, self.targeted, has_goal).items()})
            tp, union = per_image_iou_counts(adv[m], y, self.num_classes)
            counts.update({f"{m}/adv_tp/{c}": tp[:, c] for c in range(self.num_classes)})
            counts.update({f"{m}/adv_union/{c}": union[:, c] for c in range(self.num_classes)})
        counts["valid"] = (area & (y != IGNORE_INDEX)).flatten(1).sum(1)
        none = torch.full_like(counts["valid"], -1)  # no ensemble, or a saved set: no member ran
        counts["winner"] = none if winner is None else winner
        for i in range(len(self.members)):
            counts[f"member/{i}/fooled"] = none if member_counts is None else member_counts[i]
        clean_k = torch.stack([clean[k] for k in self.source_models])
        adv_k = torch.stack([adv[k] for k in self.source_models])
        self.joint.update(adv_k, y, area, goal, clean_k, has_goal)
        counts.update({f"joint/{k}": v for k, v in joint_counts(
            clean_k, adv_k, y, area, goal, self.targeted, has_goal).items()})
        self.per_image.update(index, counts)
        self.size.update(x, x_adv)
        self.keep_figures(x, x_adv, y, area, clean, adv)

    def running_asr(self) -> dict[str, torch.Tensor]:
        """asr so far of each attacked model (and asr_all of a joint attack), as tensors."""
        running = {f"asr_{k}": self.rates[k].adv_success / self.rates[k].n_scored.clamp(min=1)
                   for k in self.source_models}
        if len(self.source_models) > 1:
            running["asr_all"] = self.joint.all_success / self.joint.n_scored.clamp(min=1)
        return running

    def keep_figures(self, x, x_adv, y, area, clean, adv) -> None:
        for i in range(min(x.shape[0], self.num_figures - len(self.figure_samples))):
            self.figure_samples.append({
                "image": x[i].cpu(), "x_adv": x_adv[i].cpu(), "target": y[i].cpu(),
                "area": area[i].cpu(), "clean": {m: p[i].cpu() for m, p in clean.items()},
                "adv": {m: p[i].cpu() for m, p in adv.items()}})

    def image_rows(self) -> tuple[list[int], dict[str, torch.Tensor]]:
        """(image indices, field -> (N,) counts) over every process's images, by index."""
        index, rows = self.per_image.compute()
        index = index.reshape(-1)  # one image: torchmetrics' concatenation drops the batch axis
        rows = rows.reshape(len(index), len(self.fields))
        return index.tolist(), {f: rows[:, j] for j, f in enumerate(self.fields)}

    def per_image_table(self) -> tuple[list[str], list[list]]:
        """Header and rows of ``per_image.csv``: index, then per model clean error, asr,
        asr_on_correct, fooling, then the joint asr_all and asr_all_on_correct (None: nothing
        to count in that image); an ensemble adds the member that won each image."""
        index, cols = self.image_rows()
        header = ["index"] + [f"{m}_{name}" for m in self.eval_models for name, _ in PER_IMAGE_RATES]
        header += ["asr_all", "asr_all_on_correct"] + (["winner"] if self.members else [])
        per_model = {m: rates_from_counts({c: cols[f"{m}/{c}"] for c in RATE_COUNTS})
                     for m in self.eval_models}
        joint = joint_from_counts({c: cols[f"joint/{c}"] for c in JOINT_COUNTS})
        rows = []
        for j, i in enumerate(index):
            row = [i] + [_value(per_model[m][key][j]) for m in self.eval_models
                         for _, key in PER_IMAGE_RATES]
            row += [_value(joint["asr_all"][j]), _value(joint["asr_all_on_correct"][j])]
            winner = int(cols["winner"][j])
            rows.append(row + [self.members[winner] if winner >= 0 else None] if self.members else row)
        return header, rows

    def intervals(self, cols: dict[str, torch.Tensor]
                  ) -> tuple[dict[str, list[float] | None], dict[str, list[float] | None]]:
        """95% bootstrap intervals over images: per model asr, joint asr_all."""
        per_model = {m: bootstrap_ratio(cols[f"{m}/adv_success"].numpy(), cols[f"{m}/n_scored"].numpy(),
                                        self.seed) for m in self.eval_models}
        joint = bootstrap_ratio(cols["joint/all_success"].numpy(), cols["joint/n_scored"].numpy(),
                                self.seed)
        return per_model, {"asr_all": joint}

    def adv_intervals(self, m: str, cols: dict[str, torch.Tensor]) -> dict:
        """95% bootstrap intervals over images of model ``m``'s adversarial pixel accuracy, mIoU
        and per-class IoU (the images resampled with all their pixels)."""
        tp = torch.stack([cols[f"{m}/adv_tp/{c}"] for c in range(self.num_classes)], 1).numpy()
        union = torch.stack([cols[f"{m}/adv_union/{c}"] for c in range(self.num_classes)], 1).numpy()
        miou_ci, class_ci = bootstrap_miou(tp, union, self.seed)
        # Valid pixels per image: tp + union = predicted + labelled pixels of a class, and summed
        # over the classes each of those is the image's valid pixels.
        valid = (tp + union).sum(1) / 2
        return {"adv_accuracy_ci95": bootstrap_ratio(tp.sum(1), valid, self.seed),
                "adv_miou_ci95": miou_ci, "adv_iou_per_class_ci95": class_ci}

    def member_results(self, cols: dict[str, torch.Tensor]) -> dict:
        """An ensemble's members: per member, the images it attacked and won, and its success
        rate over the valid pixels of the area of the images it attacked (empty: no ensemble)."""
        if not self.members:
            return {}
        valid, out = cols["valid"], []
        for i, label in enumerate(self.members):
            ran = cols[f"member/{i}/fooled"] >= 0
            won = int((cols["winner"] == i).sum())
            scored = int(valid[ran].sum())
            out.append({"attack": label, "images_attacked": int(ran.sum()), "images_won": won,
                        "share_won": won / max(len(valid), 1),
                        "asr_on_attacked": int(cols[f"member/{i}/fooled"][ran].sum()) / scored
                        if scored else None})
        return {"members": out}

    def results(self, warn_empty: bool = True) -> dict:
        """per_model, joint and perturbation blocks of metrics.json (plain floats; a rate with
        nothing to count is None, with a warning line)."""
        per_model, empty = {}, []
        _, cols = self.image_rows()  # every process's per-image counts, gathered once
        model_ci, joint_ci = self.intervals(cols)
        for m in self.eval_models:
            rates = {k: _value(v) for k, v in self.rates[m].compute().items()}
            counts = self.rates[m].counts()
            clean, adv = self.clean_iou[m].compute(), self.adv_iou[m].compute()
            per_model[m] = {"clean_miou": _value(clean["miou"]), "adv_miou": _value(adv["miou"]),
                            **rates, **{name: counts[c] for name, c in PIXEL_COUNTS},
                            "asr_ci95": model_ci[m], "clean_accuracy": _value(clean["accuracy"]),
                            "adv_accuracy": _value(adv["accuracy"]),
                            "adv_iou_per_class": [_value(v) for v in adv["per_class"]],
                            **self.adv_intervals(m, cols)}
            if counts["n_scored"] == 0:
                empty.append(m)
        joint = {k: _value(v) for k, v in self.joint.compute().items()}
        joint["asr_all_ci95"] = joint_ci["asr_all"]
        if empty and warn_empty:
            what = "pixel with a goal" if self.targeted else "valid pixel"
            warn(f"the area holds no {what} in any evaluated image: asr and the rates over the "
                 f"area are null for {', '.join(empty)} (nothing to count; check area/region)")
        return {"per_model": per_model, "joint": joint, **self.member_results(cols),
                "perturbation": {k: float(v) for k, v in self.size.compute().items()},
                **({"steps_per_image": float(self.steps_used.compute())}
                   if self.steps_used.update_count else {})}
