"""What makes attacks strong: no pixel frozen by the clamp, the best iterate kept, early stop,
step-size schedules, APGD's step halving, the worst case of an ensemble, the loss registry."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers import (
    NUM_CLASSES,
    ROOT,
    TRAIN_SIZE,
    Conv,
    attack_spec,
    batch,
    conv_attack,
    make_module,
    quiet_trainer,
    run_module,
    synthetic,
    tiny_model,
)

from segattack.attacks import loop
from segattack.attacks.batch import AttackBatch
from segattack.attacks.loop import BestIterate, progress
from segattack.attacks.optim import APGD, SignGradient
from segattack.attacks.perturbation import Perturbation
from segattack.errors import ConfigError
from segattack.files.weights import save_weights
from segattack.losses import LOSSES
from segattack.noise import NOISE_FUNCTIONS
from segattack.regions import FullRegion
from segattack.schedules import SCHEDULES

EPS = 8 / 255


def saturated_batch():
    """Images whose pixels are mostly at 0 or 1, where a clamp would bite."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=g)
    x[:, :, :4] = 0.0
    x[:, :, 4:6] = 1.0
    return x


@pytest.mark.parametrize("noise", NOISE_FUNCTIONS.choices())
def test_projected_per_image_perturbation_keeps_x_adv_valid_and_every_gradient(noise):
    x = saturated_batch()
    pert = Perturbation(NOISE_FUNCTIONS.build(noise), EPS, "uniform", FullRegion())
    w = pert.initial_w(x.shape, torch.Generator().manual_seed(1))
    pert.project_(w, pert.feasible_bounds(x))
    w.requires_grad_(True)
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    x_adv, delta = pert.adversarial(x, w, mask, None)
    assert 0 <= x_adv.min() and x_adv.max() <= 1
    torch.testing.assert_close(x_adv - x, delta, atol=1e-6, rtol=0)  # the clamp does not bite
    assert delta.abs().max() <= EPS + 1e-7
    (x_adv * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
    frozen = (w.grad == 0).float().mean().item()
    assert frozen == 0, f"{frozen:.1%} of pixel-channels get no gradient"


def test_universal_clamp_passes_the_gradient_through():
    x = saturated_batch()
    pert = Perturbation(NOISE_FUNCTIONS.build("clip"), EPS, "zeros", FullRegion())
    w = torch.full((1, 3, 8, 8), 1.0, requires_grad=True)  # delta = +eps everywhere
    x_adv, _ = pert.adversarial(x, w, torch.ones(2, 8, 8, dtype=torch.bool), None)
    assert x_adv.max() == 1 and torch.equal(x_adv, (x + EPS).clamp(0, 1))  # value: the clamp
    x_adv.sum().backward()
    assert (w.grad != 0).all(), "saturated pixels must still pass a gradient to the shared w"


def test_best_iterate_keeps_each_images_best_and_counts_steps_to_full_success():
    valid = torch.ones(2, 1, 4, dtype=torch.bool)
    tracker = BestIterate(torch.zeros(2, 1, 1, 4), valid)
    seq = [torch.tensor([[[1, 0, 0, 0]], [[1, 1, 0, 0]]]), torch.tensor([[[1, 1, 1, 1]], [[1, 0, 0, 0]]]),
           torch.tensor([[[0, 0, 0, 0]], [[1, 1, 1, 0]]])]
    for step, success in enumerate(seq):
        w = torch.full((2, 1, 1, 4), float(step))
        done = tracker.update(w, success.bool(), step)
    assert tracker.count.tolist() == [4, 3]
    assert tracker.w[:, 0, 0, 0].tolist() == [1.0, 2.0]  # image 0 best at step 1, image 1 at 2
    assert done.tolist() == [True, False] and tracker.steps_used.tolist() == [1, -1]
    assert tracker.last.tolist() == [0, 3]  # the last iterate's count (a best=false ensemble member)


def test_best_iterate_without_keep_w_counts_the_same_and_copies_nothing():
    valid = torch.ones(1, 1, 4, dtype=torch.bool)
    tracker = BestIterate(torch.zeros(1, 1, 1, 4), valid, keep_w=False)
    for step, success in enumerate([[[1, 1, 0, 0]], [[1, 0, 0, 0]]]):
        tracker.update(torch.full((1, 1, 1, 4), float(step)), torch.tensor([success]).bool(), step)
    assert tracker.w is None
    assert tracker.count.tolist() == [2] and tracker.last.tolist() == [1]


class AlwaysWrong(torch.nn.Module):
    """Predicts class 0 everywhere whatever the input; counts its calls."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        logits = torch.zeros(x.shape[0], NUM_CLASSES, *x.shape[2:]) + 0 * x.mean() * self.scale
        logits[:, 0] = 5.0
        return logits


def test_early_stop_ends_a_batch_whose_pixels_are_all_fooled():
    """Labels never 0: every pixel is wrong from the start, so the loop stops at step 0."""
    model = AlwaysWrong()
    dm = synthetic(TRAIN_SIZE, num_val=4, batch_size=4)
    module = make_module({"m": model}, "attack=pgd", "attack.steps=20", "region=full")
    x, y = next(iter(dm.dataloader("val", train=False)))
    y = y.clamp(min=1)  # 255 stays 255
    clean = {"m": model(x).argmax(1)}
    model.calls = 0
    mask = torch.ones_like(y, dtype=torch.bool)
    result = module.attack_batch(x, y, clean, mask, None, mask, None)
    assert model.calls == 1 and result.steps_used.tolist() == [0] * 4
    module = make_module({"m": model}, "attack=pgd", "attack.steps=20", "region=full", "attack.early_stop=false")
    model.calls = 0
    result = module.attack_batch(x, y, clean, mask, None, mask, None)
    assert model.calls == 21 and result.steps_used.tolist() == [0] * 4  # 20 steps + the last one scored
    # Last iterate, no early stop (experiment=paper_plain's loop): the evaluation scores x_adv,
    # so the loop does not run the models once more for it.
    module = make_module({"m": model}, "attack=pgd", "attack.steps=20", "region=full",
                         "attack.early_stop=false", "attack.best=false")
    model.calls = 0
    result = module.attack_batch(x, y, clean, mask, None, mask, None)
    assert model.calls == 20 and result.count is None


@pytest.mark.parametrize("name, expected", [
    ("constant", [1, 1, 1, 1]), ("cosine", [1, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]),
    ("step", [1, 1, 0.1, 0.01])])
def test_schedules(name, expected):
    assert [SCHEDULES.build(name).factor(s, 4) for s in range(4)] == pytest.approx(expected)


def test_universal_fit_follows_the_schedule():
    """The universal fit steps its optimiser's lr by the same factors as the per-image loop."""
    seen = []

    class LrProbe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    module = make_module({"m": tiny_model(0)}, "attack=pgd", "attack.optimizer.lr=0.5", "attack.steps=4",
                         "attack.schedule=cosine", "mode=universal", "region=full")
    quiet_trainer(4, [LrProbe()]).fit(module, train_dataloaders=synthetic(batch_size=2).dataloader(
        "train", shuffle=True, train=False))
    assert seen == pytest.approx([0.5 * SCHEDULES.build("cosine").factor(s, 4) for s in range(4)])
    assert seen[-1] < seen[0]


def test_apgd_checkpoints_and_step_halving():
    assert APGD([torch.zeros(1, requires_grad=True)], steps=100).checkpoints == [22, 41, 57, 70, 80, 87, 93, 99]
    # a loss that never improves: every checkpoint halves the step size and restarts from the best
    w = torch.zeros(2, 3, requires_grad=True)
    opt = APGD([w], lr=2.0, steps=10)
    for k in range(10):
        w.grad = torch.ones_like(w)
        opt.step(torch.ones(2))
        assert w.abs().max() <= 1
    eta = opt.state[w]["eta"]
    reached = [c for c in opt.checkpoints if c < 10]  # steps 0..9
    assert eta.tolist() == [2.0 / 2 ** len(reached)] * 2


def test_apgd_restarts_from_its_best_point_along_the_gradient_it_had_there():
    # lr 0.5, checkpoints of 10 steps: 3, 5, ... The loss is best at step 1 (gradient -1 there),
    # then worse (gradient +1); at checkpoint 3 only one of three steps decreased the loss, so
    # the step halves to 0.25 and w restarts from -0.5 (step 1's point) along step 1's gradient:
    # z = -0.5 + 0.25 = -0.25, w = -0.5 + 0.75 (z + 0.5) + 0.25 (-0.5 - (-0.25)) = -0.375
    # (along the current gradient instead it would be -0.75).
    w = torch.zeros(1, 2, requires_grad=True)
    opt = APGD([w], lr=0.5, steps=10)
    trace = []
    for loss, g in ((1.0, 1.0), (0.5, -1.0), (2.0, 1.0), (3.0, 1.0)):
        w.grad = torch.full_like(w, g)
        opt.step(torch.tensor([loss]))
        trace.append(w.detach()[0, 0].item())
    assert trace == pytest.approx([-0.5, -0.25, -0.5625, -0.375])
    assert opt.state[w]["eta"].tolist() == [0.25]


def test_progress_counts_fooled_pixels_before_the_loss():
    # one more pixel fooled beats any loss; at equal counts the lower loss is further
    value = progress(torch.tensor([5, 5, 6, 6]), torch.tensor([-1.0, -2.0, 50.0, -50.0]))
    assert value[3] < value[2] < value[1] < value[0]
    assert (value + torch.tensor([5, 5, 6, 6])).abs().max() <= 0.25


def test_the_loop_hands_apgd_the_pixels_fooled(monkeypatch):
    # APGD must see each step's success count (a masked loss rises as pixels are fooled, so
    # stepping by it halves the step and restarts from the least fooled point): at every step
    # the value it gets is minus the pixels fooled at the current w, within a quarter pixel.
    seen, counts = [], []
    record = APGD.step

    def recording(self, value):
        seen.append(value.clone())
        return record(self, value)

    update = BestIterate.update

    def counting(self, w, success, step):
        done = update(self, w, success, step)
        counts.append(self.last.clone())
        return done

    monkeypatch.setattr(APGD, "step", recording)
    monkeypatch.setattr(BestIterate, "update", counting)
    module = conv_attack(Conv(), "per_image", "attack.loss=masked_ce", "attack.optimizer.lr=2.0",
                         steps=6, method="apgd")
    x, y = batch()
    mask = torch.ones_like(y, dtype=torch.bool)
    loop.optimise_per_image(module.spec, module.objective, module.perturbation,
                            AttackBatch(x, y, mask, None, mask), module.generator)
    assert len(seen) == 6 and max(c.max().item() for c in counts) > 0
    for value, count in zip(seen, counts):
        assert (value + count).abs().max() <= 0.25


def test_sign_momentum_accumulates_normalised_gradients_per_image():
    # image 0: gradients (1, 1) then (-1, 3) (mean |g| 1, then 2: normalised (-0.5, 1.5)); with
    # mu 0.75 the direction is (0.25, 2.25), so both entries step down again; without momentum
    # the first steps back up. Image 1 has 1000x the gradients: each image is normalised alone.
    grads = [torch.tensor([[1.0, 1.0], [1e3, 1e3]]), torch.tensor([[-1.0, 3.0], [-1e3, 3e3]])]
    for mu, expected in ((0.75, [-0.2, -0.2]), (0.0, [0.0, -0.2])):
        w = torch.zeros(2, 2, requires_grad=True)
        opt = SignGradient([w], lr=0.1, momentum=mu)
        for g in grads:
            w.grad = g.clone()
            opt.step()
        for row in w.detach().tolist():
            assert row == pytest.approx(expected)
    with pytest.raises(ValueError, match="momentum"):
        SignGradient([w], lr=0.1, momentum=1.0)


def test_every_loss_and_apgd_raise_the_error_of_a_trained_model(trained_models):
    data = synthetic(TRAIN_SIZE, num_val=8)
    model = {"enet": trained_models["enet"]}
    for overrides in (["attack=tanh", "attack.loss=masked_ce"], ["attack=pgd", "attack.loss=segpgd"],
                      ["attack=tanh", "attack.loss=js"], ["attack=apgd", "attack.loss=margin"],
                      ["attack=pgd", "attack.loss=cospgd"]):
        res = run_module(make_module(model, *overrides, "attack.steps=5", "eps=16/255", "region=full"), data)
        rates = res["per_model"]["enet"]
        # asr - clean error over the eight fixture models (helpers.py): 0.168 (js, the weakest)
        # to 0.384 (cospgd, the strongest)
        assert rates["asr"] > rates["clean_error_in_area"] + 0.08, overrides
        assert res["perturbation"]["linf"] <= 16 / 255 + 1e-6
        assert 0 <= res["steps_per_image"] <= 5


def test_best_iterate_is_never_worse_than_the_last(trained_models):
    data = synthetic(TRAIN_SIZE, num_val=8)
    model = {"enet": trained_models["enet"]}
    args = ["attack=ifgsm", "attack.steps=4", "eps=16/255", "region=full", "attack.early_stop=false",
            "attack.optimizer.lr=1.5"]  # big signed steps oscillate: the last iterate is not the best
    last = run_module(make_module(model, *args, "attack.best=false"), data)["per_model"]["enet"]["asr"]
    best = run_module(make_module(model, *args, "attack.best=true"), data)["per_model"]["enet"]["asr"]
    assert best >= last


def test_ensemble_is_the_worst_case_of_its_members(trained_models):
    data = synthetic(TRAIN_SIZE, num_val=8)
    model = {"enet": trained_models["enet"]}
    members = "attack.members=[{attack: tanh, loss: ce},{attack: ifgsm, loss: js}]"
    common = ["attack.steps=2", "eps=4/255", "region=full", "attack.early_stop=false"]
    ens = run_module(make_module(model, "attack=ensemble", members, *common), data)
    singles = [run_module(make_module(model, *m, *common), data)["per_model"]["enet"]["asr"]
               for m in (["attack=tanh", "attack.loss=ce"], ["attack=ifgsm", "attack.loss=js"])]
    assert ens["per_model"]["enet"]["asr"] >= max(singles) - 1e-6
    assert ens["steps_per_image"] == pytest.approx(4)  # both members' steps


@pytest.mark.parametrize("overrides, match", [
    (["attack.loss=hinge"], r"attack\.loss='hinge': expected one of \["),
    (["attack.schedule=linear"], r"attack\.schedule"),
    (["attack.best=maybe"], r"attack\.best"),
    (["attack=apgd", "mode=universal"], r"attack=apgd runs per image"),
    (["attack=ensemble", "mode=universal"], r"per_image"),
    (["attack=ensemble", "attack.members=[{attack: nope}]"], r"attack\.members: attack='nope'"),
])
def test_attack_strength_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        attack_spec(["region=full", *overrides])


def test_paper_plain_experiment_is_the_papers_setting():
    spec = attack_spec(["experiment=paper_plain", "region=full"])
    assert (spec.method, spec.loss, spec.best, spec.early_stop, spec.schedule.name) == (
        "tanh", LOSSES.build("ce"), False, False, "constant")
    assert spec.optimizer.func is torch.optim.Adam and spec.optimizer.keywords["lr"] == 0.6


def test_pgd_default_and_the_classical_pgd_of_the_baselines():
    spec = attack_spec(["attack=pgd", "region=full", "attack.steps=10"])
    assert (spec.loss, spec.schedule.name, spec.init) == (LOSSES.build("margin", {"kappa": 1.0}), "cosine", "uniform")
    assert spec.optimizer.keywords["lr"] == 1.0  # the first step is eps, whatever the steps
    assert spec.optimizer.keywords["momentum"] == 0.5
    classic = attack_spec(["experiment=paper_baselines", "attack=pgd", "attack.steps=10",
                           'attack.optimizer.lr="${div:2.5,${attack.steps}}"', "attack.optimizer.momentum=0"],
                          image_size=(360, 480))
    assert (classic.loss, classic.schedule.name) == (LOSSES.build("ce"), "constant")
    assert classic.optimizer.keywords["lr"] == pytest.approx(0.25)  # Madry et al.: 2.5 eps / steps
    assert classic.optimizer.keywords["momentum"] == 0
    mifgsm = attack_spec(["attack=ifgsm", "region=full", "attack.optimizer.momentum=0.9"])
    assert mifgsm.optimizer.keywords["momentum"] == 0.9  # I-FGSM's key exists: MI-FGSM by one override


def test_pgd_default_loss_follows_the_models_threat_model(tmp_path):
    """loss=auto: the margin on clean models, the masked CE (kappa 1) as soon as one source
    model's weights record adversarial training; a loss given by hand wins."""
    margin, masked_ce = LOSSES.build("margin", {"kappa": 1.0}), LOSSES.build("masked_ce", {"kappa": 1.0})
    assert attack_spec(["attack=pgd", "region=full"], sources=("enet",)).loss == margin
    assert attack_spec(["attack=pgd", "region=full"], sources=("enet_robust",)).loss == masked_ce
    assert attack_spec(["attack=pgd", "region=full"], sources=("enet", "erfnet_robust")).loss == masked_ce
    assert attack_spec(["attack=pgd", "region=full", "attack.loss=margin"], sources=("enet_robust",)).loss == margin
    # any weights file: its metadata decides, not its name
    model = tiny_model()
    meta = dict(architecture="enet", num_classes=NUM_CLASSES, class_names=[str(c) for c in range(NUM_CLASSES)],
                input_size=list(TRAIN_SIZE))
    clean = save_weights(model, tmp_path / "clean.safetensors", **meta)
    robust = save_weights(model, tmp_path / "robust.safetensors", **meta,
                          adversarial={"method": "pgd", "eps": 4 / 255, "steps": 3, "loss": "segpgd"})
    for path, loss in ((clean, margin), (robust, masked_ce)):
        spec = attack_spec(["attack=pgd", "region=full", f"+weights.mine={path}"], sources=("mine",))
        assert (spec.loss, spec.label) == (loss, f"pgd:{loss.name}")


def test_benchmark_references_stay_classical_whatever_pgds_default(monkeypatch):
    """The strength benchmark's SegPGD and the speed benchmarks' PGD keep Gu et al.'s / Madry et
    al.'s constant 2.5 eps / steps and the cross-entropy, so their rows do not move with pgd.yaml."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import attack_strength
    import common

    segpgd = attack_spec([*attack_strength.CONTENDERS["segpgd (ours, reference)"], "region=full",
                          "attack.steps=10"])
    speed = attack_spec(["attack=pgd", *common.FIXED_WORK, *common.CLASSICAL_PGD, "region=full",
                         "attack.steps=5"])
    for spec, loss, lr in ((segpgd, "segpgd", 0.25), (speed, "ce", 0.5)):
        assert (spec.loss, spec.schedule.name, spec.best, spec.early_stop) == (
            LOSSES.build(loss), "constant", False, False)
        assert spec.optimizer.keywords["lr"] == pytest.approx(lr)
        assert spec.optimizer.keywords["momentum"] == 0


def test_universal_preset_keeps_the_cross_entropy():
    spec = attack_spec(["experiment=paper_universal", "attack.steps=2"], image_size=(360, 480))
    assert (spec.method, spec.mode, spec.loss) == ("tanh", "universal", LOSSES.build("ce"))


def test_strong_universal_preset_is_pgd_with_a_decaying_step_over_paper_universals_setting():
    spec = attack_spec(["experiment=universal_pgd"], image_size=(360, 480), sources=("enet", "erfnet"))
    assert (spec.method, spec.mode, spec.loss, spec.schedule.name) == (
        "pgd", "universal", LOSSES.build("margin", {"kappa": 1.0}), "cosine")
    assert spec.optimizer.keywords["lr"] == pytest.approx(0.1) and spec.eps == pytest.approx(8 / 255)
    assert spec.optimizer.keywords["momentum"] == 0.9


def test_tiny_model_keeps_working(small=(32, 48)):
    """A smoke check that a random model runs through every new path (ensemble of APGD + tanh)."""
    module = make_module({"m": tiny_model(0)}, "attack=ensemble", "attack.steps=2", "region=full",
                         image_size=small)
    res = run_module(module, synthetic(small, num_val=2, batch_size=2))
    assert 0 <= res["per_model"]["m"]["asr"] <= 1


def test_contender_overrides_keep_commas_inside_brackets(monkeypatch):
    """``--contenders NAME=...``: a list or mapping value (ensemble members, lambdas) stays one override."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from attack_strength import split_overrides

    text = "attack=ensemble,attack.members=[{attack:pgd},{attack:apgd,loss:js}],attack.lambdas={enet:1,erfnet:2}"
    assert split_overrides(text) == ["attack=ensemble", "attack.members=[{attack:pgd},{attack:apgd,loss:js}]",
                                     "attack.lambdas={enet:1,erfnet:2}"]
    assert split_overrides("attack=pgd") == ["attack=pgd"]
