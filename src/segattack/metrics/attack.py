"""Attack metrics: success and change rates over the attacked area A, and perturbation size.

States are integer counts or float64 sums reduced with ``sum``/``max`` (per-image rows:
``cat``), so DDP processes sync them before ``compute()`` divides.
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
    """``num / den`` as float, NaN where ``den`` is 0 (nothing to count: metrics.json writes null)."""
    den = den.double()
    return torch.where(den > 0, num.double() / den.clamp(min=1), torch.nan).float()


def _mean(total: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """A mean over images, 0.0 before any image is seen."""
    return (total.double() / n.clamp(min=1).double()).float()


def _scored(target: torch.Tensor, area: torch.Tensor, has_goal: torch.Tensor | None,
            ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid pixels in A, the pixels of those whose success is scored: every one, or for a
    targeted attack the ones whose label has a goal)."""
    inside = (target != ignore_index) & area.bool()
    return inside, inside if has_goal is None else inside & has_goal.bool()


def _correct(pred: torch.Tensor, target: torch.Tensor, goal: torch.Tensor | None,
             targeted: bool) -> torch.Tensor:
    """Where the clean prediction leaves something to attack: untargeted, the pixel is right;
    targeted, it is not at its goal yet."""
    return ~_success(pred, target, goal, targeted)


# Per-pixel count names of AttackRates (and of its per-image rows, ``PER_IMAGE_FIELDS``).
RATE_COUNTS = ("n_in", "n_scored", "n_out", "adv_success", "clean_success", "n_correct",
               "flipped", "changed_in", "changed_out")
JOINT_COUNTS = ("n_scored", "all_success", "any_success", "n_correct_all", "flipped_all")


def attack_counts(clean_pred, adv_pred, target, area, goal, targeted, has_goal=None,
                  ignore_index: int = IGNORE_INDEX) -> dict[str, torch.Tensor]:
    """The counts of ``AttackRates`` per image: name -> (B,) long."""
    inside, scored = _scored(target, area, has_goal, ignore_index)
    outside = (target != ignore_index) & ~area.bool()
    changed = adv_pred != clean_pred
    adv_ok = _success(adv_pred, target, goal, targeted)
    correct = _correct(clean_pred, target, goal, targeted) & scored
    per_pixel = {"n_in": inside, "n_scored": scored, "n_out": outside,
                 "adv_success": adv_ok & scored,
                 "clean_success": _success(clean_pred, target, goal, targeted) & scored,
                 "n_correct": correct, "flipped": correct & adv_ok,
                 "changed_in": changed & inside, "changed_out": changed & outside}
    return {k: v.flatten(1).sum(1) for k, v in per_pixel.items()}


def joint_counts(clean_preds, adv_preds, target, area, goal, targeted, has_goal=None,
                 ignore_index: int = IGNORE_INDEX) -> dict[str, torch.Tensor]:
    """The counts of ``JointRates`` per image: name -> (B,) long. ``clean_preds`` may be None
    (then the on-correct counts are 0)."""
    _, scored = _scored(target, area, has_goal, ignore_index)
    success = _success(adv_preds, target, goal, targeted)
    per_pixel = {"n_scored": scored, "all_success": success.all(0) & scored,
                 "any_success": success.any(0) & scored}
    if clean_preds is not None:
        correct = _correct(clean_preds, target, goal, targeted).all(0) & scored
        per_pixel.update(n_correct_all=correct, flipped_all=correct & success.all(0))
    else:
        per_pixel.update(n_correct_all=scored & False, flipped_all=scored & False)
    return {k: v.flatten(1).sum(1) for k, v in per_pixel.items()}


def rates_from_counts(c: dict) -> dict[str, torch.Tensor]:
    """AttackRates' rates from its (summed) counts."""
    return {
        "asr": _rate(c["adv_success"], c["n_scored"]),
        "clean_error_in_area": _rate(c["clean_success"], c["n_scored"]),
        "asr_on_correct": _rate(c["flipped"], c["n_correct"]),
        "fooling_rate": _rate(c["changed_in"], c["n_in"]),
        "collateral": _rate(c["changed_out"], c["n_out"]),
    }


def joint_from_counts(c: dict) -> dict[str, torch.Tensor]:
    """JointRates' rates from its (summed) counts."""
    return {"asr_all": _rate(c["all_success"], c["n_scored"]),
            "asr_any": _rate(c["any_success"], c["n_scored"]),
            "asr_all_on_correct": _rate(c["flipped_all"], c["n_correct_all"])}


