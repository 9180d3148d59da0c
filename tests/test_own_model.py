"""A model defined outside the package (``tests/own_model.py``), attacked like a shipped one:
through ``segattack.Attack`` and through ``attack.py`` (``own_models.NAME``), jointly with the
shipped ENet, evaluated by ``train_models.py task=evaluate``, and refused in one line naming the
key when its factory, weights or class count is wrong."""

from __future__ import annotations

import json
import re

import pytest
import torch
from helpers import NUM_CLASSES, ROOT, TRAIN_SIZE, assert_same_numbers, compose, run_entry
from own_model import make_unet
from safetensors.torch import load_file, save_file

import segattack
from segattack.cli import run_task
from segattack.data import CamVidDataModule
from segattack.errors import ConfigError
from segattack.files.weights import load_weights
from segattack.training.evaluate import evaluate, run

FACTORY = "tests.own_model:make_unet"
SAMPLE = ROOT / "data" / "camvid_sample"
ENET = ROOT / "weights" / "camvid" / "enet.safetensors"
# Tiny settings on the shipped sample: two 360x480 images, two steps of the default attack (PGD).
TINY = ["data=sample", "data.limit=2", "attack.steps=2", "eps=4/255", "seed=3", "region=box",
        "logger=none", "torch_threads=1", "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false", "num_figures=0"]


@pytest.fixture
def unet_file(tmp_path):
    """A safetensors state dict of the tiny U-Net, as ``safetensors`` writes it (no metadata)."""
    path = tmp_path / "unet.safetensors"
    save_file(make_unet(seed=1).state_dict(), str(path))
    return path


def test_api_and_cli_give_the_same_metrics_on_a_joint_attack_with_enet(unet_file, tmp_path):
    """The same images, seed and settings: ``attack.py`` with ``own_models.unet`` and
    ``segattack.Attack`` with the module itself score the same joint attack identically."""
    run_dir = tmp_path / "cli"
    run_entry("attack.py", *TINY, "source_models=[enet,unet]", f"+own_models.unet.factory={FACTORY}",
              f"+weights.unet={unet_file}", f"hydra.run.dir={run_dir}")
    cli = json.loads((run_dir / "metrics.json").read_text())

    data = CamVidDataModule(str(SAMPLE)).dataset("val", train=False)
    images = torch.stack([data[i][0] for i in range(2)])
    labels = torch.stack([data[i][1] for i in range(2)])
    unet = make_unet()
    unet.load_state_dict(load_file(str(unet_file)))
    atk = segattack.Attack({"enet": load_weights(ENET)[0], "unet": unet}, eps=4 / 255, steps=2,
                           region="box", seed=3)
    result = atk(images, labels)

    api = result.metrics
    api.pop("steps_per_image")
    assert_same_numbers(api, {k: cli[k] for k in api})
    assert cli["source_models"] == ["enet", "unet"]
    assert result.x_adv.shape == images.shape
    delta = result.x_adv - images
    assert float(delta.abs().max()) <= 4 / 255 + 1e-6
    outside = torch.ones(360, 480, dtype=torch.bool)
    outside[120:240, 160:320] = False  # the default box: 120x160, centred
    assert float(delta[..., outside].abs().max()) == 0.0
    assert result.asr["enet"] > 0.05  # the attack did something to the shipped model


def test_api_universal_perturbation_and_loader():
    """A universal patch fitted and evaluated over a loader; a plain function as the model."""
    torch.manual_seed(0)
    net = make_unet(num_classes=NUM_CLASSES, width=4)
    x = torch.rand(4, 3, *TRAIN_SIZE)
    y = torch.randint(0, NUM_CLASSES, (4, *TRAIN_SIZE))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    atk = segattack.Attack(lambda v: net(v), eps=8 / 255, steps=3, method="tanh", mode="universal",
                           region={"type": "box", "size": [16, 24]}, mean=[0.5] * 3, std=[0.25] * 3)
    result = atk(loader)
    assert result.perturbation.shape == (1, 3, 16, 24)
    assert 0 < float(result.perturbation.abs().max()) <= 8 / 255 + 1e-6
    assert result.x_adv.shape == x.shape
    assert result.metrics["per_model"]["model"]["pixels_in_area"] == 4 * 16 * 24


