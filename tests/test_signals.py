"""SIGINT/SIGTERM sent to real tiny runs: they stop at once with 130/143, print one line saying
what was kept and how to resume, and leave no half-written output."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, SIZE, attack_cli
from test_bad_input import outputs

from segattack.files.weights import load_weights

TRAIN = ["data=synthetic", "logger=none", "models=[enet]", "trainer.max_epochs=200", "data.num_train=8",
         "data.num_val=4", "data.image_size=[32,48]", "torch_threads=1", "trainer.enable_progress_bar=false",
         "+trainer.enable_model_summary=false"]
LINE_WITHIN = 10.0  # seconds from the signal to the line (one step of a tiny run takes well under 1 s)


def signal_when(args: list[str], path: Path, signum: int, timeout: float = 300) -> tuple[int, list[str], float]:
    """Run ``args``, send ``signum`` once ``path`` exists; (return code, stderr lines, seconds from
    the signal to the last line)."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), s) for s in proc.stderr))
    reader.start()
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    sent = time.monotonic()
    proc.send_signal(signum)
    proc.wait(timeout=120)
    reader.join()
    text = [s.rstrip("\n") for _, s in lines if s.strip()]
    assert lines and lines[-1][0] >= sent, f"the run ended before the signal:\n{''.join(s for _, s in lines)[-3000:]}"
    return proc.returncode, text, lines[-1][0] - sent


def no_temporary_files(run: Path) -> list[str]:
    return [str(p) for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".staging-")]


@pytest.mark.slow
def test_sigterm_during_training_keeps_whole_files_and_resumes(tmp_path):
    """It used to exit 0 with nothing on stderr."""
    run = tmp_path / "run"
    code, err, seconds = signal_when([sys.executable, "train_models.py", *TRAIN, f"hydra.run.dir={run}"],
                                     run / "checkpoints" / "enet" / "last.ckpt", signal.SIGTERM)
    assert code == 143 and seconds < LINE_WITHIN, err
    line = err[-1]
    assert line.startswith("interrupted by SIGTERM: kept checkpoints/enet/last.ckpt"), line
    assert "weights/enet.safetensors" in line and f"in {run}; resume with: python train_models.py" in line
    assert no_temporary_files(run) == []
    ckpt = torch.load(run / "checkpoints" / "enet" / "last.ckpt", map_location="cpu", weights_only=True)
    load_weights(run / "weights" / "enet.safetensors")  # whole and valid
    # the printed command resumes from that checkpoint (fewer epochs, so it ends at once)
    command = shlex.split(line.split("resume with: ", 1)[1])
    command = [sys.executable, *command[1:], f"trainer.max_epochs={ckpt['epoch'] + 2}"]
    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = torch.load(run / "checkpoints" / "enet" / "last.ckpt", map_location="cpu", weights_only=True)
    assert after["epoch"] == ckpt["epoch"] + 2 - 1  # continued, not started again


def test_sigint_during_a_per_image_attack_leaves_nothing(tmp_path, weights):
    """It used to exit 1 with no message and leave adversarial_png/."""
    run = tmp_path / "run"
    args = attack_cli(run, f"weights.enet={weights}", "mode=per_image", "attack=pgd", "attack.steps=500",
                      "attack.early_stop=false", "region=full", "save_adversarial=all", "export_png=true",
                      "data.batch_size=1")
    code, err, seconds = signal_when(args, run / "adversarial_png", signal.SIGINT)
    assert code == 130 and seconds < LINE_WITHIN, err
    assert err[-1].startswith("interrupted by SIGINT: nothing kept (a per-image attack starts clean); "
                              "run again with: python attack.py"), err[-1]
    assert outputs(run) == []
    assert no_temporary_files(run) == []


@pytest.mark.slow
def test_sigterm_during_a_universal_fit_keeps_its_checkpoint(tmp_path, weights):
    run = tmp_path / "run"
    args = attack_cli(run, f"weights.enet={weights}", "mode=universal", "region=full", "attack.steps=2000",
                      "checkpoint_every=2", f"data.image_size=[{SIZE[0]},{SIZE[1]}]")
    code, err, seconds = signal_when(args, run / "checkpoints" / "last.ckpt", signal.SIGTERM)
    assert code == 143 and seconds < LINE_WITHIN, err
    assert err[-1].startswith(f"interrupted by SIGTERM: kept checkpoints/last.ckpt in {run}; resume with: "
                              "python attack.py"), err[-1]
    torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not (run / "metrics.json").exists() and no_temporary_files(run) == []
