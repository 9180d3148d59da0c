"""``scripts/training_curves.py`` on CSVLogger files written by hand (a resumed run included)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from PIL import Image

SCRIPT = ROOT / "scripts" / "training_curves.py"
COLUMNS = ["epoch", "step", "train/loss", "val/loss", "val/miou", "val_iou/road"]


def write_metrics(path: Path, val: dict[int, float], steps_per_epoch: int = 4) -> Path:
    """A CSVLogger ``metrics.csv``: train-loss rows with empty val columns, one val row per epoch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for epoch, miou in val.items():
            step = (epoch + 1) * steps_per_epoch - 1
            writer.writerow({"epoch": epoch, "step": step - 2, "train/loss": 1.0 / (epoch + 1)})
            writer.writerow({"epoch": epoch, "step": step, "val/loss": 0.5, "val/miou": miou,
                             "val_iou/road": 0.9})
    return path


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """``<run>/enet``: epochs 0-14 in version_0, killed, resumed from epoch 12 in version_1 (the
    re-done epochs 12-14 replace the first values, 0.9, which must not count); ``<run>/erfnet``:
    five epochs."""
    run = tmp_path / "camvid_run"
    first = {e: round(0.30 + 0.02 * e, 4) for e in range(12)} | {12: 0.9, 13: 0.9, 14: 0.9}
    write_metrics(run / "enet" / "version_0" / "metrics.csv", first)
    resumed = [0.50, 0.52, 0.51, 0.53, 0.52, 0.54, 0.53, 0.55]
    write_metrics(run / "enet" / "version_1" / "metrics.csv", dict(zip(range(12, 20), resumed)))
    write_metrics(run / "erfnet" / "version_0" / "metrics.csv", {0: 0.1, 1: 0.3, 2: 0.2, 3: 0.4, 4: 0.35})
    return run


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def table_row(stdout: str, label: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if line.split()[0] == label)
    return line.replace("(", " ").replace(")", " ").split()


def test_curves_of_a_resumed_run(run_dir, tmp_path):
    out = tmp_path / "plots" / "curves.png"
    proc = run_script(str(run_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    # enet, last 10 epochs (10-19): 0.50 0.52 | 0.50 0.52 0.51 0.53 0.52 0.54 0.53 0.55
    # sum 5.22 -> mean 52.20%; squared deviations sum to 23.6e-4, / 9, sqrt -> std 1.62%
    assert table_row(proc.stdout, "camvid_run/enet") == [
        "camvid_run/enet", "0-19", "55.00", "19", "10", "52.20", "1.62", "50.00", "55.00", "55.00"]
    # erfnet has only 5 epochs: all of them; mean 27.00, std sqrt(0.058 / 4) = 12.04%
    assert table_row(proc.stdout, "camvid_run/erfnet") == [
        "camvid_run/erfnet", "0-4", "40.00", "3", "5", "27.00", "12.04", "10.00", "40.00", "35.00"]
    assert f"plot: {out}" in proc.stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (770, 462)


def test_labels_single_files_and_last(run_dir, tmp_path):
    csv_file = run_dir / "erfnet" / "version_0" / "metrics.csv"
    proc = run_script(f"long={run_dir / 'enet'}", f"short={csv_file}", "--last", "3",
                      "--out", str(tmp_path / "c.png"))
    assert proc.returncode == 0, proc.stderr
    # last 3 of enet: 0.54 0.53 0.55 -> mean 54.00, std 1.00; of erfnet: 0.2 0.4 0.35 -> 31.67, 10.41
    assert table_row(proc.stdout, "long")[4:8] == ["3", "54.00", "1.00", "53.00"]
    assert table_row(proc.stdout, "short")[4:8] == ["3", "31.67", "10.41", "20.00"]


def test_other_metric_and_errors(run_dir, tmp_path):
    proc = run_script(str(run_dir / "erfnet"), "--metric", "val_iou/road", "--out", str(tmp_path / "r.png"))
    assert proc.returncode == 0, proc.stderr
    assert table_row(proc.stdout, "erfnet")[2] == "90.00"

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_script(str(empty))
    assert proc.returncode != 0 and f"error: {empty}: no metrics.csv under it" in proc.stderr
    proc = run_script(str(run_dir), "--metric", "val/nosuch", "--out", str(tmp_path / "n.png"))
    assert proc.returncode != 0 and "no val/nosuch values" in proc.stderr