def test_api_default_loss_ignores_the_shipped_weights_of_a_models_name():
    """A module handed to the API records no adversarial training, whatever its name: PGD's
    ``auto`` loss is the clean default; ``loss=`` chooses another."""
    clean = segattack.Attack({"enet_robust": make_unet()}).spec(TRAIN_SIZE, NUM_CLASSES).loss.name
    chosen = segattack.Attack({"enet_robust": make_unet()}, loss="masked_ce").spec(TRAIN_SIZE, NUM_CLASSES)
    assert (clean, chosen.loss.name) == ("margin", "masked_ce")


def test_api_refuses_a_bad_key_in_one_line():
    with pytest.raises(ConfigError, match=r"^eps=2: expected 0 < eps <= 1"):
        segattack.Attack(make_unet(), eps=2)
    with pytest.raises(ConfigError, match=r"^lose=: not a key of an attack"):
        segattack.Attack(make_unet(), lose="ce")


def test_own_model_is_evaluated_by_train_models(unet_file, tmp_path):
    """``task=evaluate`` scores the own model with the same code as a shipped one."""
    cfg = compose("train_models", tmp_path, ["task=evaluate", "data=sample", "logger=none",
                                             "models=[unet]", f"+own_models.unet.factory={FACTORY}",
                                             f"+weights.unet={unet_file}"])
    report = run(cfg)["eval"]
    net = make_unet()
    net.load_state_dict(load_file(str(unet_file)))
    loader = CamVidDataModule(str(SAMPLE)).dataloader("val", train=False)
    assert report["models"]["unet"]["miou"] == pytest.approx(evaluate(net, loader, 11)["miou"], abs=1e-6)
    assert report["models"]["unet"]["weights"] == str(unet_file)


# --- refused in one line naming the key --------------------------------------------------------
SYNTHETIC = ["data=synthetic", f"data.image_size=[{TRAIN_SIZE[0]},{TRAIN_SIZE[1]}]", "data.num_val=2",
             "data.batch_size=2", "attack.steps=1", "logger=none", "torch_threads=1", "region=full",
             "source_models=[mine]", "trainer.enable_progress_bar=false"]


def own(**keys) -> list[str]:
    keys.setdefault("factory", FACTORY)
    return [f"+own_models.mine.{k}={v}" for k, v in keys.items()]


def small_unet_file(tmp_path, name: str, **metadata) -> str:
    path = tmp_path / f"{name}.safetensors"
    save_file(make_unet(num_classes=NUM_CLASSES).state_dict(), str(path),
              metadata={k: json.dumps(v) for k, v in metadata.items()})
    return f"+weights.mine={path}"


FAILURES = [
    ("factory typo", own(factory="tests.own_model:make_unte"),
     r"^own_models\.mine\.factory='tests\.own_model:make_unte': module 'tests\.own_model' has no"),
    ("no such module", own(factory="tests.no_such_module:make_unet"),
     r"^own_models\.mine\.factory='tests\.no_such_module:make_unet': cannot import"),
    ("not an import path", own(factory="make_unet"),
     r"^own_models\.mine\.factory='make_unet': expected an import path"),
    ("unknown key", own(colour=1), r"^own_models\.mine\.colour=1: not a known key"),
    ("state dict of another width", [*own(kwargs="{num_classes:5,width:4}"), "FILE"],
     r"^weights\.mine: .*mine\.safetensors: tensors do not fit a tests\.own_model:make_unet model"),
    ("class count key", [*own(kwargs="{num_classes:5}", num_classes=11), "FILE"],
     r"^own_models\.mine\.num_classes: the model has 11 classes, the data has 5"),
    ("class count in the file", [*own(kwargs="{num_classes:5}"), "FILE11"],
     r"^weights\.mine \(.*\): the model has 11 classes, the data has 5"),
    ("class count of the logits", own(kwargs="{num_classes:11}"),
     r"^own_models\.mine: the model outputs 11 classes, the data has 5"),
]


@pytest.mark.parametrize("overrides, message", [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_a_wrong_own_model_exits_2_with_one_line(overrides, message, tmp_path, capsys):
    from segattack.attacks.task import run_attack

    files = {"FILE": small_unet_file(tmp_path, "mine"),
             "FILE11": small_unet_file(tmp_path, "mine11", num_classes=11)}
    cfg = compose("attack", tmp_path / "run", [*SYNTHETIC, *(files.get(o, o) for o in overrides)])
    capsys.readouterr()
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit) as exc:
        run_task(run_attack, cfg)
    torch.set_num_threads(threads)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert len(err) == 1, err
    assert re.search(message, err[0].removeprefix("error: ")), err[0]
