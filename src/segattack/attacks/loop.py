"""The per-image optimisation loop: a fresh ``w`` per batch, ``steps`` updates of its own optimiser.

Per image it keeps the best iterate seen (the most pixels of the area fooled on every attacked
model at once) and the batch stops early once every valid pixel of every image is fooled on every
model. Nothing in the loop waits on a host sync except that one "all done?" check per step.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..labels import IGNORE_INDEX
from .batch import AttackBatch
from .objective import JointObjective
from .perturbation import Perturbation
from .spec import AttackSpec


class BestIterate:
    """Per image: the ``w`` with the most successful pixels seen so far, and whether all are.

    Args:
        w: the starting variable (B, ...). valid: (B, H, W) bool, the pixels that count.
        keep_w: keep a copy of the best ``w`` (a last-iterate attack only needs the counts, and
            the copy is one tensor the size of ``w`` per step).
    """

    def __init__(self, w: torch.Tensor, valid: torch.Tensor, keep_w: bool = True):
        self.valid = valid
        self.total = valid.flatten(1).sum(1)
        self.w = w.detach().clone() if keep_w else None
        self.count = torch.full_like(self.total, -1)
        self.last = self.count
        self.steps_used = torch.full_like(self.total, -1)

    def update(self, w: torch.Tensor, success: torch.Tensor, step: int) -> torch.Tensor:
        """Record ``w`` (whose per-pixel success on every model is ``success``); returns done (B,)."""
        count = (success & self.valid).flatten(1).sum(1)
        self.last = count  # the latest iterate's (a last-iterate attack reports that one)
        if self.w is not None:
            better = count > self.count
            self.w = torch.where(better.view(-1, *[1] * (w.dim() - 1)), w.detach(), self.w)
        self.count = torch.maximum(count, self.count)
        done = self.count >= self.total
        self.steps_used = torch.where(done & (self.steps_used < 0), step, self.steps_used)
        return done


def progress(count: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """(B,) what an optimiser that watches each image's progress (APGD's step-size control)
    minimises: minus the pixels fooled, ties broken by the loss (its tanh moves the value by at most
    a quarter of a pixel). A masked loss rises as pixels are fooled and leave its mask, so on the
    loss alone success would read as failure (docs/performance.md, "APGD's step-size control")."""
    return -count.double() + 0.25 * torch.tanh(loss.double())


@dataclass
class PerImageResult:
    """x_adv (B, 3, H, W); count: (B,) successful pixels of it (None when it was not scored: the
    last iterate of a single attack, which the evaluation scores anyway); steps_used: (B,)
    updates until every valid pixel of the area was fooled (the step budget where never).
    An ensemble also says, per image, which member won (``winner``, (B,) member index) and what
    each member reached (``member_counts``, (M, B), -1 where it did not run)."""

    x_adv: torch.Tensor
    count: torch.Tensor | None
    steps_used: torch.Tensor
    winner: torch.Tensor | None = None
    member_counts: torch.Tensor | None = None


def optimise_per_image(spec: AttackSpec, objective: JointObjective, perturbation: Perturbation,
                       batch: AttackBatch, generator: torch.Generator,
                       need_count: bool = False, start: torch.Tensor | None = None) -> PerImageResult:
    """Optimise a perturbation for ``batch``: the best iterate (``spec.best``) or the last one.
    ``batch.mask``/``batch.placement`` say where delta may be non-zero, ``batch.area`` where
    success counts. A non-finite loss stops the run (no garbage results), checked once after
    the loop. ``need_count``: score the result even when it is the last iterate (an ensemble
    compares). ``start``: an adversarial image to start from instead of the perturbation's own
    initialisation, its delta projected onto this attack's ball (an ensemble member warm-started
    from the worst case so far, a stage of a progressive radius). The objective's models are only
    read: callers freeze their parameters (``requires_grad``) for the crafting, as
    ``PerturbationModule`` does.
    """
    if spec.progressive_radius:
        return optimise_progressive(spec, objective, batch, generator, need_count, start)
    x = batch.x
    bounds = perturbation.feasible_bounds(x)
    w = perturbation.initial_w(x.shape, generator) if start is None else perturbation.w_of(x, start)
    perturbation.project_(w, bounds)
    w.requires_grad_(True)
    opt = spec.optimizer([w])
    base_lr = [g["lr"] for g in opt.param_groups]
    tracker = BestIterate(w, batch.area & (batch.y != IGNORE_INDEX), keep_w=spec.best)
    first_bad = torch.tensor(-1)
    step, scored = 0, True
    with torch.enable_grad():
        for step in range(spec.steps):
            opt.zero_grad(set_to_none=True)
            x_adv, delta = perturbation.adversarial(x, w, batch.mask, batch.placement)
            loss, preds = objective.backward(x_adv, batch, delta, step, spec.steps)
            done = tracker.update(w, objective.success(preds, batch), step)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss).all(), torch.tensor(step), first_bad)
            if spec.early_stop and bool(done.all()):
                break
            factor = spec.schedule.factor(step, spec.steps)
            for group, lr in zip(opt.param_groups, base_lr):
                group["lr"] = lr * factor
            opt.step(progress(tracker.last, loss)) if getattr(opt, "wants_progress", False) else opt.step()
            perturbation.project_(w, bounds)
        else:  # the last update has not been scored yet: the best iterate or a count needs it
            step = spec.steps
            if spec.best or need_count:
                with torch.no_grad():
                    x_adv, _ = perturbation.adversarial(x, w, batch.mask, batch.placement)
                    preds = objective.predict(x_adv, objective.source_models)
                tracker.update(w, objective.success(preds, batch), step)
            else:
                scored = False
    if first_bad.item() >= 0:
        raise FloatingPointError(f"attack loss became non-finite at step {first_bad.item()} "
                                 "of a per-image attack: stopping instead of writing garbage")
    steps_used = torch.where(tracker.steps_used < 0, spec.steps, tracker.steps_used)
    final = tracker.w if spec.best else w.detach()
    count = (tracker.count if spec.best else tracker.last) if scored else None
    with torch.no_grad():
        x_adv, _ = perturbation.adversarial(x, final, batch.mask, batch.placement)
    return PerImageResult(x_adv, count, steps_used)


# SEA's progressive radius reduction (Croce, Singh, Hein, ECCV 2024): (multiple of eps, share of
# the steps) per stage, the last stage taking the rest; the larger early balls let the attack
# move far before it is held to the bound.
RADII = ((2.0, 0.3), (1.5, 0.3), (1.0, None))


def radius_stages(spec: AttackSpec) -> list[AttackSpec]:
    """The stages of a progressive-radius attack, each a plain attack of its own eps and steps
    (stages left with no step are dropped; APGD's checkpoints follow its stage's steps)."""
    first = [int(share * spec.steps) for _, share in RADII[:-1]]
    stages = []
    for (factor, _), steps in zip(RADII, [*first, spec.steps - sum(first)]):
        if steps == 0:
            continue
        opt = spec.optimizer
        if "steps" in getattr(opt, "keywords", {}):
            opt = functools.partial(opt.func, *opt.args, **{**opt.keywords, "steps": steps})
        stages.append(dataclasses.replace(spec, eps=factor * spec.eps, steps=steps, optimizer=opt,
                                          progressive_radius=False))
    return stages


def optimise_progressive(spec: AttackSpec, objective: JointObjective, batch: AttackBatch,
                         generator: torch.Generator, need_count: bool,
                         start: torch.Tensor | None) -> PerImageResult:
    """``optimise_per_image`` in stages of shrinking radius (``RADII``): each stage starts from
    the previous stage's result projected onto its own ball; the last stage's is the result."""
    stages = radius_stages(spec)
    steps_used = 0
    for i, stage in enumerate(stages):
        r = optimise_per_image(stage, objective, Perturbation.of(stage), batch, generator,
                               need_count=need_count and i == len(stages) - 1, start=start)
        steps_used = steps_used + r.steps_used
        start = r.x_adv
    return PerImageResult(r.x_adv, r.count, steps_used)


def optimise_ensemble(spec: AttackSpec, objective: JointObjective, perturbations,
                      batch: AttackBatch, generator: torch.Generator,
                      on_member: Callable[[str], None] | None = None) -> PerImageResult:
    """Each member attack in turn (its own loss settings); per image, the adversarial image with
    the most success (the first member wins a tie). With ``spec.skip_fooled`` a member only
    attacks the images whose every valid pixel is not yet fooled (the others cannot get worse).
    With ``spec.warm_start`` every member after the first starts from the image's worst case so
    far instead of its own initialisation (the budget adds up in depth as well as in diversity).
    ``on_member`` is told each member's label as it starts (the progress bar)."""
    valid = batch.area & (batch.y != IGNORE_INDEX)
    total = valid.flatten(1).sum(1)
    x_adv = batch.x.clone()
    count = torch.full_like(total, -1)
    steps_used = torch.zeros_like(total)
    winner = torch.zeros_like(total)
    member_counts = torch.full((len(spec.members), len(total)), -1, dtype=total.dtype, device=total.device)
    for i, (member, perturbation) in enumerate(zip(spec.members, perturbations)):
        todo = (count < total) if spec.skip_fooled else torch.ones_like(total, dtype=torch.bool)
        rows = todo.nonzero().flatten()  # one host sync per member, none per step
        if len(rows) == 0:
            break
        if on_member is not None:
            on_member(member.label)
        sub = batch if len(rows) == len(total) else batch.select(rows)
        start = x_adv[rows] if spec.warm_start and i > 0 else None
        r = optimise_per_image(member, objective.for_spec(member), perturbation, sub, generator,
                               need_count=True, start=start)
        better = r.count > count[rows]
        x_adv[rows] = torch.where(better.view(-1, 1, 1, 1), r.x_adv, x_adv[rows])
        winner[rows] = torch.where(better, i, winner[rows])
        count[rows] = torch.maximum(r.count, count[rows])
        steps_used[rows] += r.steps_used
        member_counts[i, rows] = r.count
    return PerImageResult(x_adv, count, steps_used, winner, member_counts)
