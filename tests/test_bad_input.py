"""Bad input at the entry points and in the files they read: one line, exit status 2, no
traceback, no Hydra hint, no outputs; a failed run leaves none of its outputs."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    NUM_CLASSES,
    PER_IMAGE,
    ROOT,
    SIZE,
    UNIVERSAL,
    attack_cli,
    compose_attack_cfg,
    compose_train_cfg,
    quiet_trainer,
    run_cli,
    universal_file,
)
from PIL import Image

from segattack.attacks.outputs import assemble_metrics, write_outputs
from segattack.attacks.task import build_module, run_attack
from segattack.cli import run_task
from segattack.data.base import SegmentationDataset, label_lut
from segattack.errors import DataError, WeightsError
from segattack.files.weights import load_weights, save_weights
from segattack.models import NormalizedModel, create_model

HYDRA_FILES = {".hydra", "attack.log", "train_models.log"}  # Hydra's own, written before the task


def outputs(run_dir) -> list[str]:
    """What a run wrote besides Hydra's own files."""
    return sorted(p.name for p in run_dir.iterdir() if p.name not in HYDRA_FILES) if run_dir.exists() else []


def one_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- the entry points: Hydra's errors and the schema ---------------------------------------------
@pytest.mark.parametrize("overrides, line", [
    (["attack=nope"], "error: attack=nope: no such option; expected one of "
                      "['apgd', 'clip', 'ensemble', 'fgsm', 'ifgsm', 'padam', 'pgd', 'sigmoid', 'tanh']"),
    (["attack.stpes=3"], "error: Could not override 'attack.stpes'. To append to your config use "
                         "+attack.stpes=3 Key 'stpes' is not in struct"),
    (["eps=null"], "error: eps=null: expected a number in (0, 1] (pixel units of [0, 1] images, e.g. 8/255)"),
    (["source_models=enet"], "error: source_models='enet': expected a list in brackets, e.g. [a,b]"),
])
def test_attack_cli_refuses_in_one_line(tmp_path, overrides, line):
    run_dir = tmp_path / "run"
    assert one_line(run_cli(attack_cli(run_dir, *overrides))) == line
    assert outputs(run_dir) == []


def test_run_dir_that_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("")
    line = one_line(run_cli(attack_cli(tmp_path / "file" / "run")))
    assert line.startswith(f"error: {tmp_path / 'file'}") and "cannot write the run folder (Not a directory)" in line


def test_train_cli_refuses_in_one_line(tmp_path):
    proc = run_cli([sys.executable, str(ROOT / "train_models.py"), "data=synthetic", "logger=none",
                    "data.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}"])
    assert one_line(proc) == "error: data.batch_size=0: expected > 0"
    assert outputs(tmp_path / "run") == []


# --- weights, checked as a whole ----------------------------------------------------------------
def _save(path, arch="enet", **meta):
    torch.manual_seed(0)
    model = NormalizedModel(create_model(arch, NUM_CLASSES))
    fields = {"architecture": arch, "num_classes": NUM_CLASSES,
              "class_names": [f"c{i}" for i in range(NUM_CLASSES)], "input_size": list(SIZE), **meta}
    return model, save_weights(model, path, **fields)


def test_weights_of_another_architecture_than_the_name(tmp_path, capsys):
    _, erfnet = _save(tmp_path / "erfnet.safetensors", "erfnet")
    cfg = compose_attack_cfg(tmp_path / "run", ["region=full", f"weights.enet={erfnet}"])
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: weights.enet: {erfnet}: holds a erfnet model, expected enet\n"
    assert outputs(tmp_path / "run") == []


def test_nan_weights_refused_naming_the_file(tmp_path, nan_weights, capsys):
    cfg = compose_attack_cfg(tmp_path / "run", ["region=full", f"weights.enet={nan_weights}"])
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: weights.enet: {nan_weights}: ") and "hold NaN or infinite values" in err
    assert outputs(tmp_path / "run") == []


