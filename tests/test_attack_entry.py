"""``attack.py`` end to end: the real entry point in a subprocess, outputs checked on disk.

Each subprocess costs several seconds of imports, so one run's outputs carry many checks.
Config errors are checked in-process through ``run_task`` (what ``attack.py`` calls), and one
of them also through the real entry point.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, TRAIN_SIZE, assert_same_numbers, compose
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file

from segattack.files.weights import save_weights
from segattack.models import NormalizedModel, create_model
from segattack.report import check_transfer, validate_metrics

EPS = "8/255"
PATCH = (16, 24)
NUM_VAL = 4
BASE = ["attack=tanh", "data=synthetic", f"data.image_size=[{TRAIN_SIZE[0]},{TRAIN_SIZE[1]}]",
        "data.num_train=8", f"data.num_val={NUM_VAL}", "data.batch_size=4", "logger=none",
        "torch_threads=1", "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false", f"eps={EPS}", "num_figures=2"]


def weight_overrides(weights: dict) -> list[str]:
    """``weights.enet=...`` (a key of attack.yaml) and ``+weights.enet2=...`` (a new one)."""
    return [f"weights.enet={weights['enet']}", f"+weights.enet2={weights['enet2']}"]


def attack(run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "attack.py", *overrides, f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read_metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    validate_metrics(metrics)
    return metrics


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- a universal patch, then the same patch evaluated again --------------------------------------
@pytest.fixture(scope="module")
def universal_run(trained_weights, tmp_path_factory):
    """Universal tanh patch at random boxes, fitted on 8 images and evaluated on 4."""
    run_dir = tmp_path_factory.mktemp("universal")
    proc = attack(run_dir, *BASE, *weight_overrides(trained_weights), "source_models=[enet]",
                  "mode=universal", "region=box", f"region.size=[{PATCH[0]},{PATCH[1]}]",
                  "region.position=random", "attack.steps=6")
    return run_dir, proc


def test_universal_run_writes_every_output(universal_run):
    run_dir, proc = universal_run
    m = read_metrics(run_dir)
    assert m["attack"]["method"] == "tanh" and m["attack"]["mode"] == "universal"
    assert m["attack"]["steps"] == 6 and m["attack"]["eps"] == pytest.approx(8 / 255)
    assert m["attack"]["region"] == f"box {PATCH[0]}x{PATCH[1]} (random)"
    assert m["source_models"] == ["enet"] and list(m["per_model"]) == ["enet"]
    assert m["data"] == {"name": "synthetic", "fit_split": "train", "eval_split": "val",
                         "num_images": NUM_VAL, "batch_size": 4}
    assert m["attack"]["seed"] == 0 and m["attack"]["eval_placement"] == "region: per image index, seed 0"
    assert 0 < m["perturbation"]["linf"] <= 8 / 255 + 1e-6

    # the perturbation file: a patch-sized w and its delta, with the run's settings
    tensors = load_file(str(run_dir / "perturbation.safetensors"))
    assert tensors["w"].shape == (1, 3, *PATCH)
    torch.testing.assert_close(tensors["delta"], 8 / 255 * torch.tanh(tensors["w"]))
    assert tensors["delta"].abs().max() <= 8 / 255 + 1e-6
    with safe_open(str(run_dir / "perturbation.safetensors"), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items()}
    assert meta["method"] == "tanh" and meta["mode"] == "universal"
    assert meta["image_size"] == list(TRAIN_SIZE)

    figures = sorted((run_dir / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["sample_0.png", "sample_1.png"]
    assert all(is_png(f) for f in figures)
    report = (run_dir / "report.md").read_text()
    assert report.startswith("# Attack report: tanh, universal")
    assert "figures/sample_0.png" in report and "| enet | yes |" in report
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.mode == "universal" and cfg.region.size == list(PATCH)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    # stdout: the summary table, then the report's path
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == f"report: {run_dir / 'report.md'}"
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert lines[header].split()[:3] == ["model", "clean", "mIoU"]
    row = lines[header + 1].split()
    assert row[0] == "enet*" and row[3] == f"{100 * m['per_model']['enet']['asr']:.1f}%"
    assert lines[header + 2].startswith("* attacked; joint asr_all")
    assert not list(ROOT.glob("metrics.json")), "nothing may be written into the source tree"


def test_saved_perturbation_is_evaluated_again_without_fitting(universal_run, trained_weights,
                                                               tmp_path):
    first_dir, _ = universal_run
    first = read_metrics(first_dir)
    saved = first_dir / "perturbation.safetensors"
    attack(tmp_path, *BASE, *weight_overrides(trained_weights), "source_models=[enet]",
           "eval_models=[enet2]", "mode=universal", "region=box",
           f"region.size=[{PATCH[0]},{PATCH[1]}]", "region.position=random", "attack.steps=6",
           f"perturbation={saved}")
    m = read_metrics(tmp_path)
    assert m["attack"]["loaded_perturbation"] == str(saved)
    assert list(m["per_model"]) == ["enet", "enet2"] and m["source_models"] == ["enet"]
    # same model, same data, same patch at the same places: the same numbers
    assert_same_numbers(m["per_model"]["enet"], first["per_model"]["enet"], 1e-6, "enet")
    assert m["perturbation"]["linf"] == pytest.approx(first["perturbation"]["linf"], abs=1e-6)
    # nothing was fitted: no checkpoint, and the written w is the loaded one
    assert not (tmp_path / "checkpoints").exists()
    assert torch.equal(load_file(str(tmp_path / "perturbation.safetensors"))["w"],
                       load_file(str(saved))["w"])
    assert 0 <= m["per_model"]["enet2"]["asr"] <= 1


# --- transfer --------------------------------------------------------------------------------------
def test_transfer_task_writes_matrix_and_heatmap(trained_weights, tmp_path):
    proc = attack(tmp_path, *BASE, *weight_overrides(trained_weights), "task=transfer",
                  "source_models=[enet,enet2]", "mode=per_image", "region=full",
                  "attack.steps=3", "num_figures=1")
    transfer = json.loads((tmp_path / "transfer.json").read_text())
    assert transfer["rows"] == ["enet", "enet2", "enet+enet2"]
    assert transfer["cols"] == ["enet", "enet2"]
    check_transfer(transfer["rows"], transfer["cols"], transfer["asr"])
    assert len(transfer["asr"]) == 3 and all(len(row) == 2 for row in transfer["asr"])
    assert is_png(tmp_path / "transfer.png")
    for row, values in zip(transfer["rows"], transfer["asr"]):  # each cell is a sub-run's asr
        sub = read_metrics(tmp_path / row)
        assert sub["source_models"] == row.split("+")
        assert values == [sub["per_model"][c]["asr"] for c in transfer["cols"]]
    assert "transfer asr (rows: crafted on, cols: evaluated on)" in proc.stdout
    assert f"transfer matrix: {tmp_path / 'transfer.json'}" in proc.stdout


# --- config errors: exit 2, one line naming the key ------------------------------------------------
@pytest.fixture
def eleven_class_weights(tmp_path) -> Path:
    """An ENet file for 11 classes (CamVid's count): it does not fit 5-class synthetic data."""
    torch.manual_seed(0)
    model = NormalizedModel(create_model("enet", 11))
    return save_weights(model, tmp_path / "enet11.safetensors", architecture="enet",
                        num_classes=11, class_names=[f"c{i}" for i in range(11)],
                        input_size=list(TRAIN_SIZE))


def compose_attack(out_dir: Path, overrides: list[str]):
    """``configs/attack.yaml`` composed as ``@hydra.main`` would, writing into ``out_dir``."""
    return compose("attack", out_dir, overrides)


def run_in_process(out_dir: Path, overrides: list[str], capsys) -> tuple[int, list[str]]:
    """``run_task(run_attack, cfg)`` as ``attack.py`` does; returns (exit code, stderr lines)."""
    from segattack.attacks.task import run_attack
    from segattack.cli import run_task

    cfg = compose_attack(out_dir, overrides)
    capsys.readouterr()
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit) as exc:
        run_task(run_attack, cfg)
    torch.set_num_threads(threads)
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


