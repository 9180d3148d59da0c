"""SEA's progressive radius reduction (``attack.progressive_radius``): the stages' radii and
steps, the final bound, and the stages really reaching beyond it."""

from __future__ import annotations

import pytest
import torch
from helpers import attack_spec, make_module, synthetic, tiny_model

from segattack.attacks import loop
from segattack.errors import ConfigError

EPS = 8 / 255
SMALL = (32, 48)


def test_stages_split_the_steps_and_shrink_the_ball():
    spec = attack_spec(["attack=apgd", "region=full", "attack.steps=10", "eps=8/255",
                        "attack.progressive_radius=true"])
    stages = loop.radius_stages(spec)
    assert [s.steps for s in stages] == [3, 3, 4]  # 30%, 30%, the rest
    assert [s.eps for s in stages] == pytest.approx([2 * EPS, 1.5 * EPS, EPS])
    assert [s.optimizer.keywords["steps"] for s in stages] == [3, 3, 4]  # APGD's checkpoints
    assert not any(s.progressive_radius for s in stages)
    short = loop.radius_stages(attack_spec(["attack=pgd", "region=full", "attack.steps=2",
                                            "attack.progressive_radius=true"]))
    assert [(s.steps, s.eps) for s in short] == [(2, pytest.approx(4 / 255))]  # no empty stage


@pytest.mark.parametrize("method", ["apgd", "pgd"])
def test_stages_reach_beyond_eps_and_the_result_stays_within_it(method, monkeypatch):
    dm = synthetic(SMALL, num_train=2, num_val=3, batch_size=4)
    x, y = next(iter(dm.dataloader("val", train=False)))
    module = make_module({"m": tiny_model(0)}, f"attack={method}", "region=full", "attack.steps=10",
                         "eps=8/255", "attack.progressive_radius=true", "attack.early_stop=false",
                         image_size=SMALL)
    reached, starts, results = [], [], []
    plain = loop.optimise_per_image

    def recording(spec, objective, perturbation, batch, *args, **kwargs):
        result = plain(spec, objective, perturbation, batch, *args, **kwargs)
        if not spec.progressive_radius:  # a stage
            start = kwargs["start"]
            starts.append(None if start is None else perturbation.adversarial(
                batch.x, perturbation.w_of(batch.x, start), batch.mask, batch.placement)[0] - batch.x)
            results.append(result.x_adv - batch.x)
            reached.append((spec.eps, results[-1].abs().max().item()))
        return result

    monkeypatch.setattr(loop, "optimise_per_image", recording)
    clean = module.objective.predict(x, ["m"])
    full = torch.ones_like(y, dtype=torch.bool)
    result = module.attack_batch(x, y, clean, full, None, full, None)
    assert [eps for eps, _ in reached] == pytest.approx([2 * EPS, 1.5 * EPS, EPS])
    assert reached[0][1] > 1.2 * EPS  # the first stage really used its larger ball
    assert all(moved <= eps + 1e-6 for eps, moved in reached)
    # each stage starts from the one before, projected onto its own ball
    assert starts[0] is None
    for i, eps in ((1, 1.5 * EPS), (2, EPS)):
        assert torch.allclose(starts[i], results[i - 1].clamp(-eps, eps), atol=1e-6)
    delta = result.x_adv - x
    assert delta.abs().max() <= EPS + 1e-6 and delta.abs().max() > 0.5 * EPS
    assert 0 <= result.x_adv.min() and result.x_adv.max() <= 1


def test_universal_mode_refuses_it():
    with pytest.raises(ConfigError, match="progressive_radius"):
        attack_spec(["attack=pgd", "mode=universal", "region=full", "attack.progressive_radius=true"])
