"""One registry for attacks: each method is a noise function, a start and a step limit.

The update rule is the config's optimiser (Adam for the paper's method, ``SignGradient`` for the
FGSM family), so every method shares the same models, regions, losses and metrics (DESIGN 7).
"""

from __future__ import annotations

from dataclasses import dataclass

from .noise import NOISE_FUNCTIONS, NoiseFunction


@dataclass(frozen=True)
class AttackSpec:
    """Args:
        noise: name in ``NOISE_FUNCTIONS``.
        init: ``"zeros"`` (delta = 0) or ``"uniform"`` (delta ~ U(-eps, eps), PGD's random start).
        max_steps: upper bound on steps (FGSM: 1), None = any.
    """

    noise: str
    init: str = "zeros"
    max_steps: int | None = None

    @property
    def noise_function(self) -> NoiseFunction:
        return NOISE_FUNCTIONS[self.noise]


ATTACKS: dict[str, AttackSpec] = {
    "tanh": AttackSpec("tanh"),          # the paper's method: eps * tanh(w)
    "sigmoid": AttackSpec("sigmoid"),    # eps * (2 sigmoid(w) - 1)
    "clip": AttackSpec("clip"),          # ablation: projected variable, same optimiser as tanh
    "fgsm": AttackSpec("clip", max_steps=1),
    "ifgsm": AttackSpec("clip"),
    "pgd": AttackSpec("clip", init="uniform"),
}