def test_targeted_map_run_writes_its_metrics(trained_weights, tmp_path):
    """``attack.target_map`` (README's hide-pedestrians example): metrics record the map."""
    from segattack.attacks.task import run_attack

    cfg = compose_attack(tmp_path, [*BASE, *weight_overrides(trained_weights),
                                    "source_models=[enet]", "region=class", "region.classes=[4]",
                                    "attack.steps=2", "attack.targeted=true",
                                    "attack.target_map={4:2}", "num_figures=1"])
    threads = torch.get_num_threads()
    run_attack(cfg)
    torch.set_num_threads(threads)
    m = read_metrics(tmp_path)
    assert m["attack"]["targeted"] is True
    assert m["attack"]["target_map"] == {"4": 2} and m["attack"]["target_class"] == 2
    assert "targeted (class 2)" in (tmp_path / "report.md").read_text()


ERRORS = [
    (["source_models=[nosuch]"], r"source_models.*'nosuch'"),
    (["eval_models=[nosuch]"], r"eval_models.*'nosuch'"),
    (["eps=0"], r"^error: eps=0"),
    (["eps=2"], r"^error: eps=2"),
    (["eps=abc"], r"^error: eps='abc'"),
    (["region=box", "region.size=[1000,10]"], r"^error: region\.size=\[1000, 10\]"),
    (["attack.targeted=true", "attack.target_class=99"], r"^error: attack\.target_class.*99"),
    (["attack=fgsm", "attack.steps=5"], r"^error: attack\.steps=5.*fgsm"),
    (["mode=bogus"], r"^error: mode='bogus'"),
    (["channels_last=yes"], r"^error: channels_last='yes': expected auto, true or false"),
    (["WEIGHTS11"], r"^error: weights\.enet.*11 classes.*5"),
]


