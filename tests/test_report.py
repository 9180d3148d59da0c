"""Report package: metrics.json schema checks, atomic writes, figures and report.md."""

from __future__ import annotations

import errno
import json
import math
import re
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from segattack.io import OutputError
from segattack.report import (
    SCHEMA_VERSION,
    asr_curve,
    attack_panel,
    summary_table,
    transfer_heatmap,
    validate_metrics,
    write_metrics,
    write_report,
    write_transfer,
)

EPS = 8 / 255
NAMES = ("sky", "road", "car")
PALETTE = ((70, 130, 180), (128, 64, 128), (0, 0, 142))


def sample_metrics() -> dict:
    """A valid schema-1 dict for a joint attack on enet and erfnet."""
    return {
        "schema": 1,
        "attack": {"method": "tanh", "mode": "universal", "eps": EPS, "steps": 200,
                   "region": "box", "area": "box", "targeted": False, "target_class": None},
        "source_models": ["enet", "erfnet"],
        "data": {"name": "camvid", "fit_split": "train", "eval_split": "val", "num_images": 101},
        "per_model": {
            "enet": {"clean_miou": 0.4531, "adv_miou": 0.1207, "asr": 0.8024,
                     "clean_error_in_area": 0.2012, "fooling_rate": 0.75, "collateral": 0.0123},
            "erfnet": {"clean_miou": 0.5, "adv_miou": 0.25, "asr": 0.6, "clean_error_in_area": 0.1,
                       "fooling_rate": 0.55, "collateral": 0.0},
        },
        "joint": {"asr_all": 0.1234, "asr_any": 0.5},
        "perturbation": {"linf": EPS, "l2_mean": 1.25, "psnr_mean": 35.21},
        "runtime": {"seconds": 12.34, "images_per_second": 8.2},
    }


