"""The attack engine: noise functions, regions, the bound on delta, frozen models, effectiveness.

Bounds run every method x mode x region on a tiny random ENet (fast); effectiveness and the
frozen-model invariants use ENets trained for a few seconds on synthetic scenes (the
session fixture ``trained_weights``).
"""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from helpers import (
    NOISE_ONLY,
    NUM_CLASSES,
    ROOT,
    TRAIN_SIZE,
    make_module,
    quiet_trainer,
    run_module,
    synthetic,
    tiny_model,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch.nn import functional as F

from segattack.attacks.batch import AttackBatch
from segattack.attacks.regions import build_region
from segattack.errors import ConfigError
from segattack.files.weights import load_weights
from segattack.noise import NOISE_FUNCTIONS
from segattack.regions import BoxRegion, ClassRegion, FullRegion

TOL = 1e-6
SMALL = (32, 48)  # image size of the bounds tests (ENet needs multiples of 8)
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- noise functions ---------------------------------------------------------------------------
finite_or_huge = st.one_of(
    st.floats(-20, 20, allow_nan=False, width=32),
    st.floats(allow_nan=False, allow_infinity=True, width=32),  # includes +-3.4e38 and +-inf
    st.sampled_from([1e4, -1e4, 1e30, -1e30, 0.0, -0.0]),
)


@PROPS
@given(name=st.sampled_from(NOISE_FUNCTIONS.choices()),
       w=st.lists(finite_or_huge, min_size=1, max_size=64),
       eps=st.floats(min_value=1e-6, max_value=1.0, exclude_min=False))
def test_noise_is_bounded_by_eps(name, w, eps):
    g = NOISE_FUNCTIONS.build(name)(torch.tensor(w, dtype=torch.float32), eps)
    assert torch.isfinite(g).all(), (name, w, g)
    assert g.abs().max().item() <= eps * (1 + TOL) + 1e-12, (name, eps, g.abs().max().item())


@PROPS
@given(name=st.sampled_from(NOISE_FUNCTIONS.choices()),
       u=st.lists(st.floats(-1, 1, exclude_min=True, exclude_max=True, width=32),
                  min_size=1, max_size=64))
def test_noise_inverse_round_trips(name, u):
    fn = NOISE_FUNCTIONS.build(name)
    u = torch.tensor(u, dtype=torch.float32)
    w = fn.inverse(u)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(fn(w, 1.0), u, atol=2e-6, rtol=0)


@PROPS
@given(name=st.sampled_from(NOISE_FUNCTIONS.choices()),
       w=st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=32))
def test_project_keeps_delta_and_only_clamps_projected_variables(name, w):
    fn = NOISE_FUNCTIONS.build(name)
    w = torch.tensor(w)
    before = fn(w, 1.0)
    projected = w.clone()
    fn.project_(projected)
    # projection never changes the perturbation, only the variable behind it
    torch.testing.assert_close(fn(projected, 1.0), before, atol=0, rtol=0)
    if fn.projected:
        assert projected.abs().max() <= 1
    else:
        assert torch.equal(projected, w)


# --- regions -------------------------------------------------------------------------------------
@st.composite
def boxes(draw):
    H, W = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    h, w = draw(st.integers(1, H)), draw(st.integers(1, W))
    return (H, W), (h, w)


@PROPS
@given(box=boxes(), position=st.sampled_from(["center", "random"]), batch=st.integers(1, 4),
       seed=st.integers(0, 2**31))
