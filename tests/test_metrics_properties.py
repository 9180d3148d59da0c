"""Property tests for the attack metrics: random shapes, masks, ignore patterns and eps."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segattack.labels import IGNORE_INDEX
from segattack.metrics import AttackRates, JointRates, PerturbationSize

IGN = IGNORE_INDEX
SMALL = settings(max_examples=30, deadline=None)


@dataclass
class Case:
    """Random label maps for K models; ``target`` holds IGN where ``ignored``."""

    targeted: bool
    clean: torch.Tensor  # (K, B, H, W)
    adv: torch.Tensor  # (K, B, H, W)
    target: torch.Tensor  # (B, H, W)
    area: torch.Tensor  # (B, H, W) bool
    goal: torch.Tensor  # (B, H, W)
    ignored: torch.Tensor  # (B, H, W) bool


@st.composite
def cases(draw) -> Case:
    # Hypothesis picks sizes and densities; a seeded generator fills the tensors (fast to draw).
    k, b = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    classes = draw(st.integers(1, 4))
    p_ignore = draw(st.sampled_from([0.0, 0.3, 1.0]))
    p_area = draw(st.sampled_from([0.0, 0.5, 1.0]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))

    def labels(*shape):
        return torch.randint(classes, shape, generator=g)

    ignored = torch.rand(b, h, w, generator=g) < p_ignore
    target = labels(b, h, w).masked_fill(ignored, IGN)
    area = torch.rand(b, h, w, generator=g) < p_area
    return Case(draw(st.booleans()), labels(k, b, h, w), labels(k, b, h, w), target, area,
                labels(b, h, w), ignored)


def rates(case: Case) -> dict[str, float]:
    """AttackRates of every model and JointRates, flattened to one dict of floats."""
    out = {}
    for i in range(case.clean.shape[0]):
        m = AttackRates(targeted=case.targeted)
        m.update(case.clean[i], case.adv[i], case.target, case.area, case.goal)
        out.update({f"{i}/{k}": _plain(v) for k, v in m.compute().items()})
    joint = JointRates(targeted=case.targeted)
    joint.update(case.adv, case.target, case.area, case.goal, case.clean)
    out.update({f"joint/{k}": _plain(v) for k, v in joint.compute().items()})
    return out


def _plain(v) -> float | None:
    """A rate as a float; None where there is nothing to count (NaN)."""
    v = float(v)
    return None if math.isnan(v) else v


@SMALL
@given(cases())
def test_rates_are_in_unit_interval(case):
    got = rates(case)
    assert all(v is None or 0.0 <= v <= 1.0 for v in got.values()), got
    assert (got["joint/asr_all"] is None) == (got["joint/asr_any"] is None)
    if got["joint/asr_all"] is not None:
        assert got["joint/asr_all"] <= got["joint/asr_any"]


@SMALL
@given(cases(), st.integers(0, 2 ** 31 - 1))
def test_predictions_at_ignored_pixels_change_nothing(case, seed):
    g = torch.Generator().manual_seed(seed)

    def scramble(t):
        # Values outside the class range too, so every ignored pixel really changes.
        return torch.where(case.ignored, torch.randint(100, 200, t.shape, generator=g), t)

    scrambled = Case(case.targeted, scramble(case.clean), scramble(case.adv), case.target,
                     case.area, scramble(case.goal), case.ignored)
    assert rates(scrambled) == rates(case)


@SMALL
@given(cases())
def test_one_model_joint_equals_attack_rates_asr(case):
    single = Case(case.targeted, case.clean[:1], case.adv[:1], case.target, case.area, case.goal,
                  case.ignored)
    got = rates(single)
    assert got["joint/asr_all"] == got["joint/asr_any"] == got["0/asr"]


@SMALL
@given(cases())
def test_split_batches_equal_one_batch(case):
    whole = AttackRates(targeted=case.targeted)
    whole.update(case.clean[0], case.adv[0], case.target, case.area, case.goal)
    split = AttackRates(targeted=case.targeted)
    for j in range(case.target.shape[0]):
        s = slice(j, j + 1)
        split.update(case.clean[0, s], case.adv[0, s], case.target[s], case.area[s], case.goal[s])
    assert {k: float(v) for k, v in split.compute().items()} == pytest.approx(
        {k: float(v) for k, v in whole.compute().items()}, nan_ok=True)


images = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5),
                   st.integers(0, 2 ** 31 - 1))
eps_values = st.floats(1e-3, 0.5)


@SMALL
@given(images, eps_values)
def test_linf_at_most_the_raw_delta(shape, eps):
    b, h, w, seed = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h, w, generator=g)
    delta = (torch.rand(b, 3, h, w, generator=g) * 2 - 1) * eps
    x_adv = (x + delta).clamp(0, 1)  # clamping can only shrink the applied perturbation
    m = PerturbationSize()
    m.update(x, x_adv)
    got = m.compute()
    assert float(got["linf"]) <= float(delta.abs().max()) + 1e-6
    assert float(got["l2_mean"]) >= 0.0
    assert 0.0 < float(got["psnr_mean"]) <= 100.0 + 1e-4


@SMALL
@given(images, eps_values)
def test_linf_equals_eps_of_one_moved_pixel(shape, eps):
    b, h, w, seed = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h, w, generator=g)
    x_adv = x.clone().flatten()
    i = int(torch.randint(x_adv.numel(), (1,), generator=g))
    # Up if that stays in [0, 1], else down: x > 1 - eps >= eps when eps <= 0.5.
    x_adv[i] = x_adv[i] + eps if x_adv[i] + eps <= 1 else x_adv[i] - eps
    m = PerturbationSize()
    m.update(x, x_adv.view_as(x))
    # float32 inputs round x +- eps, hence the tolerance.
    assert float(m.compute()["linf"]) == pytest.approx(eps, abs=1e-6)
