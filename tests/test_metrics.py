"""Attack and IoU metrics on tiny hand-made maps whose answers are worked out in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from segattack.labels import IGNORE_INDEX
from segattack.metrics import AttackRates, JointRates, PerturbationSize, SegmentationIoU

T, F = True, False
IGN = IGNORE_INDEX


def maps(*rows):
    """A (1, H, W) int64 label map from rows."""
    return torch.tensor([list(rows)], dtype=torch.long)


def mask(*rows):
    """A (1, H, W) bool map from rows."""
    return torch.tensor([list(rows)], dtype=torch.bool)


def as_floats(result: dict) -> dict:
    return {k: float(v) for k, v in result.items()}


NAN = math.nan


def approx(expected: dict):
    """``pytest.approx`` where NaN (a rate with nothing to count) equals NaN."""
    return pytest.approx(expected, nan_ok=True)


# One 1x2x3 case shared by the AttackRates tests. Valid pixels in A: (0,0), (0,1), (0,2)
# ((1,1) is in A but ignored); valid pixels outside A: (1,0), (1,2).
TARGET = maps([0, 1, 2], [1, IGN, 0])
AREA = mask([T, T, T], [F, T, F])
CLEAN = maps([0, 1, 1], [1, 0, 0])
ADV = maps([1, 1, 1], [2, 2, 0])


def test_attack_rates_untargeted():
    m = AttackRates()
    m.update(CLEAN, ADV, TARGET, AREA)
    got = as_floats(m.compute())
    # adv wrong in A: (0,0) 1!=0, (0,2) 1!=2; (0,1) right -> 2/3.
    # clean wrong in A: (0,2) 1!=2 -> 1/3.
    # adv != clean in A: (0,0) only -> 1/3 (the ignored (1,1) also changed: not counted).
    # outside A: (1,0) 1->2 changed, (1,2) 0->0 kept -> 1/2.
    # clean right in A: (0,0), (0,1); of those adv wrong: (0,0) -> asr_on_correct 1/2.
    assert got == pytest.approx({"asr": 2 / 3, "clean_error_in_area": 1 / 3,
                                 "asr_on_correct": 1 / 2,
                                 "fooling_rate": 1 / 3, "collateral": 1 / 2})
    assert m.counts()["n_in"] == 3 and m.counts()["n_correct"] == 2


def test_attack_rates_targeted():
    # goal equals adv at the ignored pixel (1,1) and at (1,0) outside A: neither may count.
    goal = maps([1, 2, 2], [2, 2, 0])
    m = AttackRates(targeted=True)
    m.update(CLEAN, ADV, TARGET, AREA, goal)
    got = as_floats(m.compute())
    # adv == goal in A: (0,0) 1==1 only -> 1/3; clean [0,1,1] vs goal [1,2,2]: no hit -> 0.
    # fooling and collateral do not depend on the goal: 1/3 and 1/2 as untargeted.
    # Not at the goal before: all 3; at the goal after: (0,0) -> asr_on_correct 1/3.
    assert got == pytest.approx({"asr": 1 / 3, "clean_error_in_area": 0.0,
                                 "asr_on_correct": 1 / 3,
                                 "fooling_rate": 1 / 3, "collateral": 1 / 2})


def test_attack_rates_untargeted_ignores_goal():
    m = AttackRates()
    m.update(CLEAN, ADV, TARGET, AREA, maps([1, 2, 2], [2, 2, 0]))
    assert float(m.compute()["asr"]) == pytest.approx(2 / 3)


def test_attack_rates_ignored_pixels_count_nowhere():
    # Every pixel in A is ignored and every pixel changed: all four rates have denominator 0.
    target = maps([IGN, IGN], [IGN, 1])
    area = mask([T, T], [T, F])
    clean = maps([0, 0], [0, 1])
    adv = maps([1, 1], [1, 1])
    m = AttackRates()
    m.update(clean, adv, target, area)
    # Outside A only (1,1), unchanged -> collateral 0/1; nothing to count in A -> NaN, not 0.
    assert as_floats(m.compute()) == approx({"asr": NAN, "clean_error_in_area": NAN,
                                             "asr_on_correct": NAN, "fooling_rate": NAN,
                                             "collateral": 0.0})


def test_attack_rates_empty_area_is_nan_not_zero():
    m = AttackRates()
    m.update(CLEAN, ADV, TARGET, torch.zeros_like(AREA))
    got = as_floats(m.compute())
    # Nothing in A -> NaN. Outside A: the 5 valid pixels; changed (0,0), (1,0) -> 2/5.
    assert got == approx({"asr": NAN, "clean_error_in_area": NAN, "asr_on_correct": NAN,
                          "fooling_rate": NAN, "collateral": 2 / 5})
    assert m.counts()["n_in"] == 0 and m.counts()["n_out"] == 5


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_attack_rates_before_update_is_nan():
    assert all(math.isnan(v) for v in as_floats(AttackRates().compute()).values())


@pytest.mark.filterwarnings("ignore:The ``compute`` method")  # compute() right after reset()
def test_attack_rates_accumulate_counts_not_rates():
    m = AttackRates()
    m.update(CLEAN, ADV, TARGET, AREA)  # in A: 3 pixels, 2 adv successes, 1 clean, 1 changed
    zeros = maps([0, 0])
    m.update(zeros, zeros, zeros, mask([T, T]))  # in A: 2 pixels, nothing wrong or changed
    got = as_floats(m.compute())
    # Pooled: asr 2/5 (a mean of per-batch rates would give 1/3), clean 1/5, fooling 1/5;
    # outside A only the first batch: 1/2. Right before: 2 + 2, flipped 1 + 0 -> 1/4.
    assert got == pytest.approx({"asr": 2 / 5, "clean_error_in_area": 1 / 5,
                                 "asr_on_correct": 1 / 4,
                                 "fooling_rate": 1 / 5, "collateral": 1 / 2})
    m.reset()
    assert math.isnan(float(m.compute()["asr"]))


def test_attack_rates_batch_of_two():
    # The same two maps as one batch: B=2 needs equal H, W, so pad the second with ignored pixels.
    target = torch.cat([TARGET, maps([0, 0, IGN], [IGN, IGN, IGN])])
    area = torch.cat([AREA, mask([T, T, T], [T, T, T])])
    clean = torch.cat([CLEAN, maps([0, 0, 5], [5, 5, 5])])
    adv = torch.cat([ADV, maps([0, 0, 7], [7, 7, 7])])
    m = AttackRates()
    m.update(clean, adv, target, area)
    assert float(m.compute()["asr"]) == pytest.approx(2 / 5)


def test_attack_rates_bad_input():
    with pytest.raises(ValueError, match="goal"):
        AttackRates(targeted=True).update(CLEAN, ADV, TARGET, AREA)
    with pytest.raises(ValueError, match="adv_pred"):
        AttackRates().update(CLEAN, ADV[:, :1], TARGET, AREA)


# JointRates, K=2. Valid pixels in A: (0,0), (0,1), (0,2), (1,0); (1,1) is ignored, (1,2) outside.
J_TARGET = maps([0, 1, 2], [1, IGN, 0])
J_AREA = mask([T, T, T], [T, T, F])
J_ADV = torch.stack([maps([1, 1, 0], [0, 0, 1]), maps([0, 1, 0], [1, 0, 1])])  # (2, 1, 2, 3)


def test_joint_rates_untargeted():
    m = JointRates()
    m.update(J_ADV, J_TARGET, J_AREA)
    # Wrong in A, model a: (0,0) (0,2) (1,0); model b: (0,2).
    # Both: (0,2) -> 1/4; either: (0,0) (0,2) (1,0) -> 3/4. Both models are wrong at the
    # ignored (1,1) and the outside (1,2): counted, these would raise the rates.
    # Without clean predictions there is nothing to say about correct pixels: NaN.
    assert as_floats(m.compute()) == approx({"asr_all": 1 / 4, "asr_any": 3 / 4,
                                             "asr_all_on_correct": NAN})


def test_joint_rates_targeted():
    goal = maps([1, 1, 1], [1, 0, 1])  # both models hit it at the ignored and outside pixels
    m = JointRates(targeted=True)
    m.update(J_ADV, J_TARGET, J_AREA, goal)
    # Hits in A, model a [1,1,0 | 0]: (0,0) (0,1); model b [0,1,0 | 1]: (0,1) (1,0).
    # Both: (0,1) -> 1/4; either: (0,0) (0,1) (1,0) -> 3/4.
    assert as_floats(m.compute()) == approx({"asr_all": 1 / 4, "asr_any": 3 / 4,
                                             "asr_all_on_correct": NAN})


def test_joint_rates_accumulate_and_empty_area():
    m = JointRates()
    m.update(J_ADV, J_TARGET, torch.zeros_like(J_AREA))
    assert all(math.isnan(v) for v in as_floats(m.compute()).values())  # empty: NaN, not 0
    m.update(J_ADV, J_TARGET, J_AREA)
    m.update(J_ADV[:, :, :1, :1], maps([1]), mask([T]))  # (0,0): a 1==1 right, b 0!=1 wrong
    # Pooled over 5 pixels: all 1+0, any 3+1.
    assert as_floats(m.compute()) == approx({"asr_all": 1 / 5, "asr_any": 4 / 5,
                                             "asr_all_on_correct": NAN})


def test_joint_rates_bad_input():
    with pytest.raises(ValueError, match="K, B, H, W"):
        JointRates().update(J_ADV[0], J_TARGET, J_AREA)
    with pytest.raises(ValueError, match="goal"):
        JointRates(targeted=True).update(J_ADV, J_TARGET, J_AREA)


def test_perturbation_size():
    # Two 3x2x2 images (12 values each). Image 0 untouched; image 1 moves four values by 0.5
    # (two up to 1.0, two down to 0.0), all exact in float32.
    x = torch.full((2, 3, 2, 2), 0.5)
    x_adv = x.clone()
    x_adv[1, 0, 0, 0] = x_adv[1, 1, 1, 1] = 1.0
    x_adv[1, 2, 0, 1] = x_adv[1, 2, 1, 0] = 0.0
    m = PerturbationSize()
    m.update(x, x_adv)
    got = as_floats(m.compute())
    # linf 0.5. L2: image 0 -> 0, image 1 -> sqrt(4 * 0.25) = 1; mean 0.5.
    # PSNR: image 0 -> mse 0 clamped to 1e-10 -> 100 dB; image 1 -> mse 1/12 -> 10 log10(12).
    psnr1 = 10 * math.log10(12)  # 10.7918...
    assert got == pytest.approx({"linf": 0.5, "l2_mean": 0.5, "psnr_mean": (100 + psnr1) / 2})


def test_perturbation_size_zero_is_100db():
    x = torch.rand(3, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    m = PerturbationSize()
    m.update(x, x.clone())
    got = as_floats(m.compute())
    assert got == {"linf": 0.0, "l2_mean": 0.0, "psnr_mean": pytest.approx(100.0)}
    assert math.isfinite(got["psnr_mean"])


def test_perturbation_size_accumulates():
    x = torch.zeros(1, 3, 1, 2)  # 6 values per image
    m = PerturbationSize()
    m.update(x, x + 0.5)  # linf 0.5; l2 sqrt(6 * 0.25); mse 0.25 -> 10 log10(4)
    m.update(x, x + torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.25]).view(1, 3, 1, 2))
    # second: linf 0.25; l2 0.25; mse 0.0625 / 6 -> 10 log10(96)
    got = as_floats(m.compute())
    assert got == pytest.approx({
        "linf": 0.5,  # max over both updates, not the last one
        "l2_mean": (math.sqrt(1.5) + 0.25) / 2,
        "psnr_mean": (10 * math.log10(4) + 10 * math.log10(96)) / 2,
    })


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_perturbation_size_empty_and_bad_input():
    assert as_floats(PerturbationSize().compute()) == {"linf": 0.0, "l2_mean": 0.0,
                                                       "psnr_mean": 0.0}
    with pytest.raises(ValueError, match="B, C, H, W"):
        PerturbationSize().update(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 3))


def test_segmentation_iou():
    # C=4; class 3 appears in neither target nor prediction. (1,1) is ignored (its pred 2 would
    # add a false positive to class 2 if it counted).
    target = maps([0, 0, 1], [1, IGN, 0])
    pred = maps([0, 1, 1], [1, 2, 2])
    m = SegmentationIoU(num_classes=4)
    m.update(pred, target)
    got = m.compute()
    # class 0: tp (0,0); fn (0,1) (1,2) -> 1/3.  class 1: tp (0,2) (1,0); fp (0,1) -> 2/3.
    # class 2: fp (1,2) only -> 0/1 = 0 (present, so 0 not NaN).  class 3: empty union -> NaN.
    per_class = got["per_class"].tolist()
    assert per_class[:3] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert math.isnan(per_class[3])
    assert float(got["miou"]) == pytest.approx((1 / 3 + 2 / 3 + 0.0) / 3)  # NaN class left out
