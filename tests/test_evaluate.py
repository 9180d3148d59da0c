"""Evaluating on any split (``task=evaluate``, ``eval_split``) and exporting the last epoch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, compose_train_cfg, write_png
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from test_train_values import refused_by_the_entry_point

from segattack.cli import run_task
from segattack.data import CamVidDataModule, SyntheticDataModule
from segattack.files.weights import load_weights, read_metadata, save_weights
from segattack.models import NormalizedModel, create_model
from segattack.training.evaluate import evaluate, evaluate_weights, run
from segattack.training.task import train

H, W = 48, 64
ROAD, SKY, CAR, VOID = 3, 0, 8, 11


def run_cli(*overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    args = [sys.executable, str(ROOT / "train_models.py"), "torch_threads=1", "logger=none",
            "trainer.enable_progress_bar=false", *overrides]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


# --- a tiny CamVid test split and a model whose prediction is known ---------------------------------

def make_test_split(root: Path, split: str = "test") -> Path:
    """Two 48x64 images: top half sky, bottom half road; the second also has a 8x16 car and a
    8x8 void block. Valid pixels: 3072 + 3008 = 6080, of which road 1536 + 1408 = 2944."""
    rng = np.random.default_rng(0)
    for i in range(2):
        label = np.full((H, W), SKY, dtype=np.uint8)
        label[H // 2:] = ROAD
        if i == 1:
            label[32:40, 0:16] = CAR
            label[0:8, 0:8] = VOID
        write_png(root / split / f"img{i}.png", rng.integers(0, 256, (H, W, 3)))
        write_png(root / f"{split}annot" / f"img{i}.png", label)
    return root


# Road is predicted on every valid pixel: road IoU = 2944 / 6080; sky and car are in the labels
# but never predicted (IoU 0); the other 8 classes are absent from both (NaN, left out of the mean).
ROAD_IOU = 2944 / 6080
MIOU = ROAD_IOU / 3


def always_road_weights(path: Path) -> Path:
    """A CamVid ENet that predicts road everywhere: zero classifier weights, bias on road only."""
    model = NormalizedModel(create_model("enet", 11), [0.5] * 3, [0.25] * 3)
    with torch.no_grad():
        model.net.classifier.weight.zero_()
        model.net.classifier.bias.zero_()
        model.net.classifier.bias[ROAD] = 1.0
    names = list(CamVidDataModule.class_names)
    return save_weights(model, path, architecture="enet", num_classes=11, class_names=names,
                        input_size=[H, W], dataset="camvid", epoch=7, export="last", val_miou=0.5)


def test_evaluate_weights_by_hand(tmp_path):
    root = make_test_split(tmp_path / "CamVid")
    weights = always_road_weights(tmp_path / "road.safetensors")
    out = evaluate_weights(weights, CamVidDataModule(root, image_size=(H, W), batch_size=1), "test")
    assert out["miou"] == pytest.approx(MIOU, abs=1e-6)
    per_class = out["per_class"]
    assert per_class[ROAD] == pytest.approx(ROAD_IOU, abs=1e-6)
    assert per_class[SKY] == 0.0 and per_class[CAR] == 0.0
    assert sum(np.isnan(per_class)) == 8
    assert (out["num_images"], out["epoch"], out["export"]) == (2, 7, "last")


def test_cli_evaluate_on_test_split(tmp_path):
    """The entry point, no training: the printed table and ``eval_test.json`` hold the hand values."""
    root = make_test_split(tmp_path / "CamVid")
    weights = always_road_weights(tmp_path / "road.safetensors")
    run_dir = tmp_path / "run"
    proc = run_cli("task=evaluate", "models=[enet]", f"weights.enet={weights}", "data=camvid",
                   f"data.root={root}", f"data.image_size=[{H},{W}]", "eval_split=test",
                   f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "camvid test split: 2 images at 48x64, fp32" in proc.stdout
    # columns: model, mIoU, then sky building pole road pavement tree sign fence car pedestrian bicyclist
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| enet |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["enet", f"{100 * MIOU:.2f}", "0.0", "-", "-", f"{100 * ROAD_IOU:.1f}",
                     "-", "-", "-", "-", "0.0", "-", "-"]
    assert f"enet: {weights} (epoch 7, export last)" in proc.stdout
    report = json.loads((run_dir / "eval_test.json").read_text())
    assert report["split"] == "test" and report["precision"] == "fp32"
    enet = report["models"]["enet"]
    assert enet["miou"] == pytest.approx(MIOU, abs=1e-6)
    assert enet["per_class"][ROAD] == pytest.approx(ROAD_IOU, abs=1e-6)
    assert enet["per_class"][1] is None  # NaN is written as null
    assert not (run_dir / "checkpoints").exists(), "evaluate trains nothing"


def test_cli_evaluate_on_a_held_out_training_sequence(tmp_path):
    """``data.holdout=[img1]``: val is the training frame of that sequence (the one with the car and
    the void block; there is no val/ folder), so the printed mIoU is that frame's hand value."""
    root = make_test_split(tmp_path / "CamVid", split="train")
    weights = always_road_weights(tmp_path / "road.safetensors")
    proc = run_cli("task=evaluate", "models=[enet]", f"weights.enet={weights}", "data=camvid",
                   f"data.root={root}", f"data.image_size=[{H},{W}]", "data.holdout=[img1]",
                   "eval_split=val", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "camvid val split (held-out training sequences img1): 1 images at 48x64, fp32" in proc.stdout
    assert json.loads((tmp_path / "run" / "eval_val.json").read_text())["holdout"] == ["img1"]
    road_iou = 1408 / 3008  # road predicted on all 3008 valid pixels of img1, 1408 of them road
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| enet |"))
    assert row.split("|")[2].strip() == f"{100 * road_iou / 3:.2f}"


def test_cli_train_on_a_held_out_sequence_says_so_in_the_weights(tmp_path):
    root = make_test_split(tmp_path / "CamVid", split="train")
    run_dir = tmp_path / "run"
    proc = run_cli("models=[enet]", "data=camvid", f"data.root={root}", f"data.image_size=[{H},{W}]",
                   "data.holdout=[img1]", "data.batch_size=1", "trainer.max_epochs=1", "logger=csv",
                   "optimizer.weight_decay=1e-3", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = read_metadata(run_dir / "weights" / "enet.safetensors")
    assert meta["holdout"] == ["img1"] and meta["dataset"] == "camvid"
    assert meta["weight_decay"] == 1e-3  # the recipe travels with the file
    assert sorted(val_curve(run_dir)) == [0]  # validated (on img1) once


def test_cli_holdout_must_be_a_list_of_sequences(tmp_path):
    line = one_error_line(run_cli("task=evaluate", "models=[enet]", "data=camvid", "data.holdout=7",
                                  f"hydra.run.dir={tmp_path / 'run'}"))
    assert line.startswith("error: ") and "data.holdout=7" in line and "list" in line, line


def test_cli_missing_split_is_one_line(tmp_path):
    """A tree without test/: one line naming the folder and the layout it expects."""
    root = make_test_split(tmp_path / "CamVid", split="val")
    line = one_error_line(run_cli("task=evaluate", "models=[enet]", "data=camvid", f"data.root={root}",
                                  "eval_split=test", f"hydra.run.dir={tmp_path / 'run'}"))
    assert line.startswith(f"error: CamVid test split: missing {root / 'test'}")
    assert f"{root / 'testannot'}" in line and "testannot/ optional" in line  # the layout


def test_train_with_missing_eval_split_stops_before_training(tmp_path):
    root = make_test_split(tmp_path / "CamVid", split="train")
    make_test_split(root, split="val")
    run_dir = tmp_path / "run"
    line = one_error_line(run_cli("models=[enet]", "data=camvid", f"data.root={root}",
                                  "eval_split=test", f"hydra.run.dir={run_dir}"))
    assert f"CamVid test split: missing {root / 'test'}" in line
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize("override, message", [
    ("task=fit", "task='fit': expected one of ['train', 'evaluate']"),
    ("export=worst", "export='worst': expected one of ['best', 'last']"),
    ("eval_split=nosuch", "eval_split='nosuch': expected one of ['train', 'val', 'test']"),
    ("weights.enet=/nowhere.safetensors", "weights.enet: /nowhere.safetensors: weights file not found"),
    ("keep_every=0", "keep_every=0: expected"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, override, message):
    cfg = compose_train_cfg(tmp_path, ["task=evaluate", override])
    with pytest.raises(SystemExit) as info:
        run_task(run, cfg)
    GlobalHydra.instance().clear()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err


# --- train, export the last epoch, evaluate it on test ------------------------------------------------

# A learning rate that makes the 3-epoch val curve peak before its end (measured, seed 42:
# val mIoU 0.076, 0.089, 0.079), so that best and last are different epochs.
NOISY_LR = "5e-2"


def val_curve(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "enet" / "version_0" / "metrics.csv") as f:
        return {int(r["epoch"]): float(r["val/miou"]) for r in csv.DictReader(f) if r.get("val/miou")}


def test_cli_train_export_last_then_eval_test(tmp_path):
    """3 epochs, ``export=last``, ``eval_split=test``: the file is the last epoch's model (equal to
    ``last.ckpt``), its metadata says so, and the printed test mIoU is that model's."""
    run_dir = tmp_path / "run"
    proc = run_cli("models=[enet]", "data=synthetic", "data.num_train=16", "data.num_val=8",
                   "data.num_test=8", "data.image_size=[64,96]", f"optimizer.lr={NOISY_LR}",
                   "trainer.max_epochs=3", "export=last", "eval_split=test", "logger=csv",
                   f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = run_dir / "weights" / "enet.safetensors"
    meta = read_metadata(weights)
    curve = val_curve(run_dir)
    assert sorted(curve) == [0, 1, 2]
    assert max(curve, key=curve.get) != 2, f"the last epoch is the best here, so best = last: {curve}"
    assert (meta["export"], meta["epoch"], meta["max_epochs"]) == ("last", 2, 3)
    assert meta["val_miou"] == pytest.approx(curve[2], abs=1e-6)

    model, _ = load_weights(weights)
    ckpt = torch.load(run_dir / "checkpoints" / "enet" / "last.ckpt", map_location="cpu", weights_only=True)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    # last.ckpt is the last epoch too, though that epoch did not improve val (Lightning's own
    # save_last would have left it at the best epoch)
    assert ckpt["epoch"] == 2 and state.keys() == model.state_dict().keys()
    assert sorted(p.name for p in (run_dir / "checkpoints" / "enet").iterdir()) == [
        f"best-epoch{max(curve, key=curve.get):03d}.ckpt", "last.ckpt"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key

    best = max(curve.values())
    assert f"enet: best val mIoU {best}" in proc.stdout
    assert f"(export last: epoch 2, val mIoU {meta['val_miou']})" in proc.stdout
    assert "synthetic test split: 8 images at 64x96, fp32" in proc.stdout
    dm = SyntheticDataModule(num_train=16, num_val=8, num_test=8, image_size=(64, 96), seed=42)
    expected = evaluate_weights(weights, dm, "test")["miou"]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| enet |"))
    assert row.split("|")[2].strip() == f"{100 * expected:.2f}"
    report = json.loads((run_dir / "eval_test.json").read_text())
    assert report["models"]["enet"]["miou"] == pytest.approx(expected, abs=1e-6)


def test_export_best_keeps_the_best_epoch(tmp_path):
    """``export=best`` (the default): the file is the epoch with the highest val mIoU."""
    cfg = compose_train_cfg(tmp_path, [f"optimizer.lr={NOISY_LR}", "trainer.max_epochs=3", "logger=csv",
                                       "trainer.num_sanity_val_steps=0"])
    with open_dict(cfg):
        cfg.eval_split = "val"
    out = run(cfg)
    GlobalHydra.instance().clear()
    (result,) = out["train"]
    curve = val_curve(tmp_path)
    best_epoch = max(curve, key=curve.get)
    assert best_epoch != 2, f"the last epoch is the best here, so best = last: {curve}"
    meta = read_metadata(result["weights"])
    assert (meta["export"], meta["epoch"]) == ("best", best_epoch)
    assert meta["val_miou"] == pytest.approx(curve[best_epoch], abs=1e-6)
    assert result["exported_epoch"] == best_epoch and result["best_val_miou"] == pytest.approx(curve[best_epoch])
    # evaluating the exported file on val (fp32, outside Lightning) gives its logged val mIoU
    assert out["eval"]["models"]["enet"]["miou"] == pytest.approx(meta["val_miou"], abs=1e-5)


def test_keep_every_keeps_those_epochs_as_they_were_validated(tmp_path):
    """``keep_every=2``: checkpoints/enet/epoch001.ckpt and epoch003.ckpt, none replaced, each scoring
    (``task=evaluate``'s loader) the val mIoU logged at its epoch."""
    cfg = compose_train_cfg(tmp_path, [f"optimizer.lr={NOISY_LR}", "trainer.max_epochs=4", "logger=csv",
                                       "trainer.num_sanity_val_steps=0", "keep_every=2"])
    train(cfg)
    GlobalHydra.instance().clear()
    curve = val_curve(tmp_path)
    ckpt_dir = tmp_path / "checkpoints" / "enet"
    kept = sorted(p.name for p in ckpt_dir.glob("epoch*.ckpt"))
    assert kept == ["epoch001.ckpt", "epoch003.ckpt"]
    dm = SyntheticDataModule(num_train=16, num_val=8, num_test=8, image_size=(64, 96), seed=42)
    scores = [evaluate_weights(ckpt_dir / name, dm, "val", architecture="enet") for name in kept]
    assert [s["epoch"] for s in scores] == [1, 3]
    assert scores[0]["miou"] != scores[1]["miou"]
    for s in scores:
        assert s["miou"] == pytest.approx(curve[s["epoch"]], abs=1e-5), (s, curve)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    """2 epochs with ``ema_decay=0.9``, ``export=last``, then val evaluated: (run folder, run's output)."""
    run_dir = tmp_path_factory.mktemp("ema_run")
    cfg = compose_train_cfg(run_dir, [f"optimizer.lr={NOISY_LR}", "trainer.max_epochs=2", "logger=csv",
                                      "trainer.num_sanity_val_steps=0", "export=last", "ema_decay=0.9"])
    with open_dict(cfg):
        cfg.eval_split = "val"
    out = run(cfg)
    GlobalHydra.instance().clear()
    return run_dir, out


def checkpoint_nets(path: Path) -> tuple[dict, dict]:
    """(average, raw) ``NormalizedModel`` states of an EMA run's checkpoint, read by hand."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)

    def net(state):
        return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    return net(ckpt["state_dict"]), net(ckpt["current_model_state"])


def test_ema_exports_the_validated_average(ema_run):
    """``ema_decay``: the file holds the moving average (last.ckpt's state_dict), not the raw
    weights Lightning keeps beside it, and its ``val_miou`` is that average's val mIoU."""
    run_dir, out = ema_run
    (result,) = out["train"]
    meta = read_metadata(result["weights"])
    assert (meta["export"], meta["epoch"], meta["ema_decay"]) == ("last", 1, 0.9)
    model, _ = load_weights(result["weights"])
    average, raw = checkpoint_nets(run_dir / "checkpoints" / "enet" / "last.ckpt")
    differ = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, raw[k])]
    assert differ, "the exported weights are the raw ones"
    for key, value in model.state_dict().items():
        assert torch.equal(value, average[key]), key
    assert out["eval"]["models"]["enet"]["miou"] == pytest.approx(meta["val_miou"], abs=1e-5)


@pytest.mark.parametrize("which", ["validated", "raw"])
def test_cli_evaluates_a_checkpoint(ema_run, tmp_path, which):
    """``task=evaluate weights.enet=last.ckpt``: the average (= the exported file's val mIoU) or, with
    ``ckpt_weights=raw``, the raw weights, each scored as the hand-loaded network scores."""
    run_dir, out = ema_run
    ckpt = run_dir / "checkpoints" / "enet" / "last.ckpt"
    average, raw = checkpoint_nets(ckpt)
    dm = SyntheticDataModule(num_train=16, num_val=8, num_test=8, image_size=(64, 96), seed=42)
    hand = NormalizedModel(create_model("enet", dm.num_classes))
    hand.load_state_dict({"validated": average, "raw": raw}[which])
    expected = evaluate(hand, dm.dataloader("val", train=False), dm.num_classes)["miou"]
    if which == "validated":
        assert expected == pytest.approx(out["eval"]["models"]["enet"]["miou"], abs=1e-6)
    proc = run_cli("task=evaluate", "models=[enet]", f"weights.enet={ckpt}", f"ckpt_weights={which}",
                   "data=synthetic", "data.num_train=16", "data.num_val=8", "data.num_test=8",
                   "data.image_size=[64,96]", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"enet: {ckpt} (checkpoint of epoch 1, {which} weights)" in proc.stdout
    report = json.loads((tmp_path / "run" / "eval_val.json").read_text())["models"]["enet"]
    assert report["miou"] == pytest.approx(expected, abs=1e-6)
    assert (report["epoch"], report["ckpt_weights"]) == (1, which)


def test_cli_checkpoint_errors_are_one_line(ema_run, tmp_path, capsys):
    """One error through the real entry point, the others in-process as its ``main`` runs them."""
    run_dir, _ = ema_run
    ckpt = run_dir / "checkpoints" / "enet" / "last.ckpt"
    line = one_error_line(run_cli("task=evaluate", "models=[erfnet]", f"weights.erfnet={ckpt}",
                                  "data=synthetic", f"hydra.run.dir={tmp_path / 'a'}"))
    assert line.startswith(f"error: weights.erfnet: {ckpt}: tensors do not fit a erfnet with 5 classes"), line
    line = refused_by_the_entry_point(tmp_path / "b", capsys, ["task=evaluate", "models=[mine]",
                                                               f"+weights.mine={ckpt}"])
    assert "a checkpoint names no architecture" in line, line
    line = refused_by_the_entry_point(tmp_path / "c", capsys, ["task=evaluate", "models=[enet]",
                                                               f"weights.enet={ckpt}", "ckpt_weights=ema"])
    assert "ckpt_weights='ema': expected one of ['validated', 'raw']" in line, line
