"""The shipped weights, the shipped sample and the no-argument demo (issue: real baselines)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import nbformat
import pytest
from helpers import CAMVID, ROOT
from nbclient import NotebookClient

from segattack.data import CamVidDataModule
from segattack.files.weights import load_weights
from segattack.labels import CAMVID_CLASSES
from segattack.training.evaluate import evaluate

WEIGHTS = {name: ROOT / "weights" / "camvid" / f"{name}.safetensors" for name in ("enet", "erfnet")}
SAMPLE = ROOT / "data" / "camvid_sample"


def sample_miou(name: str) -> float:
    model, _ = load_weights(WEIGHTS[name])
    return evaluate(model, CamVidDataModule(str(SAMPLE), batch_size=4).dataloader("val"), 11)["miou"]


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_shipped_weights_load_with_their_metadata(name):
    model, meta = load_weights(WEIGHTS[name], expect_architecture=name, expect_num_classes=11)
    assert meta["class_names"] == list(CAMVID_CLASSES)
    assert meta["input_size"] == [360, 480]
    assert meta["dataset"] == "camvid"
    assert 0.50 <= meta["val_miou"] <= 1  # the baselines' goal: at least 50% CamVid val mIoU
    assert not model.training


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_shipped_weights_reach_45_percent_on_the_sample(name):
    assert sample_miou(name) >= 0.45


def test_sample_is_16_camvid_val_images_with_labels():
    dm = CamVidDataModule(str(SAMPLE))
    ds = dm.dataset("val")
    assert len(ds) == 16
    x, y = ds[0]
    assert x.shape == (3, 360, 480) and y.shape == (360, 480)


@pytest.mark.slow  # all 101 val frames at full size through each shipped model
@pytest.mark.camvid
@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_val_miou_matches_the_metadata(name):
    if not CAMVID.is_dir():
        pytest.skip(f"{CAMVID} is absent")
    model, meta = load_weights(WEIGHTS[name])
    dm = CamVidDataModule(str(CAMVID), batch_size=8)
    miou = evaluate(model, dm.dataloader("val"), 11)["miou"]
    assert abs(miou - meta["val_miou"]) <= 0.005, (miou, meta["val_miou"])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``python attack.py`` as shipped, with fewer steps and images so it takes seconds."""
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "attack.py", "attack.steps=5", "data.limit=4", "logger=none",
         "torch_threads=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_demo_attack_beats_the_clean_error_on_both_models(demo_run):
    out, stdout = demo_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source_models"] == ["enet", "erfnet"]
    assert metrics["attack"]["method"] == "pgd" and metrics["attack"]["mode"] == "per_image"
    assert metrics["attack"]["loss"] == "margin"  # the measured strongest default
    for name in ("enet", "erfnet"):
        m = metrics["per_model"][name]
        assert m["asr"] > m["clean_error_in_area"] + 0.02, (name, m)
    assert metrics["perturbation"]["linf"] <= 4 / 255 + 1e-6
    assert "report:" in stdout and "enet*" in stdout


def test_walkthrough_notebook_runs_on_a_run(demo_run):
    out, _ = demo_run
    nb = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    os.environ["SEGATTACK_RUN_DIR"] = str(out)
    try:
        NotebookClient(nb, timeout=600,  # a hang guard: cells may be slow on a busy machine
                       kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        del os.environ["SEGATTACK_RUN_DIR"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "| enet |" in text and "| erfnet |" in text
    assert "4 figures" in text
    assert re.search(r"API: asr \d+\.\d%, linf 4\.00/255, x_adv \(2, 3, 360, 480\)", text), text[-500:]
