"""Sign-gradient descent: the update of FGSM, I-FGSM and PGD as a torch optimiser."""

from __future__ import annotations

import torch


class SignGradient(torch.optim.Optimizer):
    """``p <- p - lr * sign(grad)``. With a unitless ``w`` (``delta = eps * f(w)``) the step in
    pixel units is ``lr * eps``: FGSM is ``lr=1, steps=1``; PGD is ``lr=2.5/steps``.

    Args:
        params: the perturbation variable(s).
        lr: step size in units of eps.
    """

    def __init__(self, params, lr: float):
        if lr <= 0:
            raise ValueError(f"SignGradient lr must be > 0, got {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
        return loss
