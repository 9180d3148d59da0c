"""The training entry point end to end on synthetic data: in-process, as a CLI, resumed, with DDP."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import ROOT, compose_train_cfg, run_until_file_then_kill
from omegaconf import open_dict

from segattack.cli import run_task
from segattack.data import SyntheticDataModule
from segattack.errors import ConfigError
from segattack.files.weights import load_weights, read_metadata
from segattack.metrics.iou import SegmentationIoU
from segattack.training.ema import EMAWeights
from segattack.training.task import train

# The subprocess runs: 4 steps of 8 synthetic images per epoch, about a second each.
CLI = ["models=[enet]", "torch_threads=1", "trainer.enable_progress_bar=false"]
CLI_SYNTHETIC = ["data=synthetic", "data.num_train=32", "data.num_val=8", "data.image_size=[64,96]"]


def cli(run_dir: Path, *overrides: str, synthetic: bool = True, logger: str = "none") -> list[str]:
    return [sys.executable, str(ROOT / "train_models.py"), *CLI, f"logger={logger}",
            *(CLI_SYNTHETIC if synthetic else []), f"hydra.run.dir={run_dir}", *overrides]


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def load_ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- in-process ----------------------------------------------------------------------------------

def test_fast_dev_run(train_cfg, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"  # anything written relative to the working folder would show here
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with open_dict(train_cfg):
        train_cfg.trainer.fast_dev_run = True
    (result,) = train(train_cfg)
    assert result["model"] == "enet"
    assert 0.0 <= result["best_val_miou"] <= 1.0
    assert Path(result["weights"]) == tmp_path / "weights" / "enet.safetensors"
    assert not any(cwd.iterdir()), "outputs go to paths.output_dir only"


def test_short_fit_learns(tmp_path):
    """A real fit: enet reaches val mIoU far above chance (5 classes: about 0.2) in six epochs.

    Measured with the default seed 42: 0.82 (other seeds: 0.68 to 0.85), in about 20 s on one
    thread.
    """
    cfg = compose_train_cfg(tmp_path, ["optimizer.lr=5e-3", "trainer.max_epochs=6",
                                       "data.num_train=64", "data.num_val=16",
                                       "data.image_size=[96,128]", "trainer.num_sanity_val_steps=0"])
    (result,) = train(cfg)
    assert result["epochs"] == 6
    assert result["best_val_miou"] > 0.5, result

    weights = Path(cfg.paths.weights_dir) / "enet.safetensors"
    assert weights.is_file() and result["weights"] == str(weights)
    meta = read_metadata(weights)
    assert meta["val_miou"] == pytest.approx(result["best_val_miou"], abs=1e-7)
    assert meta["architecture"] == "enet" and meta["num_classes"] == 5
    assert meta["dataset"] == "synthetic" and meta["input_size"] == [96, 128]
    assert meta["seed"] == 42

    # the exported model scores what its metadata says on the same validation images
    model, _ = load_weights(weights, expect_architecture="enet", expect_num_classes=5)
    dm = SyntheticDataModule(num_train=64, num_val=16, image_size=(96, 128), seed=cfg.seed)
    iou = SegmentationIoU(5)
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            iou.update(model(x).argmax(1), y)
    assert float(iou.compute()["miou"]) == pytest.approx(meta["val_miou"], abs=1e-5)

    ckpts = sorted(p.name for p in (tmp_path / "checkpoints" / "enet").iterdir())
    assert "last.ckpt" in ckpts and any(name.startswith("best-epoch") for name in ckpts)

    # init_weights: a run that starts from the exported file (and cannot learn: lr 1e-12, as lr 0 is
    # refused) scores like it, far above what a random start scores
    again = compose_train_cfg(tmp_path / "again", [
        "optimizer.lr=1e-12", "trainer.max_epochs=1", "data.num_train=64", "data.num_val=16",
        "data.image_size=[96,128]", "trainer.num_sanity_val_steps=0", f"init_weights.enet={weights}"])
    (continued,) = train(again)
    assert continued["best_val_miou"] > 0.5, continued


@pytest.mark.parametrize("override, message", [
    ("models=[]", "models=[]: expected at least 1 value"),
    ("class_weighting=inverse", "class_weighting='inverse'"),
    ("schedule=step", "schedule='step'"),
    ("ema_decay=1.0", "ema_decay=1.0"),
    ("models=[nosuchnet]", "unknown model 'nosuchnet'"),
])
def test_bad_config_is_a_one_line_error(tmp_path, capsys, override, message):
    """``run_task`` (what the entry point calls) turns user mistakes into ``error: ...``, exit 2."""
    cfg = compose_train_cfg(tmp_path, [override])
    with pytest.raises(SystemExit) as info:
        run_task(train, cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err


def test_bad_config_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"expected one of \['enet', 'median', 'none'\]"):
        train(compose_train_cfg(tmp_path, ["class_weighting=inverse"]))


def test_missing_data_root_in_process(tmp_path, capsys):
    cfg = compose_train_cfg(tmp_path, ["data=camvid", f"data.root={tmp_path / 'nowhere'}"],
                            synthetic=False)
    with pytest.raises(SystemExit) as info:
        run_task(train, cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: CamVid train split: missing {tmp_path / 'nowhere' / 'train'}," in err
    assert "python scripts/get_camvid.py" in err


# --- the command line ------------------------------------------------------------------------------

def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_cli_unknown_model(tmp_path):
    line = error_line(run_cli(cli(tmp_path, "models=[nosuchnet]")))
    assert "unknown model 'nosuchnet'" in line
    assert "'enet'" in line and "'erfnet'" in line  # the known models


def test_cli_missing_data_root(tmp_path):
    line = error_line(run_cli(cli(tmp_path, "data=camvid", "data.root=/nonexistent", synthetic=False)))
    assert line.startswith("error: CamVid train split: missing /nonexistent/train, /nonexistent/trainannot")
    assert "python scripts/get_camvid.py" in line


# --- resume after a kill ---------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [(), ("ema_decay=0.9",)], ids=["plain", "ema"])
def test_resume_after_kill(tmp_path, extra):
    """SIGKILL after the first epoch's checkpoint, rerun the same command: it resumes from
    ``last.ckpt`` and ends where an uninterrupted run of the same command ends (with
    ``ema_decay``: both the moving average and the raw weights).

    The match is exact because SegmentationModule keeps torch's RNG state in its checkpoints
    (shuffle order and dropout masks continue as if never interrupted); Lightning alone would
    resume with the freshly seeded state, equal epoch/global_step but other numbers.
    """
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    args = cli(killed, "trainer.max_epochs=3", *extra, logger="csv")
    last = killed / "checkpoints" / "enet" / "last.ckpt"
    run_until_file_then_kill(args, last)
    at_kill = load_ckpt(last)
    assert at_kill["epoch"] == 0 and at_kill["global_step"] == 4  # after the first epoch

    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Lightning's INFO lines are in the run's full log (the console shows warnings only)
    log = (killed / "train_models.log").read_text()
    assert f"Restored all states from the checkpoint at {last}" in log
    # the resumed run trained epochs 1 and 2 only (its own CSV log, version_1)
    with open(killed / "enet" / "version_1" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({int(r["epoch"]) for r in rows if r.get("val/miou")}) == [1, 2]

    uninterrupted = run_cli(cli(fresh, "trainer.max_epochs=3", *extra, logger="csv"))
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    a, b = load_ckpt(last), load_ckpt(fresh / "checkpoints" / "enet" / "last.ckpt")
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (2, 12)
    states = ["state_dict"] + (["current_model_state"] if extra else [])
    assert all(s in a and s in b for s in states)
    for state in states:
        for key, value in b[state].items():
            assert torch.allclose(a[state][key].float(), value.float(), atol=1e-6), (state, key)
    meta_a = read_metadata(killed / "weights" / "enet.safetensors")
    meta_b = read_metadata(fresh / "weights" / "enet.safetensors")
    assert meta_a["val_miou"] == pytest.approx(meta_b["val_miou"], abs=1e-4)
    assert meta_a["epoch"] == meta_b["epoch"]
    assert a["callbacks"] and b["callbacks"]
    for key in a["callbacks"]:
        if key.startswith("ExportBestWeights"):
            assert a["callbacks"][key]["best"] == pytest.approx(b["callbacks"][key]["best"], abs=1e-4)


# --- DDP on CPU --------------------------------------------------------------------------------------

def test_ddp_two_cpu_processes(tmp_path):
    """``trainer=ddp`` with two gloo processes finishes and writes the weights once."""
    proc = run_cli(cli(tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                       "trainer.max_epochs=1", "data.num_train=16"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting with 2 processes" in (tmp_path / "train_models.log").read_text()
    assert "sync_batchnorm needs CUDA" in proc.stdout + proc.stderr  # torch has no CPU SyncBatchNorm
    weights = tmp_path / "weights" / "enet.safetensors"
    model, meta = load_weights(weights, expect_architecture="enet", expect_num_classes=5)
    assert meta["epoch"] == 0 and meta["global_step"] == 1  # 16 images / 2 ranks / batch 8
    assert "enet: best val mIoU 0." in proc.stdout


def test_ema_decay_warms_up_to_its_value():
    """The average after each update, by hand: the first copies the weights, the n-th (n >= 1)
    decays by min(decay, (1 + n) / (10 + n)); the cap holds once the warm-up passes it."""
    class One(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    module, ema = One(), EMAWeights(decay=0.3)
    ema.setup(None, module, "fit")
    expected, decays = None, []
    for n, value in enumerate([4.0, 8.0, 0.0, 2.0, 6.0, 1.0]):
        module.w.data.fill_(value)
        ema._average_model.update_parameters(module)
        d = min(0.3, (1 + n) / (10 + n)) if n else 0.0
        decays.append(d)
        expected = value if n == 0 else d * expected + (1 - d) * value
        assert ema._average_model.module.w.item() == pytest.approx(expected, rel=1e-6), n
    assert decays[1:3] == pytest.approx([2 / 11, 3 / 12]) and decays[3:] == [0.3] * 3  # warm-up, then the cap


def test_ema_average_follows_the_model_to_its_device():
    """Lightning builds the average in ``setup``, before the strategy moves the model (to a GPU):
    ``on_fit_start`` must move the average after it, or every step copies weights to the host."""
    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2))

    module, ema = Tiny(), EMAWeights(decay=0.9)
    ema.setup(None, module, "fit")
    module.to("meta")  # stands for the strategy's move to the accelerator (no GPU in CI)
    ema.on_fit_start(None, module)
    average = ema.average_of(module)
    assert {t.device.type for t in [*average.parameters(), *average.buffers()]} == {"meta"}