def set_key(obj: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        obj = obj[key]
    obj[last] = value


def del_key(obj: dict, path: str) -> None:
    *parents, last = path.split(".")
    for key in parents:
        obj = obj[key]
    del obj[last]


def fail_writes(monkeypatch) -> None:
    """Every text write fails like a full disk would."""
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", full)


# ---------------------------------------------------------------- metrics.json


def test_valid_metrics_round_trip(tmp_path):
    metrics = sample_metrics()
    metrics["per_model"]["enet"]["per_class_iou"] = [0.1, 0.2]  # keys may be added
    validate_metrics(metrics)
    path = write_metrics(tmp_path / "metrics.json", metrics)
    assert path == tmp_path / "metrics.json"
    assert json.loads(path.read_text()) == metrics
    assert SCHEMA_VERSION == metrics["schema"]


@pytest.mark.parametrize("edit, key", [
    (lambda m: del_key(m, "joint"), "joint"),
    (lambda m: del_key(m, "attack.eps"), "attack.eps"),
    (lambda m: del_key(m, "per_model.erfnet.collateral"), "per_model.erfnet.collateral"),
    (lambda m: del_key(m, "runtime.images_per_second"), "runtime.images_per_second"),
    (lambda m: set_key(m, "per_model.enet.asr", 1.3), "per_model.enet.asr must be in [0, 1], got 1.3"),
    (lambda m: set_key(m, "joint.asr_all", -0.1), "joint.asr_all"),
    (lambda m: set_key(m, "perturbation.psnr_mean", math.nan), "perturbation.psnr_mean must be finite"),
    (lambda m: set_key(m, "runtime.seconds", math.inf), "runtime.seconds"),
    (lambda m: set_key(m, "perturbation.linf", -EPS), "perturbation.linf"),
    (lambda m: set_key(m, "source_models", ["enet", "erfnet", "bisenet"]), "per_model.bisenet"),
    (lambda m: set_key(m, "source_models", []), "source_models"),
    (lambda m: set_key(m, "schema", 2), "schema must be 1, got 2"),
    (lambda m: set_key(m, "attack.eps", "8/255"), "attack.eps must be a number"),
    (lambda m: set_key(m, "attack.steps", 2.5), "attack.steps"),
    (lambda m: set_key(m, "data.num_images", True), "data.num_images"),
    (lambda m: set_key(m, "attack.targeted", "no"), "attack.targeted"),
    (lambda m: set_key(m, "attack.targeted", True), "attack.target_class"),
    (lambda m: set_key(m, "per_model.enet", 0.5), "per_model.enet must be an object"),
])
def test_each_defect_names_its_key(edit, key):
    metrics = sample_metrics()
    edit(metrics)
    with pytest.raises(ValueError, match=r"^metrics\.json: " + re.escape(key)):
        validate_metrics(metrics)


def test_targeted_metrics_with_class_pass():
    metrics = sample_metrics()
    metrics["attack"].update(targeted=True, target_class=3)
    metrics["data"]["fit_split"] = None  # per-image attacks fit nothing
    validate_metrics(metrics)


def test_invalid_metrics_leave_previous_file(tmp_path):
    path = write_metrics(tmp_path / "metrics.json", sample_metrics())
    before = path.read_bytes()
    bad = sample_metrics()
    bad["per_model"]["enet"]["asr"] = 1.3
    with pytest.raises(ValueError, match="per_model.enet.asr"):
        write_metrics(path, bad)
    assert path.read_bytes() == before


def test_failing_write_keeps_previous_metrics(tmp_path, monkeypatch):
    path = write_metrics(tmp_path / "metrics.json", sample_metrics())
    before = path.read_bytes()
    changed = sample_metrics()
    changed["runtime"]["seconds"] = 99.0
    fail_writes(monkeypatch)
    with pytest.raises(OutputError, match="previous file kept"):
        write_metrics(path, changed)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp file left


def test_transfer_round_trip_and_shape(tmp_path):
    rows, cols = ["enet", "erfnet", "enet+erfnet"], ["enet", "erfnet"]
    asr = [[0.9, 0.3], [0.2, 0.85], [0.8, 0.75]]
    path = write_transfer(tmp_path / "transfer.json", rows, cols, asr)
    assert json.loads(path.read_text()) == {"rows": rows, "cols": cols, "asr": asr}
    with pytest.raises(ValueError, match=r"asr\[1\] has 1 values, expected 2"):
        write_transfer(path, rows, cols, [[0.9, 0.3], [0.2], [0.8, 0.75]])
    with pytest.raises(ValueError, match="asr has 2 rows, expected 3"):
        write_transfer(path, rows, cols, asr[:2])
    with pytest.raises(ValueError, match=r"asr\[0\]\[1\] must be in \[0, 1\]"):
        write_transfer(path, rows, cols, [[0.9, 1.5], [0.2, 0.85], [0.8, 0.75]])
    assert json.loads(path.read_text())["asr"] == asr


# ---------------------------------------------------------------- figures


def toy_attack(area: bool = True):
    """A 3x24x32 image, its labels, and enet/erfnet predictions that flip inside a box."""
    g = torch.Generator().manual_seed(0)
    h, w = 24, 32
    image = torch.rand(3, h, w, generator=g)
    target = (torch.arange(w) * 3 // w).expand(h, w).clone()
    target[:2] = 255
    box = torch.zeros(h, w, dtype=torch.bool)
    box[8:18, 10:26] = True
    delta = (torch.rand(3, h, w, generator=g) * 2 - 1) * EPS * box
    x_adv = (image + delta).clamp(0, 1)
    clean = {"enet": target.clamp(0, 2), "erfnet": target.clamp(0, 2).flip(1)}
    adv = {name: torch.where(box, (pred + 1) % 3, pred) for name, pred in clean.items()}
    return image, x_adv, target, clean, adv, box if area else None


def assert_png(path: Path) -> tuple[int, int]:
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()  # a truncated file fails here
        assert im.width > 100 and im.height > 100
        return im.size


@pytest.mark.parametrize("with_area", [True, False])
def test_attack_panel_png(tmp_path, with_area):
    image, x_adv, target, clean, adv, area = toy_attack(with_area)
    path = attack_panel(tmp_path / "panel.png", image, x_adv, target, clean, adv, PALETTE, NAMES,
                        area=area, title="tanh, eps 8/255")
    width, height = assert_png(path)
    assert height > width / 2  # two model rows below the input row


def test_attack_panel_grows_with_models_and_handles_zero_delta(tmp_path):
    image, _, target, clean, adv, _ = toy_attack()
    one = attack_panel(tmp_path / "one.png", image, image, target, {"enet": clean["enet"]},
                       {"enet": clean["enet"]}, PALETTE, NAMES)
    two = attack_panel(tmp_path / "two.png", image, image, target, clean, adv, PALETTE, NAMES)
    assert assert_png(two)[1] > assert_png(one)[1]


def test_attack_panel_rejects_bad_shapes(tmp_path):
    image, x_adv, target, clean, adv, area = toy_attack()
    with pytest.raises(ValueError, match="x_adv has shape"):
        attack_panel(tmp_path / "p.png", image, x_adv[:, :-1], target, clean, adv, PALETTE, NAMES)
    with pytest.raises(ValueError, match="same models"):
        attack_panel(tmp_path / "p.png", image, x_adv, target, clean, {"enet": adv["enet"]},
                     PALETTE, NAMES)
    assert not (tmp_path / "p.png").exists()


def test_transfer_heatmap_and_curve_png(tmp_path):
    heat = transfer_heatmap(tmp_path / "transfer.png", ["enet", "erfnet"], ["enet", "erfnet"],
                            [[0.9, 0.3], [0.2, 0.85]])
    assert_png(heat)
    curve = asr_curve(tmp_path / "curve.png",
                      {"tanh": ([2, 4, 8], [0.1, 0.4, 0.8]), "pgd": ([2, 4, 8], [0.05, 0.3, 0.7])},
                      xlabel="eps (k/255)")
    assert_png(curve)
    with pytest.raises(ValueError, match="'pgd' has 2 xs and 3 ys"):
        asr_curve(tmp_path / "bad.png", {"pgd": ([2, 4], [0.1, 0.2, 0.3])}, xlabel="eps")
    with pytest.raises(ValueError, match="outside"):
        asr_curve(tmp_path / "bad.png", {"psnr": ([2, 4], [40.0, 35.0])}, xlabel="eps")
    assert not (tmp_path / "bad.png").exists()


def test_failing_figure_write_keeps_previous_png(tmp_path, monkeypatch):
    path = transfer_heatmap(tmp_path / "transfer.png", ["enet"], ["enet"], [[0.5]])
    before = path.read_bytes()

    def half_then_fail(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(OutputError):
        transfer_heatmap(path, ["enet"], ["enet"], [[0.9]])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transfer.png"]


# ---------------------------------------------------------------- report.md


def test_report_numbers_tables_and_links(tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    figures.mkdir()
    panel = transfer_heatmap(figures / "panel.png", ["enet"], ["enet"], [[0.5]])
    metrics = sample_metrics()
    metrics["source_models"] = ["enet"]  # erfnet evaluated only (transfer)
    transfer = {"rows": ["enet"], "cols": ["enet", "erfnet"], "asr": [[0.8024, 0.6]]}
    monkeypatch.chdir(tmp_path)  # a relative figure path is relative to the current folder
    path = write_report(tmp_path, metrics, [panel, "figures/curve.png"], transfer=transfer)
    assert path == tmp_path / "report.md"
    text = path.read_text()
    assert text.startswith("# Attack report: tanh, universal\n")
    assert "| tanh | universal | 0.03137 (8/255) | 200 | box | box | untargeted |" in text
    # a run without the later keys (interval, asr on correct, pixel counts) shows "–" there
    assert "| enet | yes | 45.3% | 12.1% | 80.2% | – | 20.1% | – | 75.0% | 1.2% | – | – |" in text
    assert "| erfnet | no | 50.0% | 25.0% | 60.0% | – | 10.0% | – | 55.0% | 0.0% | – | – |" in text
    assert "(asr_all): 12.3%" in text and "(asr_any): 50.0%" in text
    assert "L∞: 0.03137 (8/255)" in text
    assert "mean L2 per image: 1.25" in text and "mean PSNR: 35.2 dB" in text
    assert "12.3 s (8.2 images/s)" in text
    assert "fitted on `train`, evaluated on `val` (101 images)" in text
    assert "| enet | 80.2% | 60.0% |" in text
    assert "![panel](figures/panel.png)" in text
    assert "![curve](figures/curve.png)" in text


def test_report_title_target_and_validation(tmp_path):
    metrics = sample_metrics()
    metrics["attack"].update(targeted=True, target_class=3, eps=4.5 / 255)
    text = write_report(tmp_path, metrics, [], title="Local attack").read_text()
    assert text.startswith("# Local attack\n")
    assert "(4.5/255)" in text and "targeted (class 3)" in text
    assert "## Transfer" not in text and "## Figures" not in text
    del metrics["joint"]
    with pytest.raises(ValueError, match="joint is missing"):
        write_report(tmp_path, metrics, [])


def test_failing_report_write_keeps_previous(tmp_path, monkeypatch):
    path = write_report(tmp_path, sample_metrics(), [])
    before = path.read_bytes()
    fail_writes(monkeypatch)
    with pytest.raises(OutputError):
        write_report(tmp_path, sample_metrics(), [], title="new")
    assert path.read_bytes() == before


def test_summary_table_fixed_width():
    metrics = sample_metrics()
    metrics["source_models"] = ["enet"]
    lines = summary_table(metrics).splitlines()
    assert lines[0].split() == ["model", "clean", "mIoU", "adv", "mIoU", "asr", "clean", "err",
                                "asr|right"]
    assert lines[1].split() == ["enet*", "45.3%", "12.1%", "80.2%", "20.1%", "–"]
    assert lines[2].split() == ["erfnet", "50.0%", "25.0%", "60.0%", "10.0%", "–"]
    assert len({len(line) for line in lines[:3]}) == 1  # columns line up
    assert "asr_all 12.3%" in lines[3]


def test_collect_table_has_one_row_per_run_and_model(tmp_path):
    from segattack.report.collect import collect_table

    for i, asr in enumerate((0.25, 0.75)):
        run = tmp_path / f"run{i}"
        run.mkdir()
        metrics = sample_metrics()
        metrics["per_model"]["enet"]["asr"] = asr
        write_metrics(run / "metrics.json", metrics)
    (tmp_path / "not_a_run").mkdir()
    table = collect_table(sorted(tmp_path.iterdir()))
    lines = table.splitlines()
    assert len(lines) == 2 + 2 * len(sample_metrics()["per_model"])
    assert "| run0 |" in table and "25.0%" in table and "75.0%" in table
    assert "enet*" in table
