"""The joint attack objective ``L = sum_k lambda_k L_k`` over the attacked (source) models.

Plain object over the module's frozen models (it owns no parameters): the loss, its backward one
model at a time, the targeted goal and per-pixel success. Losses are
per image (B,): the per-image loop backpropagates their sum, so each image is its own attack
whatever the batch; the universal fit minimises their mean.

``balance=normalized`` divides each model's per-image loss by its own detached magnitude, so in a
joint attack a model that is already far gone (a large loss) does not drown the other's gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from ..labels import IGNORE_INDEX
from ..losses import LossInputs, cross_entropy, per_image_mean
from .batch import AttackBatch
from .spec import AttackSpec


class JointObjective:
    def __init__(self, models: nn.ModuleDict, spec: AttackSpec):
        self.models = models
        self.spec = spec
        self.source_models = list(spec.source_models)

    def for_spec(self, spec: AttackSpec) -> JointObjective:
        """The same models under another spec's loss settings (an ensemble's member)."""
        return JointObjective(self.models, spec)

    def goal(self, labels: torch.Tensor) -> torch.Tensor | None:
        """Targeted: the goal class of every pixel (ignored pixels stay ignored); else None."""
        if not self.spec.targeted:
            return None
        goal = self.spec.goal_map.to(labels.device)[labels.clamp(0, 255)]
        return torch.where(labels == IGNORE_INDEX, IGNORE_INDEX, goal)

    def needs_clean(self) -> bool:
        return self.spec.label_source == "clean" or self.spec.keep_weight > 0

    def model_term(self, k: str, logits: torch.Tensor, batch: AttackBatch, step: int = 0,
                   steps: int = 1) -> torch.Tensor:
        """(B,) ``lambda_k L_k``: model ``k``'s weighted share of the joint loss, per image.

        ``L_k`` is the spec's loss; with ``keep_weight`` > 0 plus the cross-entropy to the clean
        prediction outside the area (less collateral)."""
        s = self.spec
        labels = batch.y if s.label_source == "gt" else batch.clean[k]
        value = s.loss(logits, LossInputs(labels, batch.area, batch.goal, step, steps))
        keep = batch.clean.get(k)
        if s.keep_weight > 0 and keep is not None:
            outside = ~batch.area & (labels != IGNORE_INDEX)
            value = value + s.keep_weight * per_image_mean(cross_entropy(logits, keep), outside)
        if s.balance == "normalized":
            value = value / value.detach().abs().clamp(min=1e-12)
        return s.lambdas[k] * value

    def norm_term(self, delta: torch.Tensor) -> torch.Tensor:
        """(B,) ``norm_weight * mean(delta^2)`` per image."""
        return self.spec.norm_weight * delta.pow(2).flatten(1).mean(1)

    def loss(self, x_adv, batch: AttackBatch, delta, step=0, steps=1):
        """``(mean over images of sum_k lambda_k L_k (+ the norm penalty), {model: logits})``."""
        total = x_adv.new_zeros(x_adv.shape[0])
        logits = {}
        for k in self.source_models:
            logits[k] = self.models[k](x_adv)
            total = total + self.model_term(k, logits[k], batch, step, steps)
        if self.spec.norm_weight:
            total = total + self.norm_term(delta)
        return total.mean(), logits

    def backward(self, x_adv, batch: AttackBatch, delta, step=0, steps=1):
        """Backward of the per-image losses' sum, one model at a time.

        Returns ``((B,) detached per-image losses, {model: argmax prediction on x_adv})``. Same
        gradient as one backward of the sum, but each model's graph is freed before the next
        model runs, so a joint step holds one model's activations, not K (measured: peak RSS of
        the attack benchmark 1536 -> 1195 MiB, docs/performance.md).
        """
        leaf = x_adv.detach().requires_grad_(True) if len(self.source_models) > 1 else x_adv
        total = x_adv.new_zeros(x_adv.shape[0])
        preds = {}
        for k in self.source_models:
            logits = self.models[k](leaf)
            loss_k = self.model_term(k, logits, batch, step, steps)
            preds[k] = logits.detach().argmax(1)
            if leaf is x_adv:  # one model: nothing to free early, one plain backward below
                total = total + loss_k
                break
            loss_k.sum().backward()
            total = total + loss_k.detach()
        if self.spec.norm_weight:
            total = total + self.norm_term(delta)
        if leaf is x_adv:
            total.sum().backward()
        else:
            outputs, grads = [x_adv], [leaf.grad]
            if self.spec.norm_weight:
                outputs.append(self.norm_term(delta).sum())
                grads.append(None)
            torch.autograd.backward(outputs, grads)
        return total.detach(), preds

    def success(self, preds: dict, batch: AttackBatch) -> torch.Tensor:
        """(B, H, W) bool: the attack succeeds at the pixel on every attacked model."""
        done = None
        for k in self.source_models:
            ok = preds[k] == batch.goal if batch.goal is not None else preds[k] != batch.y
            done = ok if done is None else done & ok
        return done

    @torch.no_grad()
    def predict(self, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
        return {m: self.models[m](x).argmax(1) for m in names}