@pytest.mark.parametrize("bad, message", ERRORS, ids=[" ".join(b) for b, _ in ERRORS])
def test_config_errors_exit_2_with_one_line(bad, message, trained_weights, eleven_class_weights,
                                            tmp_path, capsys):
    if bad == ["WEIGHTS11"]:
        bad = [f"weights.enet={eleven_class_weights}"]
    overrides = [*BASE, *weight_overrides(trained_weights), "source_models=[enet]",
                 "region=full", "attack.steps=1", *bad]
    code, err = run_in_process(tmp_path / "run", overrides, capsys)
    assert code == 2
    assert len(err) == 1, err
    assert re.search(message, err[0]), err[0]


def test_entry_point_reports_a_config_error_in_one_line(trained_weights, eleven_class_weights,
                                                        tmp_path):
    proc = attack(tmp_path, *BASE, *weight_overrides(trained_weights), "source_models=[enet]", "region=full",
                  f"weights.enet={eleven_class_weights}", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: weights.enet"), lines
    assert str(eleven_class_weights) in lines[0] and "11 classes" in lines[0]
    assert not (tmp_path / "metrics.json").exists()


# --- DDP -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_universal_attack_under_ddp_syncs_metrics(trained_weights, tmp_path):
    """Two CPU processes: metrics over the whole split, one shared patch of the right shape.

    The patch is then evaluated again in a single process: equal numbers show that the DDP
    metrics were synced over both processes' shards, not computed on one half.
    """
    common = [*BASE, *weight_overrides(trained_weights), "source_models=[enet]", "mode=universal",
              "region=box", f"region.size=[{PATCH[0]},{PATCH[1]}]", "data.num_val=8",
              "attack.steps=3"]
    attack(tmp_path / "ddp", *common, "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2")
    m = read_metrics(tmp_path / "ddp")
    assert m["data"]["num_images"] == 8
    w = load_file(str(tmp_path / "ddp" / "perturbation.safetensors"))["w"]
    assert w.shape == (1, 3, *PATCH)

    attack(tmp_path / "single", *common, f"perturbation={tmp_path / 'ddp' / 'perturbation.safetensors'}")
    single = read_metrics(tmp_path / "single")
    assert_same_numbers(m["per_model"]["enet"], single["per_model"]["enet"], 1e-6, "enet")


def test_target_fields_of_metrics_json():
    """A single goal class fills target_class; a map with several goals leaves it null."""
    from segattack.attacks.outputs import target_fields

    def attack_cfg(**kw):
        return OmegaConf.create({"targeted": True, "target_class": None, "target_map": None, **kw})

    assert target_fields(OmegaConf.create({"targeted": False, "target_class": None,
                                           "target_map": None})) == {"target_class": None,
                                                                     "target_map": None}
    assert target_fields(attack_cfg(target_class=3)) == {"target_class": 3, "target_map": None}
    assert target_fields(attack_cfg(target_map={9: 3, 8: 3})) == {
        "target_class": 3, "target_map": {"9": 3, "8": 3}}
    several = target_fields(attack_cfg(target_map={9: 3, 8: 2}))
    assert several == {"target_class": None, "target_map": {"9": 3, "8": 2}}
    # and metrics.json accepts a targeted run described by its map alone
    metrics = {"schema": 1,
               "attack": {"method": "tanh", "mode": "per_image", "eps": 0.03, "steps": 1,
                          "region": "full", "area": "full", "targeted": True, **several},
               "source_models": ["enet"],
               "data": {"name": "synthetic", "fit_split": None, "eval_split": "val",
                        "num_images": 1},
               "per_model": {"enet": dict.fromkeys(("clean_miou", "adv_miou", "asr",
                                                    "clean_error_in_area", "fooling_rate",
                                                    "collateral"), 0.5)},
               "joint": {"asr_all": 0.5, "asr_any": 0.5},
               "perturbation": {"linf": 0.03, "l2_mean": 1.0, "psnr_mean": 30.0},
               "runtime": {"seconds": 1.0, "images_per_second": 1.0}}
    validate_metrics(metrics)
    metrics["attack"]["target_map"] = None
    with pytest.raises(ValueError, match=r"attack\.target_class"):
        validate_metrics(metrics)


def test_universal_fit_on_augmented_frames(tmp_path):
    """``fit_augment=true``: the fit sees the data's training augmentation, so with the same seed
    it learns another perturbation than on the plain frames, still inside the eps ball."""
    common = ["data=sample", "data.image_size=[48,64]", "data.limit=4", "mode=universal",
              "region=full", "fit_split=val", "source_models=[enet]", "attack=pgd", "attack.steps=2", "logger=none",
              "torch_threads=1", "trainer.enable_progress_bar=false", f"eps={EPS}", "num_figures=0"]
    w = {}
    for augment in ("false", "true"):
        attack(tmp_path / augment, *common, f"fit_augment={augment}")
        w[augment] = load_file(str(tmp_path / augment / "perturbation.safetensors"))["w"]
        assert w[augment].shape == (1, 3, 48, 64)
        assert read_metrics(tmp_path / augment)["perturbation"]["linf"] <= 8 / 255 + 1e-6
    assert not torch.equal(w["false"], w["true"])
