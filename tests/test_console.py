"""What ``attack.py`` prints: a quiet console by default (the full log in the run's attack.log),
everything with ``verbose=true``; W&B's results read back from its offline run files."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, random_weights, run_entry
from helpers import TINY_SIZE as SIZE
from PIL import Image

BOX = (16, 24)  # the region: a centred box, so the perturbation image is grey outside it
RUN = [*TINY, "num_figures=2", "region=box", f"region.size=[{BOX[0]},{BOX[1]}]",
       "source_models=[enet,enet2]"]
NOISE = ("litlogger", "LeafSpec", "anonymous setting", "GPU available", "does not have many workers")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def wandb_run(weights, tmp_path_factory):
    """The default logger (W&B, offline), default verbosity."""
    out = tmp_path_factory.mktemp("wandb_run")
    # W&B stages a Table's media outside the run, under WANDB_DATA_DIR (default ~/.local/share)
    proc = run_entry("attack.py", *RUN, *weights, f"hydra.run.dir={out}",
                     env={"WANDB_DATA_DIR": str(out / "wandb_data")})
    return out, proc


def test_quiet_console_prints_our_lines_only(wandb_run):
    out, proc = wandb_run
    console = proc.stdout + proc.stderr
    for noise in NOISE:
        assert noise not in console, noise
    assert "wandb:" not in console  # no W&B banner nor history block
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    # ours: the W&B line, the table (header, 2 models, footnote), the report's path
    assert lines[0].startswith("W&B run saved offline; upload it with: wandb sync ")
    assert lines[1].split()[:3] == ["model", "clean", "mIoU"]
    assert [line.split()[0] for line in lines[2:4]] == ["enet*", "enet2*"]
    assert lines[-1] == f"report: {out / 'report.md'}" and len(lines) == 6
    # the progress bar (stderr): images done / total, time and steps per image, running asr
    last = proc.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert re.match(r"attack tanh [\d.]+/255, 2 steps/img: 100%", last) and "| 2/2 img [" in last
    assert "s/img" in last and all(f"{k}=" in last for k in ("asr_enet", "asr_enet2", "asr_all"))
    # the full log still has Lightning's INFO lines, once each
    log = (out / "attack.log").read_text()
    assert log.count("GPU available") == 1 and "[lightning.pytorch" in log


def test_verbose_brings_everything_back_once(weights, tmp_path):
    """A universal run with verbose=true: Lightning's lines are back, each once."""
    proc = run_entry("attack.py", *RUN, *weights, "logger=csv", "verbose=true", "mode=universal",
                     f"hydra.run.dir={tmp_path}")
    err = proc.stderr
    assert err.count("GPU available") == 1  # shown, and no longer twice
    assert "litlogger" in err
    # the fit's bar: optimiser steps done / total with the loss and each attacked model's asr
    fit = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("fit tanh")]
    assert fit and "100%" in fit[-1] and "| 2/2 [" in fit[-1]
    assert all(f"{k}=" in fit[-1] for k in ("loss", "asr_enet", "asr_enet2"))


# --- W&B: the offline run's files --------------------------------------------------------------
def read_wandb_records(path):
    """The records of a ``run-*.wandb`` file: W&B's transaction log, in LevelDB's log format
    (32 KiB blocks of chunks with a 7-byte header) holding ``wandb_internal_pb2.Record``s."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf, records = path.read_bytes(), 32768, 7, b"", []  # 7: W&B's own header
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):  # block trailer / padding
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            records.append(record)
    return records


def final_summary(records) -> dict:
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            for item in r.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary


def test_wandb_run_holds_table_perturbation_config_and_metrics(wandb_run):
    out, _ = wandb_run
    metrics = json.loads((out / "metrics.json").read_text())
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    records = read_wandb_records(next(run_dir.glob("run-*.wandb")))
    summary = final_summary(records)

    # metrics.json is the run's summary, nested as on disk (JSON both ways: exact floats)
    for key in ("attack", "per_model", "joint", "perturbation", "data", "source_models"):
        assert summary[key] == metrics[key], key
    # the config, resolved
    config = {item.key: json.loads(item.value_json) for r in records
              if r.WhichOneof("record_type") == "config" for item in r.config.update}
    assert config["eps"] == "4/255" and config["attack"]["steps"] == 2
    assert config["source_models"] == ["enet", "enet2"]

    # the per-image table: one row per kept image, overlays of every model, asr per model. With
    # its media it is the run's "run_table" artifact; the manifest says where its files are.
    assert summary["per_image/_type"] == "table-file" and summary["per_image/nrows"] == 2
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    files = {e.path: Path(e.local_path) for e in artifact.manifest.contents}
    table = json.loads(files["per_image.table.json"].read_text())
    assert table["columns"] == ["index", "image", "clean prediction", "adversarial prediction",
                                "asr enet", "asr enet2"]
    assert [row[0] for row in table["data"]] == [0, 1]
    for row in table["data"]:
        for image in row[1:4]:
            assert image["_type"] == "image-file" and image["path"] in files
        for overlay in row[2:4]:  # clean and adversarial predictions over the image
            assert set(overlay["masks"]) == {"label", "enet", "enet2"}
            assert all(m["path"] in files for m in overlay["masks"].values())
    for col, model in ((4, "enet"), (5, "enet2")):
        asr = [row[col] for row in table["data"]]
        assert all(0 <= a <= 1 for a in asr)
        overall = metrics["per_model"][model]["asr"]  # both images kept: overall lies between them
        assert min(asr) - 1e-6 <= overall <= max(asr) + 1e-6

    # the perturbation as an image: grey (delta = 0) outside the box, not grey inside
    image = np.array(Image.open(run_dir / "files" / summary["perturbation/path"]))
    assert image.shape == (*SIZE, 3)
    top, left = (SIZE[0] - BOX[0]) // 2, (SIZE[1] - BOX[1]) // 2
    inside = np.zeros(SIZE, bool)
    inside[top:top + BOX[0], left:left + BOX[1]] = True
    assert np.all(np.abs(image[~inside].astype(int) - 128) <= 1)
    assert np.abs(image[inside].astype(int) - 128).max() > 10
