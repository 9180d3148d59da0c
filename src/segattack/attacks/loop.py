"""The per-image optimisation loop: a fresh ``w`` per batch, ``steps`` updates of its own optimiser."""

from __future__ import annotations

import torch

from .objective import JointObjective
from .perturbation import Perturbation
from .spec import AttackSpec


def optimise_per_image(spec: AttackSpec, objective: JointObjective, perturbation: Perturbation,
                       x, y, clean, mask, placement, area, goal,
                       generator: torch.Generator) -> torch.Tensor:
    """Optimise a perturbation for the batch ``(x, y)``; returns its final ``w`` (detached).

    ``mask``/``placement`` say where delta may be non-zero, ``area`` where success counts. A
    non-finite loss stops the run (no garbage results), checked once after the loop: no host
    sync inside it.
    """
    w = perturbation.initial_w(x.shape, generator).requires_grad_(True)
    opt = spec.optimizer([w])
    first_bad = torch.tensor(-1)
    with torch.enable_grad():
        for step in range(spec.steps):
            opt.zero_grad(set_to_none=True)
            x_adv, delta = perturbation.adversarial(x, w, mask, placement)
            loss = objective.backward(x_adv, y, area, goal, clean, delta)
            opt.step()
            perturbation.project_(w)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), torch.tensor(step), first_bad)
    if first_bad.item() >= 0:
        raise FloatingPointError(f"attack loss became non-finite at step {first_bad.item()} "
                                 "of a per-image attack: stopping instead of writing garbage")
    return w.detach()
