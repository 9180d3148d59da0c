"""Sweeps: ``python attack.py -m ...`` runs into folders named by their overrides and ends with
one summary (table + asr plot) in the sweep folder, also printed; a bad value in any job stops the
sweep before the first job starts. Real entry points, tiny sizes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import SMALL, SMALL_SYNTHETIC, TINY, random_weights, run_entry

from segattack.report.collect import COLUMNS
from segattack.report.sweep import SweepRun, numeric_axis, summarize_sweep, varying_keys

SWEEP = [*TINY, "logger=none", "num_figures=0", "region=full", "source_models=[enet,enet2]",
         "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("sweep")
    weights = random_weights(tmp_path_factory.mktemp("weights"))
    proc = run_entry("attack.py", "-m", *SWEEP, *weights, "eps=2/255,8/255",
                     f"hydra.sweep.dir={sweep_dir}")
    return sweep_dir, proc


def test_sweep_folders_are_named_by_their_overrides(sweep):
    sweep_dir, _ = sweep
    runs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert runs == ["eps=2_255", "eps=8_255"]
    for name, eps in [("eps=2_255", 2 / 255), ("eps=8_255", 8 / 255)]:
        m = json.loads((sweep_dir / name / "metrics.json").read_text())
        assert m["attack"]["eps"] == pytest.approx(eps)
        assert (sweep_dir / name / "attack.log").is_file()


def test_sweep_summary_table_and_plot(sweep):
    sweep_dir, proc = sweep
    summary = (sweep_dir / "summary.md").read_text()
    assert summary.startswith("# Sweep summary: 2 runs")
    assert "python attack.py -m" in summary and "eps=2/255,8/255" in summary
    assert "Varying: eps." in summary
    rows = [line for line in summary.splitlines() if line.startswith("| eps=")]
    # one row per run and evaluated model, in job order, with the values of each metrics.json
    assert [r.split("|")[1].strip() for r in rows] == ["eps=2_255"] * 2 + ["eps=8_255"] * 2
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        m = json.loads((sweep_dir / cells[0] / "metrics.json").read_text())
        col = dict(zip(COLUMNS, cells))  # the collect columns
        model = col["model"].rstrip("*")
        assert col["eps"] == f"{m['attack']['eps'] * 255:.0f}/255"
        assert col["asr"] == f"{m['per_model'][model]['asr']:.1%}"
        assert col["asr_all"] == f"{m['joint']['asr_all']:.1%}"
    plot = sweep_dir / "asr_vs_eps.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![asr against eps](asr_vs_eps.png)" in summary
    # printed once, at the end, after both runs' own tables
    out = proc.stdout
    assert out.count("sweep summary (2 runs)") == 1
    assert out.index("sweep summary") > out.rindex("report: ")
    assert all(r in out for r in rows) and str(plot) in out


@pytest.mark.parametrize("script, overrides, line", [
    ("attack.py", [*SWEEP, "eps=2/255,4/255,2"],
     "error: sweep job 3 of 3 (eps=2): eps=2: expected 0 < eps <= 1 (pixel units of [0, 1] images, e.g. 8/255)"),
    ("train_models.py", [*SMALL, *SMALL_SYNTHETIC, "seed=1,2", "optimizer.lr=1e-3,0"],
     ("error: sweep job 2 of 4 (seed=1 optimizer.lr=0); 4 of 4 (seed=2 optimizer.lr=0): "
      "optimizer.lr=0.0: expected 0 < lr <= 10")),
])
def test_bad_value_in_a_later_job_stops_the_sweep_before_any_job(tmp_path, script, overrides, line):
    sweep_dir = tmp_path / "sweep"
    weights = random_weights(tmp_path / "weights") if script == "attack.py" else []
    proc = run_entry(script, "-m", *overrides, *weights, f"hydra.sweep.dir={sweep_dir}", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [line]
    assert "Launching" not in proc.stdout + proc.stderr  # no job started
    assert not sweep_dir.exists()


def test_a_mistake_every_job_shares_is_said_once(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_entry("attack.py", "-m", *SWEEP, *random_weights(tmp_path / "weights"), "eps=2/255,4/255",
                     "attack.steps=0", f"hydra.sweep.dir={sweep_dir}", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == ["error: attack.steps=0: expected > 0"]
    assert not sweep_dir.exists()


def test_summary_can_be_rebuilt_and_skips_failed_runs(sweep, tmp_path):
    sweep_dir, _ = sweep
    # a copy with one run's metrics.json missing (a failed job)
    copy = tmp_path / "copy"
    shutil.copytree(sweep_dir, copy)
    (copy / "eps=8_255" / "metrics.json").unlink()
    (copy / "asr_vs_eps.png").unlink()
    printed = summarize_sweep(copy)
    assert "sweep summary (1 runs)" in printed and "no metrics.json: eps=8_255" in printed
    assert not (copy / "asr_vs_eps.png").exists()  # one point: no plot


def test_varying_keys_and_axes():
    runs = [SweepRun(Path("a"), 0, {"eps": "1/255", "attack": "pgd"}),
            SweepRun(Path("b"), 1, {"eps": "4/255", "attack": "pgd"})]
    assert varying_keys(runs) == ["eps"]
    assert numeric_axis("eps", ["1/255", "4/255"]) == ([1.0, 4.0], "eps (x 1/255)")
    assert numeric_axis("attack.steps", ["5", "20"]) == ([5.0, 20.0], "attack.steps")
    assert numeric_axis("eps", ["0.01", "1/255"]) == ([0.01, pytest.approx(1 / 255)], "eps")
    assert numeric_axis("attack", ["pgd", "tanh"]) is None