@pytest.mark.parametrize("field, value, expected", [
    ("num_classes", "five", "metadata num_classes='five': expected an integer"),
    ("mean", [0.5, 0.5], "metadata mean=[0.5,0.5]: expected at least 3 values"),
    ("std", [0.2, 0.0, 0.2], "metadata std=[0.2,0.0,0.2]: expected > 0"),
    ("architecture", "resnet", "metadata architecture='resnet': not a registered architecture"),
])
def test_malformed_metadata(tmp_path, field, value, expected):
    _, path = _save(tmp_path / "w.safetensors", **{field: value}) if field != "mean" else (None, None)
    if field == "mean":  # mean comes from the model: write it by hand
        from segattack.files.tensorfile import (
            read_metadata,
            read_tensors,
            write_tensor_file,
        )

        _, good = _save(tmp_path / "good.safetensors")
        path = write_tensor_file(tmp_path / "w.safetensors", read_tensors(good),
                                 {**read_metadata(good), "mean": value})
    with pytest.raises(WeightsError) as err:
        load_weights(path)
    assert str(err.value).startswith(f"{path}: {expected}")


def test_architecture_mismatch_message_is_short(tmp_path):
    from segattack.files.tensorfile import (
        read_metadata,
        read_tensors,
        write_tensor_file,
    )

    _, erfnet = _save(tmp_path / "erfnet.safetensors", "erfnet")
    path = write_tensor_file(tmp_path / "lying.safetensors", read_tensors(erfnet),
                             {**read_metadata(erfnet), "architecture": "enet"})
    with pytest.raises(WeightsError) as err:
        load_weights(path)
    message = str(err.value)
    assert message.startswith(f"{path}: tensors do not fit a enet with 5 classes: ")
    assert "missing" in message and "more" in message and len(message) < 400 and "\n" not in message


# --- labels of any integer type and range ------------------------------------------------------
@pytest.mark.parametrize("values, mode, expected", [
    ([[0, 70000]], "I", "label values [70000] are not classes"),
    ([[0, -1]], "I", "label values [-1] are not classes"),
    ([[0.0, 1.5]], "F", "label image holds floating-point values, expected integer class ids"),
])
def test_labels_out_of_range_refused_naming_the_file(tmp_path, values, mode, expected):
    path = tmp_path / "label.png"  # TIFF content: PNG holds no 32-bit or float values
    dtype = np.float32 if mode == "F" else np.int32
    Image.fromarray(np.array(values, dtype=dtype), mode=mode).save(path, format="TIFF")
    ds = SegmentationDataset([(path, path)], label_lut({0: 0, 1: 1}))
    with pytest.raises(DataError) as err:
        ds.read_label(0)
    assert str(err.value).startswith(f"{path}: {expected}")


# --- a failed run writes nothing; a run that measures nothing says so --------------------------
def test_nan_universal_perturbation_leaves_no_outputs(tmp_path, weights):
    out = tmp_path / "run"
    cfg = compose_attack_cfg(out, [*UNIVERSAL, f"weights.enet={weights}", "attack.steps=1"])
    from hydra.utils import instantiate

    from segattack.attacks.spec import build_attack_spec

    dm = instantiate(cfg.data)
    module = build_module(cfg, build_attack_spec(cfg, dm.image_size, dm.num_classes))
    with torch.no_grad():
        module.w.fill_(float("nan"))
    loader = dm.dataloader("val", train=False)
    quiet_trainer().test(module, dataloaders=loader, verbose=False)
    metrics = assemble_metrics(cfg, module, dm, 1.0, len(loader.dataset))
    out.mkdir()
    with pytest.raises(ValueError, match="metrics.json"):
        write_outputs(cfg, out, module, dm, metrics, logger=False)
    assert sorted(p.name for p in out.iterdir()) == []  # no figures/, no perturbation.safetensors


