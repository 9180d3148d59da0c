"""``--help`` of both entry points (Hydra's help template, configs/hydra/help/), and the config
groups each entry point offers: no internal base among the choices, experiments per entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT, run_entry
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from segattack.config import register_resolvers

register_resolvers(ROOT)


def examples(page: str) -> list[str]:
    block = page.split("== Examples ==")[1].split("==")[0]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("python ")]


def test_attack_help_teaches_the_main_keys():
    page = run_entry("attack.py", "--help").stdout
    assert page.startswith("attack.py: adversarial attacks on semantic-segmentation models")
    for line in ("attack=pgd  method: apgd, clip, ensemble, fgsm, ifgsm, padam, pgd, sigmoid, tanh", "eps=4/255  L-inf bound",
                 "mode=per_image", "attack.steps=10", "source_models=[enet,erfnet]", "region=box",
                 "data=sample  camvid, cityscapes, sample, synthetic", "logger=wandb", "verbose=false",
                 "experiment=null  a preset of the paper's: hide_pedestrians, paper_baselines"):
        assert line in page, line
    assert "common" not in page and "camvid_baseline" not in page  # a base, a training preset
    assert len(examples(page)) == 5 and "python attack.py -m eps=1/255,2/255,4/255,8/255" in page
    assert "== Outputs ==" in page and "summary.md" in page and "attack.log" in page
    assert "Powered by Hydra" not in page


def test_help_shows_the_values_of_the_overrides_given():
    page = run_entry("attack.py", "eps=8/255", "attack=pgd", "data=camvid", "--help").stdout
    assert "eps=8/255 " in page and "attack=pgd " in page and "data=camvid " in page


def test_train_help_teaches_the_training_keys():
    page = run_entry("train_models.py", "--help").stdout
    assert page.startswith("train_models.py: train the segmentation baselines")
    for line in ("models=[enet,erfnet]  architectures trained in turn: enet, enet_robust, erfnet, erfnet_robust", "data=camvid",
                 "trainer.max_epochs=", "optimizer.lr=0.0005", "train_experiment=null  a preset: camvid_adversarial, camvid_baseline"):
        assert line in page, line
    assert "paper_local" not in page  # attack presets are not training presets
    assert len(examples(page)) == 5 and "train_models.log" in page


def _compose(config: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            return compose(config_name=config, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")))
def test_every_attack_experiment_composes_with_attack_py(name):
    assert _compose("attack", [f"experiment={name}"]).attack.steps >= 1


def test_the_training_preset_composes_with_train_models_py():
    cfg = _compose("train_models", ["train_experiment=camvid_baseline"])
    assert cfg.trainer.max_epochs == 100 and cfg.data.crop_size == [288, 384]


def test_attack_methods_share_the_base_config_and_it_is_not_a_choice():
    assert not (ROOT / "configs" / "attack" / "common.yaml").exists()
    for method in ("tanh", "pgd", "fgsm"):
        cfg = _compose("attack", [f"attack={method}"])
        assert cfg.attack.label_source == "gt" and "targeted" in cfg.attack  # from attack_common
    proc = run_entry("attack.py", "attack=common", check=False)
    assert proc.returncode == 2 and "attack=common: no such option; expected one of [" in proc.stderr
    assert "'common'" not in proc.stderr.split("expected one of")[1]


def test_default_data_dir_is_in_the_clone_unless_set(monkeypatch):
    monkeypatch.delenv("SEGATTACK_DATA", raising=False)
    assert Path(_compose("attack", ["data=camvid"]).data.root) == ROOT / "data" / "CamVid"
    monkeypatch.setenv("SEGATTACK_DATA", "/somewhere")
    assert _compose("train_models", []).data.root == "/somewhere/CamVid"
