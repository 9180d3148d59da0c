"""SEA's masked spherical loss against a hand-computed case."""

import math

import pytest
import torch

from segattack.losses import LOSSES, LossInputs

# Two pixels, 3 classes, label 0. Pixel 0 is still right (logits 4, 0, 3), pixel 1 is already
# fooled (logits 0, 2, 0).
LOGITS = torch.tensor([[[[4.0, 0.0]], [[0.0, 2.0]], [[3.0, 0.0]]]])  # (1, 3, 1, 2)
LABELS = torch.zeros(1, 1, 2, dtype=torch.long)
AREA = torch.ones(1, 1, 2, dtype=torch.bool)


def test_margin_on_the_unit_sphere_of_the_pixels_not_yet_fooled():
    loss = LOSSES.build("masked_spherical")
    # pixel 0: z / |z| = (4, 0, 3) / 5 -> margin max(0, 0.6) - 0.8 = -0.2; pixel 1 is fooled:
    # weight 0. Untargeted: minus the mean over both pixels.
    assert loss(LOGITS, LossInputs(LABELS, AREA)).item() == pytest.approx(-(-0.2 + 0.0) / 2)
    # the scale of the logits does not matter, only their direction
    assert loss(7 * LOGITS, LossInputs(LABELS, AREA)).item() == pytest.approx(0.1)


def test_targeted_pulls_the_pixels_not_at_their_goal():
    loss = LOSSES.build("masked_spherical")
    goal = torch.full((1, 1, 2), 1)  # pixel 1 is at its goal (done); pixel 0: max(0.8, 0.6) - 0
    assert loss(LOGITS, LossInputs(LABELS, AREA, goal)).item() == pytest.approx((0.8 + 0.0) / 2)


def test_gradient_flows_through_the_direction_only():
    logits = LOGITS.clone().requires_grad_(True)
    LOSSES.build("masked_spherical")(logits, LossInputs(LABELS, AREA)).sum().backward()
    # norm detached: d/dz of -(u_2 - u_0) / 2 at pixel 0 is (+1/5, 0, -1/5) / 2; pixel 1: 0
    assert logits.grad[0, :, 0, 0].tolist() == pytest.approx([0.1, 0.0, -0.1])
    assert logits.grad[0, :, 0, 1].abs().max().item() == 0
    assert math.isfinite(logits.grad.sum().item())
