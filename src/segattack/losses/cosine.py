"""``cosine``: the cosine loss of Halmosi, Mohos, Jelasity (ECCV 2024, "Evaluating the Adversarial
Robustness of Semantic Segmentation: Trying Harder Pays Off"), used with their projected Adam.

Per pixel ``1 - cos(p, e_t)`` between the softmax probabilities ``p`` and the one-hot vector of
class ``t``, i.e. ``1 - p_t / ||p||_2``: bounded in [0, 1], so no pixel dominates the mean however
confident it is, and it keeps a gradient on pixels already fooled (unlike a capped or masked
loss). On the probabilities, as CosPGD takes its cosine, so that lowering it raises ``p_t``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import LOSSES, Loss, safe_target


@LOSSES.register("cosine")
@dataclass(frozen=True)
class Cosine(Loss):
    def term(self, logits, inputs):
        p = logits.float().softmax(1)
        p_t = p.gather(1, safe_target(inputs.target)[:, None])[:, 0]
        return 1 - p_t / p.norm(dim=1).clamp(min=1e-12)