class AttackRates(Metric):
    """Per-model attack rates over the attacked area A (docs/method.md, "Metrics").

    Pixels with target ``ignore_index`` count nowhere; a rate with no pixel to count is NaN
    (null in metrics.json), never 0.

    Success is scored on the valid pixels of A that have a goal: all of them untargeted; for a
    targeted attack those where ``has_goal`` is true (the mapped classes of a ``target_map``;
    every pixel for a ``target_class``, i.e. ``has_goal=None``).

    - ``asr``: successes on ``adv_pred`` over the scored pixels (untargeted success is
      ``pred != target``, targeted ``pred == goal``).
    - ``clean_error_in_area``: the same on ``clean_pred`` (the floor asr starts from).
    - ``asr_on_correct``: among the scored pixels the clean prediction had right (targeted: not
      at the goal), the share that succeed on ``adv_pred``.
    - ``fooling_rate``: ``adv_pred != clean_pred`` over valid pixels in A.
    - ``collateral``: ``adv_pred != clean_pred`` over valid pixels outside A.

    ``counts()`` gives the pixel counts (``n_in``: valid pixels in A, ``n_scored``,
    ``n_correct``: the denominators of asr and asr_on_correct).

    Args:
        targeted: score hits of ``goal`` instead of misses of ``target``.
        ignore_index: target value to skip (255).

    Shape:
        update(clean_pred, adv_pred, target (B, H, W) int, area (B, H, W) bool,
        goal (B, H, W) int, targeted only; has_goal (B, H, W) bool or None);
        compute() -> dict of () float tensors.
    """

    full_state_update = False

    def __init__(self, targeted: bool = False, ignore_index: int = IGNORE_INDEX, **kwargs):
        super().__init__(**kwargs)
        self.targeted = targeted
        self.ignore_index = ignore_index
        for name in RATE_COUNTS:
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, clean_pred: torch.Tensor, adv_pred: torch.Tensor, target: torch.Tensor,
               area: torch.Tensor, goal: torch.Tensor | None = None,
               has_goal: torch.Tensor | None = None) -> None:
        """Count one batch; ``goal`` and ``has_goal`` are read only when ``targeted``."""
        _check(target, area, goal, self.targeted, clean_pred=clean_pred, adv_pred=adv_pred)
        counts = attack_counts(clean_pred, adv_pred, target, area, goal, self.targeted,
                               has_goal if self.targeted else None, self.ignore_index)
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value.sum())

    def counts(self) -> dict[str, int]:
        """The pixel counts, summed over DDP processes (every process must call it)."""
        with self.sync_context():
            return {name: int(getattr(self, name)) for name in RATE_COUNTS}

    def compute(self) -> dict[str, torch.Tensor]:
        return rates_from_counts({name: getattr(self, name) for name in RATE_COUNTS})


class JointRates(Metric):
    """Joint success of K attacked models over the scored pixels of A (as in
    :class:`AttackRates`).

    ``asr_all``: share where every model succeeds at once; ``asr_any``: where at least one does;
    ``asr_all_on_correct``: among the pixels every model had right before the attack
    (targeted: none at the goal), the share where every model succeeds (needs ``clean_preds``).
    A rate with no pixel to count is NaN (null in metrics.json).

    Args:
        targeted: score hits of ``goal`` instead of misses of ``target``.
        ignore_index: target value to skip (255).

    Shape:
        update(adv_preds (K, B, H, W) int, target (B, H, W) int, area (B, H, W) bool,
        goal (B, H, W) int, targeted only; clean_preds (K, B, H, W) int or None;
        has_goal (B, H, W) bool or None); compute() -> {"asr_all", "asr_any",
        "asr_all_on_correct"}: () tensors
    """

    full_state_update = False

    def __init__(self, targeted: bool = False, ignore_index: int = IGNORE_INDEX, **kwargs):
        super().__init__(**kwargs)
        self.targeted = targeted
        self.ignore_index = ignore_index
        for name in JOINT_COUNTS:
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, adv_preds: torch.Tensor, target: torch.Tensor, area: torch.Tensor,
               goal: torch.Tensor | None = None, clean_preds: torch.Tensor | None = None,
               has_goal: torch.Tensor | None = None) -> None:
        """Count one batch of K models' adversarial (and clean) predictions."""
        if adv_preds.dim() != 4 or adv_preds.shape[0] < 1:
            raise ValueError(f"adv_preds must be (K, B, H, W) with K >= 1, got "
                             f"{tuple(adv_preds.shape)}")
        _check(target, area, goal, self.targeted, adv_preds=adv_preds[0])
        if clean_preds is not None and clean_preds.shape != adv_preds.shape:
            raise ValueError(f"clean_preds has shape {tuple(clean_preds.shape)}, adv_preds "
                             f"{tuple(adv_preds.shape)}")
        counts = joint_counts(clean_preds, adv_preds, target, area, goal, self.targeted,
                              has_goal if self.targeted else None, self.ignore_index)
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value.sum())

    def counts(self) -> dict[str, int]:
        """The pixel counts, summed over DDP processes (every process must call it)."""
        with self.sync_context():
            return {name: int(getattr(self, name)) for name in JOINT_COUNTS}

    def compute(self) -> dict[str, torch.Tensor]:
        return joint_from_counts({name: getattr(self, name) for name in JOINT_COUNTS})


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
                "l2_mean": _mean(self.l2_sum, self.n_images),
                "psnr_mean": _mean(self.psnr_sum, self.n_images)}


def batch_asr(pred, y, area, goal, has_goal=None):
    """Share of valid pixels of the area where the attack succeeds in one batch (a tensor: no
    host sync), for progress bars and per-image tables.

    ``has_goal``: targeted, the pixels that have a goal (``AttackEvaluation.has_goal``); the others
    ask for nothing and are not scored, as in metrics.json (docs/method.md, "Metrics").
    """
    valid = area & (y != IGNORE_INDEX)
    if has_goal is not None:
        valid = valid & has_goal
    return (_success(pred, y, goal, goal is not None) & valid).sum() / valid.sum().clamp(min=1)