def test_box_region_area_and_placement(box, position, batch, seed):
    (H, W), (h, w) = box
    region = BoxRegion((h, w), (H, W), position, seed=seed)
    labels = torch.zeros(batch, H, W, dtype=torch.long)
    origins = region.place(batch)
    assert origins.shape == (batch, 2)
    assert ((origins[:, 0] >= 0) & (origins[:, 0] <= H - h)).all()
    assert ((origins[:, 1] >= 0) & (origins[:, 1] <= W - w)).all()
    if position == "center":
        assert origins.tolist() == [[(H - h) // 2, (W - w) // 2]] * batch
    mask = region.mask(labels, origins)
    assert mask.shape == (batch, H, W) and mask.dtype == torch.bool
    assert mask.flatten(1).sum(1).tolist() == [h * w] * batch
    for i, (y, x) in enumerate(origins.tolist()):
        assert mask[i, y:y + h, x:x + w].all()
    # drawn without explicit origins: still the right area, still inside
    assert region.mask(labels).flatten(1).sum(1).tolist() == [h * w] * batch


@PROPS
@given(box=boxes(), oy=st.integers(-5, 100), ox=st.integers(-5, 100))
def test_fixed_box_origin_must_fit(box, oy, ox):
    (H, W), (h, w) = box
    if 0 <= oy <= H - h and 0 <= ox <= W - w:
        region = BoxRegion((h, w), (H, W), "fixed", (oy, ox))
        mask = region.mask(torch.zeros(2, H, W, dtype=torch.long))
        assert mask[:, oy:oy + h, ox:ox + w].all() and mask.flatten(1).sum(1).tolist() == [h * w] * 2
    else:
        with pytest.raises(ConfigError, match=r"region\.origin"):
            BoxRegion((h, w), (H, W), "fixed", (oy, ox))


@pytest.mark.parametrize("size", [(0, 5), (5, 0), (33, 5), (5, 49), (1000, 10)])
def test_box_larger_than_image_is_a_config_error(size):
    with pytest.raises(ConfigError, match=r"region\.size"):
        BoxRegion(size, SMALL)
    with pytest.raises(ConfigError, match=r"^area\.size"):
        build_region({"type": "box", "size": list(size)}, SMALL, NUM_CLASSES, key="area")


def _dilate_by_hand(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Square dilation of (B, H, W) by r pixels by shifting, the slow obvious way."""
    B, H, W = mask.shape
    padded = F.pad(mask, (r, r, r, r))
    out = torch.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[:, dy:dy + H, dx:dx + W]
    return out


@PROPS
@given(data=st.data(), H=st.integers(1, 24), W=st.integers(1, 24), dilate=st.integers(0, 3),
       classes=st.sets(st.integers(0, NUM_CLASSES - 1), min_size=1, max_size=3))
def test_class_region_dilation_contains_the_class_pixels(data, H, W, dilate, classes):
    values = st.sampled_from([*range(NUM_CLASSES), 255])
    labels = torch.tensor(data.draw(st.lists(st.lists(st.lists(values, min_size=W, max_size=W),
                                                      min_size=H, max_size=H),
                                             min_size=1, max_size=2)))
    plain = torch.isin(labels, torch.tensor(sorted(classes)))
    mask = ClassRegion(sorted(classes), NUM_CLASSES, dilate).mask(labels)
    assert mask.shape == labels.shape and mask.dtype == torch.bool
    assert torch.equal(mask & plain, plain)  # contains the undilated mask
    assert torch.equal(mask, _dilate_by_hand(plain, dilate))  # and is exactly its dilation
    assert torch.equal(ClassRegion(sorted(classes), NUM_CLASSES, 0).mask(labels), plain)


@pytest.mark.parametrize("cfg, match", [
    ({"type": "class", "classes": [5]}, r"region\.classes"),
    ({"type": "class", "classes": []}, r"region\.classes"),
    ({"type": "class", "classes": [1], "dilate": -1}, r"region\.dilate"),
    ({"type": "box"}, r"region\.size is required"),
    ({"type": "box", "size": [4, 4], "position": "left"}, r"region\.position"),
    ({"type": "ring"}, r"region\.type"),
])
def test_region_config_errors_name_the_key(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_region(cfg, SMALL, NUM_CLASSES)


# --- the bound: |delta| <= eps, delta = 0 outside R, x_adv in [0, 1] ---------------------------
EPS = 0.3  # large, so that the clamp to [0, 1] is active on bright and dark pixels
BOX = (12, 20)
BOX_ARGS = [f"region.size=[{BOX[0]},{BOX[1]}]"]
REGIONS = {  # name -> overrides of configs/attack.yaml
    "full": ["region=full"],
    "box_center": ["region=box", *BOX_ARGS, "region.position=center"],
    "box_random": ["region=box", *BOX_ARGS, "region.position=random", "seed=3"],
    "class": ["region=class", "region.classes=[4]", "region.dilate=1"],  # cars, grown by a pixel
}
# The methods: the options of the attack/ config group.
METHODS = sorted(p.stem for p in (ROOT / "configs" / "attack").glob("*.yaml"))
LAST_ITERATE = ["attack.best=false", "attack.early_stop=false"]
PER_IMAGE_ONLY = ("apgd", "ensemble")  # their steps follow each image's own progress
# Step sizes large enough that the bound is reached within the few steps.
BIG_LR = {"tanh": 2.0, "sigmoid": 3.0, "clip": 2.0}


def max_steps(method: str):
    return OmegaConf.load(ROOT / "configs" / "attack" / f"{method}.yaml").get("max_steps")


def attack_args(method: str, steps: int, eps: float = None, lr: float = None) -> list[str]:
    """Overrides for ``attack=<method>`` with ``steps`` (and eps, lr when given)."""
    args = [f"attack={method}", f"attack.steps={steps}"]
    if eps is not None:
        args.append(f"eps={eps!r}")
    if lr is not None:
        args.append(f"attack.optimizer.lr={lr}")
    return args


def record_origins(region):
    """Make a region remember every batch of placements it draws (boxes draw them)."""
    drawn = []
    if isinstance(region, BoxRegion):
        draw = region.place

        def place(batch):
            o = draw(batch)
            drawn.append(o)
            return o

        region.place = place
    return drawn


@pytest.fixture(scope="module")
def small_data():
    dm = synthetic(SMALL, num_train=4, num_val=3, batch_size=4)
    x, y = next(iter(dm.dataloader("val", train=False)))
    return dm, x, y


def check_delta(delta, rmask, eps, region, y, origins, reach: float = 0.9):
    """``delta`` bounded, zero outside the region, and the region is what it should be."""
    B, _, H, W = delta.shape
    assert rmask.shape == (B, H, W)
    if isinstance(region, FullRegion):
        assert rmask.all()
    elif isinstance(region, BoxRegion):
        assert rmask.flatten(1).sum(1).tolist() == [BOX[0] * BOX[1]] * B
        assert torch.equal(rmask, region.mask(y, origins))
    else:
        assert torch.equal(rmask, _dilate_by_hand(y == 4, 1))
    assert delta.abs().max() <= eps + TOL
    assert (delta * ~rmask[:, None]).abs().max() == 0, "delta is non-zero outside the region"
    # not vacuous: the attack moved, up to (nearly) the bound, inside R
    assert delta[rmask[:, None].expand_as(delta)].abs().max() >= reach * eps


@pytest.mark.parametrize("region_name", sorted(REGIONS))
@pytest.mark.parametrize("mode", ["universal", "per_image"])
@pytest.mark.parametrize("method", METHODS)
def test_perturbation_stays_in_bounds(method, mode, region_name, small_data):
    dm, x, y = small_data
    steps = max_steps(method) or 3
    if mode == "universal" and method in PER_IMAGE_ONLY:
        with pytest.raises(ConfigError, match="per_image"):
            make_module({"m": tiny_model(0)}, *attack_args(method, steps, EPS), f"mode={mode}",
                        *REGIONS[region_name], image_size=SMALL)
        return
    # the last iterate, all steps: the attack must move for the bound to mean something
    module = make_module({"m": tiny_model(0)}, *attack_args(method, steps, EPS, BIG_LR.get(method)),
                         f"mode={mode}", *REGIONS[region_name], *LAST_ITERATE, image_size=SMALL)
    region = module.spec.region
    drawn = record_origins(region)
    results = run_module(module, dm)

    # every evaluated image, as the metrics saw it
    assert len(module.evaluation.figure_samples) == 3
    moved = 0.0
    for s in module.evaluation.figure_samples:
        d = s["x_adv"] - s["image"]
        assert 0 <= s["x_adv"].min() and s["x_adv"].max() <= 1
        assert d.abs().max() <= EPS + TOL
        assert (d * ~s["area"]).abs().max() == 0, "x_adv differs from x outside the region"
        moved = max(moved, d.abs().max().item())
    assert moved > 0.5 * EPS
    assert 0.5 * EPS < results["perturbation"]["linf"] <= EPS + TOL

    # delta itself, before the clamp
    drawn.clear()
    rmask, placement = module.spec.region.placed_mask(y)
    if mode == "universal":
        assert module.universal_delta().abs().max() <= EPS + TOL
        with torch.no_grad():
            delta = module.perturbation.delta(module.w, rmask, placement)
    else:  # x + delta stays in [0, 1] by construction: x_adv - x is delta itself
        clean = module.objective.predict(x, ["m"])
        result = module.attack_batch(x, y, clean, rmask, placement, rmask, None)
        delta = result.x_adv - x
        assert 0 <= result.x_adv.min() and result.x_adv.max() <= 1
    # an ensemble keeps, per image, whichever member fooled most: not always one at the bound
    check_delta(delta, rmask, EPS, region, y, drawn[-1] if drawn else None,
                reach=0.3 if method == "ensemble" else 0.9)


RANDOM_BOX = ["region=box", *BOX_ARGS, "region.position=random", "seed=5"]


def test_universal_perturbation_is_shared_by_all_images(small_data):
    """Full region: one delta for every image; random boxes: one patch pasted at each box."""
    dm, x, y = small_data
    full = make_module({"m": tiny_model(0)}, *attack_args("tanh", 3, EPS, 1.0), "mode=universal",
                       "region=full", image_size=SMALL)
    run_module(full, dm)
    assert full.w.shape == (1, 3, *SMALL)
    with torch.no_grad():
        delta = full.perturbation.delta(full.w, *full.spec.region.placed_mask(y))
    assert delta.shape == (len(y), 3, *SMALL)
    for i in range(len(y)):
        assert torch.equal(delta[i], full.universal_delta()[0])
    # as applied in the evaluation: x_adv - x is that delta wherever no clamp was needed
    for s in full.evaluation.figure_samples:
        unclamped = ((s["image"] + delta[0]) > 0) & ((s["image"] + delta[0]) < 1)
        torch.testing.assert_close((s["x_adv"] - s["image"])[unclamped], delta[0][unclamped],
                                   atol=1e-6, rtol=0)

    patch_module = make_module({"m": tiny_model(0)}, *attack_args("tanh", 3, EPS, 1.0),
                               "mode=universal", *RANDOM_BOX, image_size=SMALL)
    drawn = record_origins(patch_module.spec.region)
    assert patch_module.w.shape == (1, 3, *BOX)
    run_module(patch_module, dm)
    patch = patch_module.universal_delta()[0]
    assert patch.shape == (3, *BOX) and patch.abs().max() > 0
    drawn.clear()
    with torch.no_grad():
        delta = patch_module.perturbation.delta(patch_module.w, *patch_module.spec.region.placed_mask(y))
    (origins,) = drawn
    assert len({tuple(o) for o in origins.tolist()}) > 1, "random boxes should move"
    for i, (oy, ox) in enumerate(origins.tolist()):
        assert torch.equal(delta[i, :, oy:oy + BOX[0], ox:ox + BOX[1]], patch)
        outside = delta[i].clone()
        outside[:, oy:oy + BOX[0], ox:ox + BOX[1]] = 0
        assert outside.abs().max() == 0  # nothing outside the box
    for s in patch_module.evaluation.figure_samples:  # the evaluation pasted it at each image's own box
        ys, xs = torch.nonzero(s["area"], as_tuple=True)
        oy, ox = int(ys.min()), int(xs.min())
        assert (int(ys.max()) - oy + 1, int(xs.max()) - ox + 1) == BOX
        crop = (slice(None), slice(oy, oy + BOX[0]), slice(ox, ox + BOX[1]))
        moved = s["image"][crop] + patch
        unclamped = (moved > 0) & (moved < 1)
        torch.testing.assert_close((s["x_adv"] - s["image"])[crop][unclamped], patch[unclamped],
                                   atol=1e-6, rtol=0)


def test_random_boxes_are_placed_per_image_index_at_evaluation(small_data):
    """The evaluation places random boxes by image index (``place_at``), not by continuing (or
    restarting) the fit's draws, so a second evaluation lands at the same places."""
    dm, x, y = small_data
    module = make_module({"m": tiny_model(0)}, *attack_args("tanh", 3, EPS, 1.0), "mode=universal",
                         *RANDOM_BOX, image_size=SMALL)
    region = module.spec.region
    drawn = record_origins(region)
    at = []
    place_at = region.place_at
    region.place_at = lambda index: at.append(place_at(index)) or at[-1]
    first = run_module(module, dm)
    assert len(drawn) == 3 and len(at) == 1  # three fit batches draw; the evaluation does not
    fresh = BoxRegion(BOX, SMALL, "random", seed=5)
    assert torch.equal(at[0], fresh.place_at(torch.arange(len(y))))
    assert not torch.equal(at[0], fresh.place(len(y)))  # not the fit's first places
    module.evaluation.reset()
    quiet_trainer().test(module, dataloaders=dm.dataloader("val", train=False), verbose=False)
    assert torch.equal(at[-1], at[-2])
    assert module.results() == first


def test_saved_perturbations_round_trip_and_are_checked(small_data, tmp_path):
    from segattack.attacks.loaded import load_perturbation
    from segattack.attacks.outputs import perturbation_metadata, perturbation_tensors
    from segattack.errors import WeightsError
    from segattack.files.perturbation import save_perturbation

    dm, x, y = small_data
    box = ["mode=universal", "region=box", *BOX_ARGS]
    patch = make_module({"m": tiny_model(0)}, *attack_args("pgd", 2, EPS), *box, image_size=SMALL)
    save_perturbation(tmp_path / "p.safetensors", perturbation_tensors(patch),
                      perturbation_metadata(patch.spec, dm))
    again = make_module({"m": tiny_model(0)}, *attack_args("pgd", 2, EPS), *box, image_size=SMALL)
    with torch.no_grad():
        again.w.zero_()
    load_perturbation(tmp_path / "p.safetensors", again)
    assert torch.equal(again.w, patch.w)
    other_size = make_module({"m": tiny_model(0)}, *attack_args("pgd", 2, EPS), "mode=universal",
                             "region=full", image_size=SMALL)
    with pytest.raises(WeightsError, match=r"shape \[1, 3, 12, 20\].*expected \[1, 3, 32, 48\]"):
        load_perturbation(tmp_path / "p.safetensors", other_size)
    other_method = make_module({"m": tiny_model(0)}, *attack_args("tanh", 2, EPS), *box,
                               image_size=SMALL)
    with pytest.raises(ConfigError, match=r"attack\.method='tanh'.*'pgd'"):
        load_perturbation(tmp_path / "p.safetensors", other_method)

    # per image with no figures kept: an empty stack, not a crash after all the work
    per_image = make_module({"m": tiny_model(0)}, *attack_args("tanh", 1, EPS), "region=full",
                            "num_figures=0", image_size=SMALL)
    run_module(per_image, dm)
    save_perturbation(tmp_path / "q.safetensors", perturbation_tensors(per_image), {})
    from safetensors.torch import load_file
    assert load_file(str(tmp_path / "q.safetensors"))["delta"].shape == (0, 3, *SMALL)
    with pytest.raises(WeightsError, match="not a universal perturbation"):
        load_perturbation(tmp_path / "q.safetensors", other_size)


# --- frozen models -------------------------------------------------------------------------------
def recording(factory, seen: list):
    """Wrap an optimiser factory so every parameter list it is given is kept."""

    def make(params):
        params = list(params)
        seen.append(params)
        return factory(params)

    return make


def frozen_state(module):
    return {k: v.clone() for k, v in module.models.state_dict().items()}


def assert_untouched(module, before):
    after = module.models.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"frozen model tensors changed: {changed[:5]}"
    assert all(p.grad is None for p in module.models.parameters())
    assert not any(m.training for m in module.models.modules())
    assert [n for n, p in module.named_parameters() if p.requires_grad] == (
        ["w"] if module.universal else [])


class EvalModeProbe(L.Callback):
    """At every training step: is the module training, and are its frozen models not?"""

    def __init__(self):
        self.checks = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.checks.append((pl_module.training,
                            any(m.training for m in pl_module.models.modules())))


def fresh_trained(trained_weights, *names):
    return {n: load_weights(trained_weights[n], expect_num_classes=NUM_CLASSES)[0] for n in names}


EFFECT_EPS = 16 / 255
STEPS = 20


def test_universal_fit_freezes_models_and_fools_them(trained_weights):
    models = fresh_trained(trained_weights, "enet")
    seen = []
    module = make_module(models, *attack_args("tanh", STEPS, EFFECT_EPS), "mode=universal",
                         "region=full",
                         optimizer=recording(functools.partial(torch.optim.Adam, lr=0.1), seen))
    before = frozen_state(module)
    assert_untouched(module, before)
    module.train()  # what Lightning does at fit start
    assert module.training and not any(m.training for m in module.models.modules())

    probe = EvalModeProbe()
    dm = synthetic(TRAIN_SIZE, num_train=16, num_val=8)
    # scored on the 16 images it was fitted on: what the fit achieved, not how far it generalises
    res = run_module(module, dm, eval_split="train", callbacks=[probe])

    assert len(probe.checks) == STEPS
    assert all(training and not models_training for training, models_training in probe.checks)
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0] is module.w
    assert_untouched(module, before)
    rates = res["per_model"]["enet"]
    # the baseline: one universal uniform-noise perturbation of the same eps, same images
    noise = run_module(make_module(fresh_trained(trained_weights, "enet"), *NOISE_ONLY,
                                   f"eps={EFFECT_EPS!r}", "mode=universal", "region=full"),
                       dm, eval_split="train")["per_model"]["enet"]
    print("universal tanh:", rates, "\nuniform noise:", noise)
    # measured on six fixture models (helpers.py; seeds 42, 7, 1, 2, 3 with 1 thread, 42 with 2):
    # asr - noise asr 0.058-0.257, fooling rate - noise's 0.134-0.298 (noise alone changes up to
    # 10% of the pixels); scored on val instead, the asr gain falls to 0.023 on one of eight
    # models, too small to test
    assert rates["asr"] > noise["asr"] + 0.03
    assert rates["fooling_rate"] > noise["fooling_rate"] + 0.06
    assert res["perturbation"]["linf"] <= EFFECT_EPS + TOL


def test_per_image_attack_freezes_models(trained_weights):
    models = fresh_trained(trained_weights, "enet")
    seen = []
    module = make_module(models, *attack_args("tanh", 3, EFFECT_EPS), "region=full",
                         optimizer=recording(functools.partial(torch.optim.Adam, lr=0.1), seen))
    before = frozen_state(module)
    dm = synthetic(TRAIN_SIZE, num_val=8, batch_size=4)
    run_module(module, dm)
    assert len(seen) == 2  # one optimiser per batch ...
    model_params = {id(p) for p in module.models.parameters()}
    for params in seen:  # ... that sees one fresh variable of the batch's shape, nothing else
        assert len(params) == 1 and params[0] is not module.w
        assert params[0].shape == (4, 3, *TRAIN_SIZE) and id(params[0]) not in model_params
    assert_untouched(module, before)


# --- effectiveness on a trained model ------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_data():
    return synthetic(TRAIN_SIZE, num_val=8)


# asr - clean error measured over the eight fixture models (helpers.py): tanh 0.243-0.397,
# pgd 0.374-0.496, fgsm 0.085-0.146; each margin is about half the smallest
@pytest.mark.parametrize("method, steps, margin", [
    ("tanh", STEPS, 0.12),
    ("pgd", 10, 0.18),
    ("fgsm", 1, 0.04),
])
def test_attack_raises_error_rate_on_trained_model(trained_models, eval_data, method, steps,
                                                   margin):
    module = make_module({"enet": trained_models["enet"]}, *attack_args(method, steps, EFFECT_EPS),
                         "region=full")
    res = run_module(module, eval_data)
    rates = res["per_model"]["enet"]
    print(method, rates)
    assert rates["asr"] > rates["clean_error_in_area"] + margin
    assert rates["adv_miou"] < rates["clean_miou"]
    assert res["perturbation"]["linf"] <= EFFECT_EPS + TOL


def test_targeted_attack_pushes_pixels_to_the_goal(trained_models, eval_data):
    """Targeted: asr is the share of pixels predicted as the goal class (sky, 40% when clean)."""
    module = make_module({"enet": trained_models["enet"]}, *attack_args("tanh", STEPS, EFFECT_EPS),
                         "region=full", "attack.targeted=true", "attack.target_class=0")
    res = run_module(module, eval_data)
    rates = res["per_model"]["enet"]
    print("targeted", rates)
    # asr - clean share of the goal, over the eight fixture models (helpers.py): 0.155-0.467
    assert rates["asr"] > rates["clean_error_in_area"] + 0.08


def test_joint_attack_fools_both_models(trained_models, eval_data):
    """K = 2: both models fooled; the second more than by transferring an attack on the first."""
    joint = make_module(dict(trained_models), *attack_args("tanh", STEPS, EFFECT_EPS), "region=full")
    assert joint.spec.source_models == ("enet", "enet2")
    res = run_module(joint, eval_data)
    single = make_module(dict(trained_models), *attack_args("tanh", STEPS, EFFECT_EPS), "region=full",
                         sources=["enet"])
    transfer = run_module(single, eval_data)["per_model"]["enet2"]
    print("joint", res, "\ntransfer enet -> enet2", transfer)
    # measured on four pairs of fixture models (helpers.py): asr - clean error 0.138-0.303 per
    # model; the joint attack over the transferred one on the second model 0.212-0.295
    for name in ("enet", "enet2"):
        rates = res["per_model"][name]
        assert rates["asr"] > rates["clean_error_in_area"] + 0.07, name
    assert res["per_model"]["enet2"]["asr"] > transfer["asr"] + 0.1
    asrs = [r["asr"] for r in res["per_model"].values()]
    assert res["joint"]["asr_all"] <= min(asrs) + 1e-6
    assert res["joint"]["asr_any"] >= max(asrs) - 1e-6


@pytest.mark.parametrize("keep_weight, norm_weight", [(0.0, 0.0), (1.0, 0.5)])
def test_per_model_backward_gives_the_gradient_of_the_summed_loss(keep_weight, norm_weight):
    """The per-image loop frees each model's graph before the next: same gradient on w."""
    models = {"a": tiny_model(0), "b": tiny_model(1), "c": tiny_model(2)}
    module = make_module(models, *attack_args("tanh", 1, 8 / 255), "region=full",
                         f"attack.keep_weight={keep_weight}", f"attack.norm_weight={norm_weight}",
                         "attack.lambdas={a: 1.0, b: 0.5, c: 2.0}")
    assert module.spec.lambdas == {"a": 1.0, "b": 0.5, "c": 2.0}
    objective = module.objective
    torch.manual_seed(0)
    x = torch.rand(2, 3, *TRAIN_SIZE)
    y = torch.randint(0, NUM_CLASSES, (2, *TRAIN_SIZE))
    area = torch.ones(2, *TRAIN_SIZE, dtype=torch.bool)
    clean = objective.predict(x, objective.source_models)
    batch = AttackBatch(x, y, area, None, area, None, clean)
    w0 = torch.randn(x.shape)
    grads, losses = [], []
    for per_model in (False, True):
        w = w0.clone().requires_grad_(True)
        x_adv, delta = module.perturbation.adversarial(x, w, area, None)
        if per_model:  # per-image losses, gradient of their sum
            losses.append(objective.backward(x_adv, batch, delta)[0].sum())
        else:  # the mean over the batch's images
            loss, _ = objective.loss(x_adv, batch, delta)
            (loss * len(x)).backward()
            losses.append(loss.detach() * len(x))
        grads.append(w.grad)
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)
