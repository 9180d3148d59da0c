"""Attack losses against hand-computed values."""

import math

import pytest
import torch

from segattack.losses import LOSSES, LossInputs, per_image_mean
from segattack.losses.dlr import dlr
from segattack.losses.js import jensen_shannon
from segattack.losses.margin import margin


def model_loss(logits, labels, area, goal=None, loss="ce", step=0, steps=1, **settings):
    """(B,) the loss ``loss`` built with ``settings`` (``kappa``, ``ce_max``), as the attack calls it."""
    return LOSSES.build(loss, settings)(logits, LossInputs(labels, area, goal, step, steps))


def test_per_image_mean_of_an_empty_mask_is_zero():
    values = torch.ones(2, 3)
    mask = torch.tensor([[False] * 3, [True, False, True]])
    assert per_image_mean(values, mask).tolist() == [0.0, 1.0]


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


# Two pixels, 3 classes, label 0 everywhere. Pixel 0 is still right (logits 2, 0, 0), pixel 1 is
# already fooled (logits 0, 3, 0): CE = log(sum_j e^z_j) - z_0 at each.
LOGITS = torch.tensor([[[[2.0, 0.0]], [[0.0, 3.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
LABELS = torch.zeros(1, 1, 2, dtype=torch.long)
AREA = torch.ones(1, 1, 2, dtype=torch.bool)
CE0 = math.log(1 + 2 * math.exp(-2))           # right pixel
CE1 = math.log(2 + math.exp(3))                # fooled pixel


def loss_of(name, **kw):
    return model_loss(LOGITS, LABELS, AREA, loss=name, **kw).item()


def test_masked_ce_pulls_only_pixels_not_yet_fooled():
    assert loss_of("ce") == pytest.approx(-(CE0 + CE1) / 2, rel=1e-5)
    assert loss_of("masked_ce") == pytest.approx(-CE0 / 2, rel=1e-5)


def test_masked_ce_kappa_keeps_pulling_a_barely_fooled_pixel():
    # pixel 1 is fooled by a margin of 3: with kappa 5 it still pulls, with kappa 1 it is done
    assert loss_of("masked_ce", kappa=5.0) == pytest.approx(-(CE0 + CE1) / 2, rel=1e-5)
    assert loss_of("masked_ce", kappa=1.0) == pytest.approx(-CE0 / 2, rel=1e-5)
    # targeted to class 1: pixel 1 is at its goal by 3 logits, pixel 0 not (CE to class 1 each)
    goal = torch.ones(1, 1, 2, dtype=torch.long)
    to_1 = [math.log(math.exp(2) + 2), math.log(2 + math.exp(3)) - 3]
    assert model_loss(LOGITS, LABELS, AREA, goal=goal, loss="masked_ce", kappa=5.0).item() == \
        pytest.approx(sum(to_1) / 2, rel=1e-5)
    assert model_loss(LOGITS, LABELS, AREA, goal=goal, loss="masked_ce", kappa=1.0).item() == \
        pytest.approx(to_1[0] / 2, rel=1e-5)


@pytest.mark.parametrize("step, steps", [(0, 10), (5, 10), (10, 10)])
def test_segpgd_weights_fooled_pixels_by_lambda_t(step, steps):
    lam = step / (2 * steps)
    expected = -((1 - lam) * CE0 + lam * CE1) / 2
    assert loss_of("segpgd", step=step, steps=steps) == pytest.approx(expected, rel=1e-5)


def test_cospgd_weights_each_pixel_by_its_cosine_to_the_label():
    p = LOGITS.softmax(1)[0, :, 0]  # (3, 2)
    cos = p[0] / p.norm(dim=0)
    expected = -(cos[0] * CE0 + cos[1] * CE1).item() / 2
    assert loss_of("cospgd") == pytest.approx(expected, rel=1e-5)


def test_js_is_zero_at_the_one_hot_label_and_bounded_by_ln2():
    sure = torch.zeros(1, 3, 1, 1)
    sure[0, 0] = 50.0
    assert jensen_shannon(sure, torch.zeros(1, 1, 1, dtype=torch.long)).item() == pytest.approx(0, abs=1e-6)
    wrong = torch.zeros(1, 3, 1, 1)
    wrong[0, 1] = 50.0
    assert jensen_shannon(wrong, torch.zeros(1, 1, 1, dtype=torch.long)).item() == pytest.approx(math.log(2), rel=1e-4)


def test_margin_stops_at_the_decision_boundary():
    assert margin(LOGITS, LABELS)[0, 0].tolist() == [-2.0, 3.0]
    # untargeted: the fooled pixel (margin 3 > 0) is capped at 0 and pulls no more
    assert loss_of("margin") == pytest.approx(-(-2.0 + 0.0) / 2)
    # targeted to class 1: pixel 1 is done (capped at 0), pixel 0 has max_other - z_1 = 2 - 0
    goal = torch.ones(1, 1, 2, dtype=torch.long)
    assert model_loss(LOGITS, LABELS, AREA, goal=goal, loss="margin").item() == pytest.approx(1.0)


def test_dlr_is_the_margin_over_the_top_logit_spread():
    # pixel 0: margin -2, top-3 spread 2 - 0 = 2; pixel 1: margin 3, spread 3 - 0 = 3
    assert dlr(LOGITS, LABELS)[0, 0].tolist() == pytest.approx([-1.0, 1.0])
    assert torch.allclose(dlr(5 * LOGITS, LABELS), dlr(LOGITS, LABELS))  # scale-invariant
    assert loss_of("dlr") == pytest.approx(-(-1.0 + 0.0) / 2)  # the fooled pixel capped at kappa 0
    assert model_loss(LOGITS, LABELS, AREA, loss="dlr", kappa=0.5).item() == pytest.approx(-(-1.0 + 0.5) / 2)


def test_margin_kappa_keeps_pulling_a_barely_fooled_pixel():
    # pixel 1 is fooled by a margin of 3: with kappa 5 it still pulls (capped at 5, not 0)
    assert model_loss(LOGITS, LABELS, AREA, loss="margin", kappa=5.0).item() == pytest.approx(-(-2.0 + 3.0) / 2)
    # with kappa 1 it is past the cap: -(-2 + 1) / 2
    assert model_loss(LOGITS, LABELS, AREA, loss="margin", kappa=1.0).item() == pytest.approx(0.5)
    # targeted to class 1: pixel 1 is at its goal by 3 (max_other 0 - z_1 3 = -3), capped at -kappa
    goal = torch.ones(1, 1, 2, dtype=torch.long)
    assert model_loss(LOGITS, LABELS, AREA, goal=goal, loss="margin", kappa=1.0).item() == pytest.approx((2.0 - 1.0) / 2)


@pytest.mark.parametrize("step, steps, expected", [(0, 10, "masked_ce"), (4, 10, "masked_ce"),
                                                  (5, 10, "margin"), (0, 1, "margin")])
def test_ce_margin_is_masked_ce_for_the_first_half_then_the_margin(step, steps, expected):
    for kappa in (0.0, 5.0):  # both halves honour kappa
        value = loss_of("ce_margin", step=step, steps=steps, kappa=kappa)
        assert value == pytest.approx(loss_of(expected, kappa=kappa), rel=1e-5)


@pytest.mark.parametrize("name", LOSSES.choices())
def test_every_loss_pulls_towards_success(name):
    """One gradient step on the logits lowers the label's probability (untargeted) and raises
    the goal's (targeted), for every loss."""
    for goal in (None, torch.full((1, 1, 2), 2)):
        logits = LOGITS.clone().requires_grad_(True)
        model_loss(logits, LABELS, AREA, goal=goal, loss=name, step=1, steps=4).sum().backward()
        moved = (LOGITS - 0.1 * logits.grad.sign()).softmax(1)
        before = LOGITS.softmax(1)
        cls = 0 if goal is None else 2
        change = (moved[0, cls] - before[0, cls])[0, 0]  # pixel 0 is not done for either goal
        assert (change < 0) if goal is None else (change > 0), (name, goal)
