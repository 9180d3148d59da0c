"""Attack metrics: success and change rates over the attacked area A, and perturbation size.

States are integer counts or float64 sums reduced with ``sum``/``max``, so DDP processes sync
them before ``compute()`` divides.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from ..labels import IGNORE_INDEX


def _success(pred: torch.Tensor, target: torch.Tensor, goal: torch.Tensor | None,
             targeted: bool) -> torch.Tensor:
    """Untargeted: ``pred != target``; targeted: ``pred == goal``. Broadcasts a leading K."""
    return pred == goal if targeted else pred != target


def _check(target: torch.Tensor, area: torch.Tensor, goal: torch.Tensor | None, targeted: bool,
           **preds: torch.Tensor) -> None:
    """Raise on a missing goal or on (B, H, W) maps whose shape differs from ``target``'s."""
    if targeted and goal is None:
        raise ValueError("targeted metric needs a goal label map")
    maps = {"area": area, **preds, **({"goal": goal} if targeted else {})}
    for name, t in maps.items():
        if t.shape != target.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, target {tuple(target.shape)}")


def _rate(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` as float, 0.0 where ``den`` is 0 (nothing to measure)."""
    return (num.double() / den.clamp(min=1).double()).float()


class AttackRates(Metric):
    """Per-model attack rates over the attacked area A (docs/design.md, "Metrics").

    Pixels with target ``ignore_index`` count nowhere; a rate with no pixel to count is 0.0.

    - ``asr``: successes on ``adv_pred`` over valid pixels in A (untargeted success is
      ``pred != target``, targeted ``pred == goal``).
    - ``clean_error_in_area``: the same on ``clean_pred``.
    - ``fooling_rate``: ``adv_pred != clean_pred`` over valid pixels in A.
    - ``collateral``: ``adv_pred != clean_pred`` over valid pixels outside A.

    Args:
        targeted: score hits of ``goal`` instead of misses of ``target``.
        ignore_index: target value to skip (255).

    Shape:
        update(clean_pred, adv_pred, target (B, H, W) int, area (B, H, W) bool,
        goal (B, H, W) int, targeted only); compute() -> dict of () float tensors.
    """

    full_state_update = False

    def __init__(self, targeted: bool = False, ignore_index: int = IGNORE_INDEX, **kwargs):
        super().__init__(**kwargs)
        self.targeted = targeted
        self.ignore_index = ignore_index
        for name in ("n_in", "n_out", "adv_success", "clean_success", "changed_in",
                     "changed_out"):
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, clean_pred: torch.Tensor, adv_pred: torch.Tensor, target: torch.Tensor,
               area: torch.Tensor, goal: torch.Tensor | None = None) -> None:
        """Count one batch; ``goal`` is read only when ``targeted``."""
        _check(target, area, goal, self.targeted, clean_pred=clean_pred, adv_pred=adv_pred)
        valid = target != self.ignore_index
        inside = valid & area.bool()
        outside = valid & ~area.bool()
        changed = adv_pred != clean_pred
        self.n_in += inside.sum()
        self.n_out += outside.sum()
        self.adv_success += (_success(adv_pred, target, goal, self.targeted) & inside).sum()
        self.clean_success += (_success(clean_pred, target, goal, self.targeted) & inside).sum()
        self.changed_in += (changed & inside).sum()
        self.changed_out += (changed & outside).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        return {
            "asr": _rate(self.adv_success, self.n_in),
            "clean_error_in_area": _rate(self.clean_success, self.n_in),
            "fooling_rate": _rate(self.changed_in, self.n_in),
            "collateral": _rate(self.changed_out, self.n_out),
        }


class JointRates(Metric):
    """Joint success of K attacked models over valid pixels in A.

    ``asr_all``: share where every model succeeds at once; ``asr_any``: where at least one does.
    Success is as in :class:`AttackRates`; a rate with no pixel to count is 0.0.

    Args:
        targeted: score hits of ``goal`` instead of misses of ``target``.
        ignore_index: target value to skip (255).

    Shape:
        update(adv_preds (K, B, H, W) int, target (B, H, W) int, area (B, H, W) bool,
        goal (B, H, W) int, targeted only); compute() -> {"asr_all": (), "asr_any": ()}
    """

    full_state_update = False

    def __init__(self, targeted: bool = False, ignore_index: int = IGNORE_INDEX, **kwargs):
        super().__init__(**kwargs)
        self.targeted = targeted
        self.ignore_index = ignore_index
        for name in ("n_in", "all_success", "any_success"):
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, adv_preds: torch.Tensor, target: torch.Tensor, area: torch.Tensor,
               goal: torch.Tensor | None = None) -> None:
        """Count one batch of K models' adversarial predictions."""
        if adv_preds.dim() != 4 or adv_preds.shape[0] < 1:
            raise ValueError(f"adv_preds must be (K, B, H, W) with K >= 1, got "
                             f"{tuple(adv_preds.shape)}")
        _check(target, area, goal, self.targeted, adv_preds=adv_preds[0])
        inside = (target != self.ignore_index) & area.bool()
        success = _success(adv_preds, target, goal, self.targeted)
        self.n_in += inside.sum()
        self.all_success += (success.all(0) & inside).sum()
        self.any_success += (success.any(0) & inside).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        return {"asr_all": _rate(self.all_success, self.n_in),
                "asr_any": _rate(self.any_success, self.n_in)}


class PerturbationSize(Metric):
    """Size of the applied perturbation ``x_adv - x``.

    - ``linf``: max ``|x_adv - x|`` over everything seen.
    - ``l2_mean``: mean over images of the per-image L2 norm (over C, H, W).
    - ``psnr_mean``: mean over images of ``10 log10(1 / mse)`` for a [0, 1] range, with ``mse``
      clamped at 1e-10 so an untouched image scores 100 dB rather than inf.

    Means are 0.0 before any image is seen.

    Shape:
        update(x (B, C, H, W) float, x_adv (B, C, H, W) float);
        compute() -> {"linf": (), "l2_mean": (), "psnr_mean": ()}
    """

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("linf", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="max")
        self.add_state("l2_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("psnr_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, x: torch.Tensor, x_adv: torch.Tensor) -> None:
        """Add one batch of clean and adversarial images."""
        if x.shape != x_adv.shape or x.dim() != 4:
            raise ValueError(f"x and x_adv must both be (B, C, H, W), got {tuple(x.shape)} "
                             f"and {tuple(x_adv.shape)}")
        # float64 so small per-pixel differences survive the sums over C, H, W.
        delta = (x_adv.double() - x.double()).flatten(1)
        if delta.numel():  # max() of an empty batch raises
            self.linf = torch.maximum(self.linf, delta.abs().max())
        mse = delta.square().mean(1).clamp(min=1e-10)
        self.l2_sum += delta.square().sum(1).sqrt().sum()
        self.psnr_sum += (10 * torch.log10(1 / mse)).sum()
        self.n_images += delta.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        return {"linf": self.linf.float(),
                "l2_mean": _rate(self.l2_sum, self.n_images),
                "psnr_mean": _rate(self.psnr_sum, self.n_images)}