def test_saved_nan_perturbation_refused_naming_the_file(tmp_path, weights, capsys):
    path = universal_file(tmp_path / "p.safetensors", {"w": torch.full((1, 3, *SIZE), float("nan"))},
                          eps=4 / 255)
    cfg = compose_attack_cfg(tmp_path / "run", [*UNIVERSAL, f"weights.enet={weights}", f"perturbation={path}"])
    with pytest.raises(SystemExit):
        run_task(run_attack, cfg)
    assert capsys.readouterr().err == f"error: {path}: w holds NaN or infinite values (expected finite numbers)\n"
    assert outputs(tmp_path / "run") == []


def test_class_region_absent_from_every_image_warns(tmp_path, weights, caplog, monkeypatch):
    from segattack.attacks import task

    class NoCars(task.PerturbationModule):  # class 4 (car) relabelled road (2): absent everywhere
        def test_step(self, batch, i):
            x, y, *index = batch
            return super().test_step((x, torch.where(y == 4, 2, y), *index), i)

    monkeypatch.setattr(task, "PerturbationModule", NoCars)
    cfg = compose_attack_cfg(tmp_path / "run", [f"weights.enet={weights}", "attack=fgsm", "region=class",
                                               "region.classes=[4]", "+data.limit=1"])
    with caplog.at_level("WARNING"):
        run_attack(cfg)
    assert "the area (class [4]) holds no valid pixel in any of the 1 evaluated images" in caplog.text
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["per_model"]["enet"]["asr"] is None


# --- a full disk or a read-only run folder: one line naming the path, nothing half-written --------
def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_at_the_outputs_names_the_output_not_its_staging_folder(tmp_path, weights, monkeypatch,
                                                                           capsys):
    out = tmp_path / "run"
    cfg = compose_attack_cfg(out, [*PER_IMAGE, f"weights.enet={weights}", "+data.limit=2"])
    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"error: {out / 'metrics.json'}: write failed (No space left on device); "
                                       "previous file kept\n")
    assert outputs(out) == []


def test_full_disk_at_a_training_checkpoint_names_the_run_folder(tmp_path, monkeypatch, capsys):
    from fsspec.implementations.local import LocalFileOpener

    from segattack.training.evaluate import run

    out = tmp_path / "run"
    cfg = compose_train_cfg(out)
    monkeypatch.setattr(LocalFileOpener, "write", full_disk)  # Lightning writes checkpoints through fsspec
    with pytest.raises(SystemExit) as exit_:
        run_task(run, cfg)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {out}: cannot write (No space left on device)\n"
    assert not list(out.rglob("*.ckpt"))


# The entry point with its run log failing: ``logging.FileHandler.<method>`` raises ``errno``.
LOG_FAILS = """
import errno, logging, os, runpy, sys
def refuse(self, *args):
    raise OSError(errno.{code}, os.strerror(errno.{code}), self.baseFilename)
def emit(self, record):  # as FileHandler.emit reports a failed write
    try:
        refuse(self)
    except OSError:
        self.handleError(record)
logging.FileHandler.{method} = {replacement}
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("method, code, line", [
    ("_open", "EROFS", "{log}: cannot write the run folder (Read-only file system)"),  # the log cannot be made
    ("emit", "ENOSPC", "{log}: cannot write (No space left on device)"),  # the disk fills up during the run
])
def test_run_log_that_cannot_be_written(tmp_path, weights, method, code, line):
    run_dir = tmp_path / "run"
    script = LOG_FAILS.format(code=code, method=method, replacement="refuse" if method == "_open" else "emit")
    proc = run_cli([sys.executable, "-c", script, *attack_cli(run_dir, *PER_IMAGE, f"weights.enet={weights}")[1:]])
    assert one_line(proc) == "error: " + line.format(log=run_dir / "attack.log")
    assert outputs(run_dir) == []
