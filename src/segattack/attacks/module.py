"""PerturbationModule: the perturbation is the only trainable thing; the models are frozen.

Two modes (DESIGN invariant 5):
- ``universal``: one ``w`` (parameter of the module) learned with ``Trainer.fit`` over a split,
  then evaluated on another with ``Trainer.test``;
- ``per_image``: a fresh ``w`` per batch, optimised for ``steps`` inside ``test_step``
  (the Trainer runs with ``inference_mode=False``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from ..data.base import IGNORE_INDEX
from ..metrics import AttackRates, JointRates, PerturbationSize, SegmentationIoU
from .losses import model_loss
from .regions import BoxRegion, Region
from .registry import ATTACKS


class PerturbationModule(L.LightningModule):
    """White-box attack on K >= 1 frozen models: ``L = sum_k lambda_k L_k`` (DESIGN invariant 6).

    Args:
        models: name -> model taking [0, 1] images (all models evaluated; frozen here).
        source_models: the names attacked (the others are only evaluated: transfer).
        eps: L-inf bound in pixel units of [0, 1] images.
        method: name in ``ATTACKS`` (noise function, random start, step limit).
        optimizer: partial optimiser for ``w`` (Adam for tanh, ``SignGradient`` for the FGSM family).
        steps: optimisation steps per batch (per_image); the Trainer's ``max_steps`` (universal).
        mode: ``"universal"`` or ``"per_image"``.
        region: where delta may be non-zero (R). ``area``: where success counts (A); None = R.
        image_size: (H, W). num_classes: C of every model.
        targeted: push A to ``goal_map[label]`` instead of away from the label.
        goal_map: (256,) int64 look-up label -> goal class (targeted only).
        label_source: ``"gt"`` or ``"clean"`` (the clean prediction stands in for the label).
        keep_weight: weight of keeping clean predictions outside A. norm_weight: weight of mean(delta^2).
        ce_max: cap of the untargeted per-pixel cross-entropy (None = unbounded).
        lambdas: per-source-model loss weights (default 1 each).
        num_figures: how many evaluated images to keep for figures.
    """

    def __init__(self, models: Mapping[str, nn.Module], source_models: Sequence[str], eps: float,
                 method: str, optimizer: Callable[..., torch.optim.Optimizer], steps: int,
                 mode: str, region: Region, area: Region | None, image_size: Sequence[int],
                 num_classes: int, targeted: bool = False, goal_map: torch.Tensor | None = None,
                 label_source: str = "gt", keep_weight: float = 0.0, norm_weight: float = 0.0,
                 ce_max: float | None = None,
                 lambdas: Mapping[str, float] | None = None, seed: int = 0, num_figures: int = 4):
        super().__init__()
        self.models = nn.ModuleDict(models)
        for p in self.models.parameters():
            p.requires_grad_(False)
        self.models.eval()
        self.source_models = list(source_models)
        self.eval_models = list(models)
        self.eps = float(eps)
        self.method = method
        self.spec = ATTACKS[method]
        self.noise = self.spec.noise_function
        self.optimizer_factory = optimizer
        self.steps = int(steps)
        self.mode = mode
        self.region, self.area = region, area
        self.image_size = tuple(image_size)
        self.targeted = targeted
        self.register_buffer("goal_map", goal_map, persistent=False)
        self.label_source = label_source
        self.keep_weight, self.norm_weight, self.ce_max = keep_weight, norm_weight, ce_max
        self.lambdas = {k: float((lambdas or {}).get(k, 1.0)) for k in self.source_models}
        self.generator = torch.Generator().manual_seed(seed)
        self.num_figures = num_figures
        self.figure_samples: list[dict] = []
        # A universal perturbation inside a box is a patch of the box's size (pasted per image).
        self.patch = mode == "universal" and isinstance(region, BoxRegion)
        shape = (1, 3, *(region.size if self.patch else self.image_size))
        # Per-image runs never use this w: no draw from the generator, so their starts do not shift.
        u = self.initial_u(shape) if mode == "universal" else torch.zeros(shape)
        self.w = nn.Parameter(self.noise.inverse(u), requires_grad=mode == "universal")

        self.clean_iou = nn.ModuleDict({m: SegmentationIoU(num_classes) for m in self.eval_models})
        self.adv_iou = nn.ModuleDict({m: SegmentationIoU(num_classes) for m in self.eval_models})
        self.rates = nn.ModuleDict({m: AttackRates(targeted) for m in self.eval_models})
        self.joint = JointRates(targeted)
        self.size = PerturbationSize()

    # --- frozen models: eval mode whatever Lightning asks (DESIGN invariant 3) ---------------
    def train(self, mode: bool = True):
        super().train(mode)
        self.models.eval()
        return self

    # --- the perturbation -------------------------------------------------------------------
    def initial_u(self, shape) -> torch.Tensor:
        """Start in units of eps: zeros, or U(-1, 1) for a random start."""
        if self.spec.init == "uniform":
            return torch.rand(shape, generator=self.generator) * 2 - 1
        return torch.zeros(shape)

    def perturbation(self, w: torch.Tensor, labels: torch.Tensor, origins=None):
        """``delta = R * eps * f(w)`` (B, 3, H, W) and the region mask (B, H, W)."""
        g = self.noise(w, self.eps)
        B = labels.shape[0]
        if self.patch:
            origins = self.region.origins(B) if origins is None else origins
            H, W = self.image_size
            h, w_ = self.region.size
            pads = [(int(x), W - int(x) - w_, int(y), H - int(y) - h) for y, x in origins.tolist()]
            if len(set(pads)) == 1:
                delta = F.pad(g, pads[0]).expand(B, -1, -1, -1)
            else:
                delta = torch.cat([F.pad(g, p) for p in pads])
            return delta, self.region.mask(labels, origins)
        rmask = self.region.mask(labels) if origins is None else self.region.mask(labels, origins)
        return g * rmask[:, None].to(g.dtype), rmask

    def goal(self, labels: torch.Tensor) -> torch.Tensor | None:
        if not self.targeted:
            return None
        goal = self.goal_map[labels.clamp(0, 255)]
        return torch.where(labels == IGNORE_INDEX, IGNORE_INDEX, goal)

    # --- the loss ---------------------------------------------------------------------------
    def attack_loss(self, x_adv, labels, area, goal, clean, delta):
        """``sum_k lambda_k L_k`` over the source models (+ the optional norm penalty)."""
        total = x_adv.new_zeros(())
        logits = {}
        for k in self.source_models:
            logits[k] = self.models[k](x_adv)
            total = total + self.model_term(k, logits[k], labels, area, goal, clean)
        if self.norm_weight:
            total = total + self.norm_weight * delta.pow(2).mean()
        return total, logits

    def model_term(self, k, logits, labels, area, goal, clean):
        """``lambda_k L_k``: model ``k``'s weighted share of the joint loss."""
        lab = labels if self.label_source == "gt" else clean[k]
        return self.lambdas[k] * model_loss(logits, lab, area, goal, clean.get(k), self.keep_weight, self.ce_max)

    def backward_per_model(self, x_adv, labels, area, goal, clean, delta) -> torch.Tensor:
        """Backward of ``attack_loss`` one model at a time; returns the (detached) total loss.

        Same gradient as ``attack_loss(...).backward()``, but each model's graph is freed before
        the next model runs, so a joint step holds one model's activations, not K (measured:
        peak RSS of the attack benchmark 1536 -> 1195 MiB, docs/performance.md). Universal fits
        keep Lightning's one backward of the summed loss.
        """
        if len(self.source_models) == 1:  # nothing to free early: one plain backward
            loss, _ = self.attack_loss(x_adv, labels, area, goal, clean, delta)
            loss.backward()
            return loss.detach()
        leaf = x_adv.detach().requires_grad_(True)
        total = x_adv.new_zeros(())
        for k in self.source_models:
            loss_k = self.model_term(k, self.models[k](leaf), labels, area, goal, clean)
            loss_k.backward()
            total = total + loss_k.detach()
        outputs, grads = [x_adv], [leaf.grad]
        if self.norm_weight:
            norm = self.norm_weight * delta.pow(2).mean()
            outputs.append(norm)
            grads.append(None)
            total = total + norm.detach()
        torch.autograd.backward(outputs, grads)
        return total

    @torch.no_grad()
    def predict_all(self, x: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        return {m: self.models[m](x).argmax(1) for m in (names or self.eval_models)}

    def needs_clean(self) -> bool:
        return self.label_source == "clean" or self.keep_weight > 0

    # --- universal: Trainer.fit -------------------------------------------------------------
    def configure_optimizers(self):
        return self.optimizer_factory([self.w])

    def training_step(self, batch, batch_idx):
        x, y = batch
        clean = self.predict_all(x, self.source_models) if self.needs_clean() else {}
        delta, rmask = self.perturbation(self.w, y)
        area = rmask if self.area is None else self.area.mask(y)
        x_adv = (x + delta).clamp(0, 1)
        goal = self.goal(y)
        loss, logits = self.attack_loss(x_adv, y, area, goal, clean, delta)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"attack loss is {loss.item()} at step {self.global_step}: "
                                     "stopping instead of writing garbage results")
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        for k in self.source_models:  # this step's batch, per attacked model (progress bar)
            self.log(f"asr_{k}", self.batch_asr(logits[k].argmax(1), y, area, goal), prog_bar=True,
                     batch_size=x.shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.noise.project_(self.w)

    # A resumed universal run draws the same random boxes as an uninterrupted one (DESIGN 10).
    def _generators(self) -> list[torch.Generator]:
        regions = (self.region, self.area)
        return [self.generator] + [r.generator for r in regions if getattr(r, "generator", None) is not None]

    def on_save_checkpoint(self, checkpoint):
        checkpoint["generator_states"] = [g.get_state() for g in self._generators()]

    def on_load_checkpoint(self, checkpoint):
        for g, state in zip(self._generators(), checkpoint.get("generator_states", [])):
            g.set_state(state)

    def batch_asr(self, pred, y, area, goal):
        valid = area & (y != IGNORE_INDEX)
        success = pred == goal if goal is not None else pred != y
        return (success & valid).sum() / valid.sum().clamp(min=1)

    # --- per image: optimise inside the step ------------------------------------------------
    def optimise(self, x, y, clean):
        """A fresh perturbation per image of the batch, ``steps`` updates of its own optimiser."""
        origins = self.region.origins(x.shape[0]) if isinstance(self.region, BoxRegion) else None
        rmask = self.region.mask(y) if origins is None else self.region.mask(y, origins)
        area = rmask if self.area is None else self.area.mask(y)
        goal = self.goal(y)
        w = self.noise.inverse(self.initial_u(x.shape)).requires_grad_(True)
        opt = self.optimizer_factory([w])
        m = rmask[:, None].to(x.dtype)
        first_bad = torch.tensor(-1)
        with torch.enable_grad():
            for step in range(self.steps):
                delta = self.noise(w, self.eps) * m
                opt.zero_grad(set_to_none=True)
                loss = self.backward_per_model((x + delta).clamp(0, 1), y, area, goal, clean, delta)
                opt.step()
                self.noise.project_(w)
                # Record the first non-finite step without a host sync inside the loop.
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()),
                                        torch.tensor(step), first_bad)
        if first_bad.item() >= 0:
            raise FloatingPointError(f"attack loss became non-finite at step {first_bad.item()} "
                                     "of a per-image attack: stopping instead of writing garbage")
        return (self.noise(w, self.eps) * m).detach(), area

    # --- evaluation (both modes): Trainer.test ----------------------------------------------
    def on_test_start(self):
        # Random boxes are placed as from a fresh start, whatever the fit drew before: a saved
        # universal patch evaluated again (perturbation=PATH) lands where it landed in its run.
        for region in (self.region, self.area):
            if isinstance(region, BoxRegion):
                region.reset()

    def test_step(self, batch, batch_idx):
        x, y = batch
        clean = self.predict_all(x)
        if self.mode == "per_image":
            delta, area = self.optimise(x, y, clean)
        else:
            with torch.no_grad():
                delta, rmask = self.perturbation(self.w, y)
            area = rmask if self.area is None else self.area.mask(y)
        x_adv = (x + delta).clamp(0, 1)
        adv = self.predict_all(x_adv)
        goal = self.goal(y)
        for m in self.eval_models:
            self.clean_iou[m].update(clean[m], y)
            self.adv_iou[m].update(adv[m], y)
            self.rates[m].update(clean[m], adv[m], y, area, goal)
        self.joint.update(torch.stack([adv[k] for k in self.source_models]), y, area, goal)
        self.size.update(x, x_adv)
        # Running rates over this process's images so far, per attacked model (progress bar).
        running = {f"asr_{k}": self.rates[k].adv_success / self.rates[k].n_in.clamp(min=1)
                   for k in self.source_models}
        if len(self.source_models) > 1:
            running["asr_all"] = self.joint.all_success / self.joint.n_in.clamp(min=1)
        self.log_dict(running, prog_bar=True, on_step=True, on_epoch=False, batch_size=x.shape[0])
        self.keep_figures(x, x_adv, y, area, clean, adv)

    def keep_figures(self, x, x_adv, y, area, clean, adv):
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
                "perturbation": {k: float(v) for k, v in self.size.compute().items()}}

    def universal_delta(self) -> torch.Tensor:
        """``eps * f(w)``: the universal perturbation (patch-sized for a box region)."""
        return self.noise(self.w, self.eps).detach()
