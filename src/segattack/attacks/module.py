"""PerturbationModule: the perturbation is the only trainable thing; the models are frozen.

Two modes (docs/design.md, "Attacks"):
- ``universal``: one ``w`` (parameter of the module) learned with ``Trainer.fit`` over a split,
  then evaluated on another with ``Trainer.test``;
- ``per_image``: a fresh ``w`` per batch, optimised for ``steps`` inside ``test_step``
  (``attacks/loop.py``; the Trainer runs with ``inference_mode=False``).
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch
from torch import nn

from ..metrics import batch_asr
from .batch import AttackBatch, prepare_batch
from .evaluation import AttackEvaluation
from .loop import PerImageResult, optimise_ensemble, optimise_per_image
from .objective import JointObjective
from .perturbation import Perturbation
from .spec import AttackSpec


class PerturbationModule(L.LightningModule):
    """White-box attack on K >= 1 frozen models, as ``spec`` says.

    Args:
        models: name -> model taking [0, 1] images; every name of ``spec.eval_models``.
        spec: the validated attack (``build_attack_spec``).
        defences: name -> the threat model a model was adversarially trained against, as its
            weights file records it (None: not adversarially trained); shown in the outputs.
    """

    def __init__(self, models: Mapping[str, nn.Module], spec: AttackSpec,
                 defences: Mapping[str, dict | None] | None = None):
        super().__init__()
        self.defences = {m: (defences or {}).get(m) for m in spec.eval_models}
        self.models = nn.ModuleDict({m: models[m] for m in spec.eval_models})
        for p in self.models.parameters():
            p.requires_grad_(False)
        self.models.eval()
        self.spec = spec
        self.objective = JointObjective(self.models, spec)
        self.perturbation = Perturbation.of(spec)
        self.member_perturbations = [Perturbation.of(m) for m in spec.members]
        self.generator = torch.Generator().manual_seed(spec.seed)
        shape = (1, 3, *(spec.region.patch_size(spec.image_size) if self.universal else spec.image_size))
        # Per-image runs never use this w: no draw from the generator, so their starts do not shift.
        w = self.perturbation.initial_w(shape, self.generator) if self.universal else torch.zeros(shape)
        self.w = nn.Parameter(w, requires_grad=self.universal)
        self.evaluation = self.new_evaluation(spec.num_figures)
        self.evaluation_png: AttackEvaluation | None = None  # export_png: x_adv rounded to 8 bits
        # perturbation=PATH of a per-image set: image index -> (delta crop, origin); no attack runs.
        self.loaded_deltas: dict | None = None
        self.on_adversarial = None  # save_adversarial: called with (index, x, x_adv) per batch
        self.on_member = None  # an ensemble: told each member's label as it starts (progress bar)

    def new_evaluation(self, num_figures: int) -> AttackEvaluation:
        spec = self.spec
        return AttackEvaluation(spec.eval_models, spec.source_models, spec.num_classes,
                                spec.targeted, num_figures, spec.goal_map, spec.seed,
                                [m.label for m in spec.members])

    @property
    def universal(self) -> bool:
        return self.spec.mode == "universal"

    # --- frozen models: eval mode whatever Lightning asks (docs/design.md, "Attacks") ---------
    def train(self, mode: bool = True):
        super().train(mode)
        self.models.eval()
        return self

    # --- universal: Trainer.fit -------------------------------------------------------------
    def configure_optimizers(self):
        opt = self.spec.optimizer([self.w])
        steps, schedule = self.spec.steps, self.spec.schedule  # the per-image loop's, per step
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: schedule.factor(step, steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def training_step(self, batch, batch_idx):
        x, y = batch
        objective = self.objective
        b = prepare_batch(self.spec, objective, x, y)  # random boxes: drawn from their generators
        x_adv, delta = self.perturbation.adversarial(x, self.w, b.mask, b.placement)
        loss, logits = objective.loss(x_adv, b, delta, self.global_step, self.spec.steps)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"attack loss is {loss.item()} at step {self.global_step}: "
                                     "stopping instead of writing garbage results")
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        has_goal = self.evaluation.has_goal(y)
        for k in objective.source_models:  # this step's batch, per attacked model (progress bar)
            self.log(f"asr_{k}", batch_asr(logits[k].argmax(1), y, b.area, b.goal, has_goal),
                     prog_bar=True, batch_size=x.shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.perturbation.project_(self.w)

    # A resumed universal run draws the same random boxes as an uninterrupted one
    # (docs/design.md, "Resuming").
    def _generators(self) -> list[torch.Generator]:
        regions = (self.spec.region, self.spec.area)
        return [self.generator] + [r.generator for r in regions if r is not None and r.generator is not None]

    def on_save_checkpoint(self, checkpoint):
        checkpoint["generator_states"] = [g.get_state() for g in self._generators()]

    def on_load_checkpoint(self, checkpoint):
        for g, state in zip(self._generators(), checkpoint.get("generator_states", [])):
            g.set_state(state)

    # --- evaluation (both modes): Trainer.test ----------------------------------------------
    # Evaluation places random boxes per image index (``Region.place_at``): a universal patch is
    # tested at positions of its own, not where the fit drew them, whatever the batch size, and a
    # saved patch evaluated again (perturbation=PATH) lands where it landed in its run.
    def on_test_start(self):
        self.evaluation.seen = 0  # a loader without indices numbers its images from 0 again

    def test_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        # The run's eval split yields (x, y, index) (attacks/task.py: Indexed); else count.
        index = batch[2].cpu() if len(batch) > 2 else torch.arange(x.shape[0]) + self.evaluation.seen
        objective = self.objective
        b = prepare_batch(self.spec, objective, x, y, index, objective.predict(x, self.spec.eval_models))
        result = None
        if self.universal:
            with torch.no_grad():
                x_adv, _ = self.perturbation.adversarial(x, self.w, b.mask, b.placement)
        elif self.loaded_deltas is not None:
            x_adv = self.apply_loaded(x, index)
        else:
            result = self.craft(b)
            x_adv = result.x_adv
            self.evaluation.steps_used.update(result.steps_used.float())
        x_adv = x_adv.detach()
        adv = objective.predict(x_adv, self.spec.eval_models)
        ensemble = {"winner": result.winner, "member_counts": result.member_counts} if result else {}
        self.evaluation.update(x, x_adv, y, b.area, b.goal, b.clean, adv, index, **ensemble)
        if self.evaluation_png is not None:
            x_png = (x_adv * 255).round() / 255
            adv_png = objective.predict(x_png, self.spec.eval_models)
            self.evaluation_png.update(x, x_png, y, b.area, b.goal, b.clean, adv_png, index, **ensemble)
        if self.on_adversarial is not None:
            self.on_adversarial(index, x, x_adv)
        # Running rates over this process's images so far, per attacked model (progress bar).
        self.log_dict(self.evaluation.running_asr(), prog_bar=True, on_step=True, on_epoch=False,
                      batch_size=x.shape[0])

    def apply_loaded(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``clamp(x + delta_i, 0, 1)`` with the saved per-image deltas of these indices."""
        delta = torch.zeros_like(x)
        for b, i in enumerate(index.tolist()):
            if i not in self.loaded_deltas:
                raise KeyError(i)
            crop, (y0, x0) = self.loaded_deltas[i]
            h, w = crop.shape[-2:]
            delta[b, :, y0:y0 + h, x0:x0 + w] = crop.to(x.device, x.dtype)
        return self.perturbation.apply(x, delta)

    def craft(self, batch: AttackBatch) -> PerImageResult:
        """Per image: optimise the batch's perturbations (every member of an ensemble)."""
        if self.spec.members:
            return optimise_ensemble(self.spec, self.objective, self.member_perturbations, batch,
                                     self.generator, self.on_member)
        return optimise_per_image(self.spec, self.objective, self.perturbation, batch, self.generator)

    def attack_batch(self, x, y, clean, rmask, placement, area, goal) -> PerImageResult:
        """``craft`` from the batch's tensors one by one (clean predictions, the region's mask and
        placement, the area, the targeted goal)."""
        return self.craft(AttackBatch(x, y, rmask, placement, area, goal, clean))

    def results(self) -> dict:
        out = self.evaluation.results()
        if self.evaluation_png is not None:  # the same, on the 8-bit images export_png writes
            png = self.evaluation_png.results(warn_empty=False)
            out["png"] = {k: png[k] for k in ("per_model", "joint", "perturbation")}
        return out

    def universal_delta(self) -> torch.Tensor:
        """``eps * f(w)``: the universal perturbation (patch-sized for a box region)."""
        return self.perturbation.noise(self.w, self.spec.eps).detach()
