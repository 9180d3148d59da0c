"""Halmosi et al.'s cosine loss against a hand-computed case."""

import pytest
import torch

from segattack.losses import LOSSES, LossInputs


def test_cosine_loss_is_one_minus_the_cosine_of_the_probabilities_to_the_label():
    logits = torch.tensor([0.0, 0.0, 0.0]).view(1, 3, 1, 1)  # p = (1/3, 1/3, 1/3): cos = 1/sqrt(3)
    inputs = LossInputs(labels=torch.tensor([[[1]]]), area=torch.ones(1, 1, 1, dtype=torch.bool))
    term = LOSSES.build("cosine").term(logits, inputs)
    assert term.item() == pytest.approx(1 - 3 ** -0.5)
    confident = LOSSES.build("cosine").term(torch.tensor([0.0, 50.0, 0.0]).view(1, 3, 1, 1), inputs)
    assert confident.item() == pytest.approx(0.0, abs=1e-6)  # p = e_t
