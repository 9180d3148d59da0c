"""Attack losses against hand-computed values."""

import math

import torch

from segattack.attacks.losses import masked_mean, model_loss


def test_masked_mean_of_an_empty_mask_is_zero():
    assert masked_mean(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool)) == 0


def test_untargeted_loss_is_minus_the_mean_cross_entropy_in_the_area():
    # Uniform logits over C = 4 classes: every pixel's CE is ln 4.
    logits = torch.zeros(1, 4, 2, 2)
    labels = torch.tensor([[[0, 1], [2, 255]]])
    area = torch.tensor([[[True, True], [False, True]]])  # the void pixel in A counts nowhere
    assert math.isclose(model_loss(logits, labels, area).item(), -math.log(4), rel_tol=1e-6)


def test_targeted_loss_pulls_towards_the_goal():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 2] = 5.0  # class 2 favoured everywhere
    labels = torch.tensor([[[0, 1]]])
    area = torch.ones(1, 1, 2, dtype=torch.bool)
    to_2 = model_loss(logits, labels, area, goal=torch.full((1, 1, 2), 2))
    to_0 = model_loss(logits, labels, area, goal=torch.zeros(1, 1, 2, dtype=torch.long))
    assert math.isclose(to_2.item(), -math.log(math.exp(5) / (math.exp(5) + 2)), rel_tol=1e-5)
    assert to_0 > to_2


def test_ce_max_stops_the_gradient_of_pixels_pushed_past_the_cap():
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 1, 0, 0] = 10.0  # pixel 0: label 0 is already far off (CE ~ 10); pixel 1: CE = ln 2
    logits.requires_grad_(True)
    labels = torch.zeros(1, 1, 2, dtype=torch.long)
    area = torch.ones(1, 1, 2, dtype=torch.bool)
    model_loss(logits, labels, area, ce_max=4.0).backward()
    assert logits.grad[0, :, 0, 0].abs().max() == 0   # capped: no more pull
    assert logits.grad[0, :, 0, 1].abs().max() > 0    # still pulled
