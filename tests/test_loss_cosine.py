"""Halmosi et al.'s cosine loss against a hand-computed case."""

import pytest
import torch

from segattack.losses import LOSSES, LossInputs


def test_cosine_loss_is_one_minus_the_cosine_to_the_label():
    logits = torch.tensor([3.0, 4.0, 0.0]).view(1, 3, 1, 1)
    inputs = LossInputs(labels=torch.tensor([[[1]]]), area=torch.ones(1, 1, 1, dtype=torch.bool))
    term = LOSSES.build("cosine").term(logits, inputs)
    assert term.item() == pytest.approx(1 - 4 / 5)
    # untargeted: minimising the loss moves the logits away from the label's direction
    z = logits.clone().requires_grad_(True)
    LOSSES.build("cosine")(z, inputs).sum().backward()
    assert z.grad[0, 1].item() > 0  # gradient descent lowers the label's logit
