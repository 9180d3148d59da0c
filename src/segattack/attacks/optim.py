"""The sign methods' updates as torch optimisers: FGSM, I-FGSM and PGD (``SignGradient``), APGD."""

from __future__ import annotations

import math

import torch


class SignGradient(torch.optim.Optimizer):
    """``p <- p - lr * sign(g)``. With a unitless ``w`` (``delta = eps * f(w)``) the step in
    pixel units is ``lr * eps``: FGSM is ``lr=1, steps=1``; PGD is ``lr=2.5/steps``.

    ``g`` is the gradient, or with ``momentum`` mu > 0 MI-FGSM's accumulated direction (Dong et
    al. 2018) ``g <- mu g + grad / mean|grad|``, the mean per image (dim 0) so that images of a
    batch stay independent attacks.

    Args:
        params: the perturbation variable(s).
        lr: step size in units of eps.
        momentum: mu in [0, 1); 0 = plain signed steps.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0):
        if lr <= 0:
            raise ValueError(f"SignGradient lr must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SignGradient momentum must be in [0, 1), got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["momentum"] > 0:
                    scale = g.abs().flatten(1).mean(1).clamp(min=1e-30).view(-1, *[1] * (g.dim() - 1))
                    state = self.state[p]
                    if "direction" in state:  # in place: no temporary the size of w per step
                        state["direction"].mul_(group["momentum"]).addcdiv_(g, scale)
                    else:
                        state["direction"] = g / scale
                    g = state["direction"]
                p.add_(g.sign(), alpha=-group["lr"])
        return loss


class APGD(torch.optim.Optimizer):
    """APGD (Croce & Hein 2020) for an L-inf ball, per image, as a torch optimiser on ``w``.

    ``delta = eps * clamp(w, -1, 1)``, so ``w`` lives in [-1, 1] and the step size is in units of
    eps (``lr`` = the paper's 2 eps). Each step: ``z = P(w - eta sign(grad))``, then momentum
    ``w <- P(w + alpha (z - w) + (1 - alpha)(w - w_prev))`` (alpha 0.75; the first step is plain).
    At the checkpoints ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``
    of ``steps``, an image whose value fell in fewer than ``rho`` = 75% of the steps since the
    last checkpoint, or whose step size and best value did not change, halves its step size and
    restarts from its best point, stepping along the gradient it had there. ``step(value)`` takes
    the (B,) per-image values of the current ``w`` to minimise: the reference's loss; the attack
    loop passes its ``progress`` (minus the pixels fooled, ties broken by the loss) instead
    (``wants_progress``), since a masked loss rises as pixels are fooled.
    """

    wants_progress = True

    def __init__(self, params, lr: float = 2.0, steps: int = 100, alpha: float = 0.75, rho: float = 0.75):
        super().__init__(params, {"lr": lr})
        self.steps, self.alpha, self.rho = int(steps), alpha, rho
        marks, p = [0, 0.22], [0.0, 0.22]
        while p[-1] < 1:
            p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
            marks.append(p[-1])
        self.checkpoints = sorted({math.ceil(m * self.steps - 1e-9) for m in marks if 0 < m < 1})

    @torch.no_grad()
    def step(self, value: torch.Tensor):
        (w,) = [p for g in self.param_groups for p in g["params"]]
        lr = self.param_groups[0]["lr"]
        st = self.state[w]
        n = value.shape[0]
        view = (n, *[1] * (w.dim() - 1))
        if not st:
            st.update(k=0, eta=torch.full((n,), float(lr), device=w.device), best=value.clone(),
                      best_w=w.detach().clone(), best_grad=w.grad.detach().clone(),
                      prev_w=w.detach().clone(), prev=value.clone(),
                      decreases=torch.zeros(n, device=w.device), last_eta=None, last_best=None)
            st["last_eta"], st["last_best"] = st["eta"].clone(), value.clone()
        k = st["k"]
        grad = w.grad
        if k > 0:  # book-keeping of the value of the current w (reached by the previous update)
            st["decreases"] += (value < st["prev"]).float()
            better = value < st["best"]
            st["best_w"] = torch.where(better.view(view), w, st["best_w"])
            st["best_grad"] = torch.where(better.view(view), grad, st["best_grad"])
            st["best"] = torch.where(better, value, st["best"])
        if k in self.checkpoints:
            since = k - max([c for c in self.checkpoints if c < k], default=0)
            few = st["decreases"] < self.rho * since
            stuck = (st["last_eta"] == st["eta"]) & (st["last_best"] == st["best"])
            halve = few | stuck
            st["last_eta"], st["last_best"] = st["eta"].clone(), st["best"].clone()
            st["eta"] = torch.where(halve, st["eta"] / 2, st["eta"])
            w.copy_(torch.where(halve.view(view), st["best_w"], w))
            grad = torch.where(halve.view(view), st["best_grad"], grad)
            st["decreases"].zero_()
        eta = st["eta"].view(view)
        z = (w - eta * grad.sign()).clamp(-1, 1)
        current = w.detach().clone()
        if k == 0:
            new = z
        else:
            new = w + self.alpha * (z - w) + (1 - self.alpha) * (w - st["prev_w"])
        st["prev_w"], st["prev"] = current, value.clone()
        w.copy_(new.clamp(-1, 1))
        st["k"] = k + 1
        return None
