"""The benchmark scripts run (--quick, tiny synthetic data) and their two paths do the same work.

Slow (about a minute each on 2 cores): they keep the scripts from rotting, and check what makes
their comparisons fair: the Lightning path and the bare loop reach the same asr / loss, a
universal epoch takes one step per batch, speed options leave the results nearly unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow


def run_benchmark(script: str, tmp_path, *args: str) -> dict:
    out = tmp_path / f"{script}.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--quick",
                           "--threads", "1", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| " in proc.stdout  # printed a markdown table
    return json.loads(out.read_text())


def test_attack_throughput_paths_agree(tmp_path):
    data = run_benchmark("attack_throughput", tmp_path)
    assert {(r["method"], r["case"]) for r in data["rows"]} == {
        (m, c) for m in ("tanh", "pgd") for c in ("enet", "erfnet", "enet+erfnet")}
    for r in data["rows"]:
        for model, asr in r["asr_bare"].items():
            assert r["asr_lightning"][model] == pytest.approx(asr, abs=1e-6), r["case"]
            assert r["asr_api"][model] == pytest.approx(asr, abs=1e-6), r["case"]  # the API too
        assert r["lightning_img_steps_per_s"] > 0 and r["bare_img_steps_per_s"] > 0
    assert [j["K"] for j in data["joint"]] == [1, 2, 3]


def test_train_throughput_paths_agree(tmp_path):
    data = run_benchmark("train_throughput", tmp_path, "--precision", "32-true")
    for r in data["rows"]:
        assert r["loss_lightning"] == pytest.approx(r["loss_bare"], rel=1e-4), r["model"]


def test_universal_scaling_one_step_per_batch(tmp_path):
    data = run_benchmark("universal_scaling", tmp_path)
    assert [(r["images"], r["steps"]) for r in data["rows"]] == [(2, 1), (4, 2), (8, 4)]


def test_speed_options_keep_results(tmp_path):
    data = run_benchmark("speed_options", tmp_path, "--models", "enet")
    rows = {(r["job"], r["option"]): r for r in data["rows"]}
    assert set(rows) == {(j, o) for j in ("attack", "train") for o in
                         ("eager fp32", "channels_last fp32", "eager bf16", "channels_last bf16")}
    assert rows[("attack", "channels_last fp32")]["asr"] == pytest.approx(
        rows[("attack", "eager fp32")]["asr"], abs=0.01)
    assert rows[("train", "channels_last fp32")]["loss"] == pytest.approx(
        rows[("train", "eager fp32")]["loss"], rel=1e-3)
    assert rows[("train", "eager bf16")]["loss"] == pytest.approx(rows[("train", "eager fp32")]["loss"], rel=0.05)


def test_pgd_vs_torchattacks_runs(tmp_path):
    pytest.importorskip("torchattacks")
    data = run_benchmark("pgd_vs_torchattacks", tmp_path)
    assert [c["steps"] for c in data["curve"]] == [1, 2]
    for c in data["curve"]:
        assert 0.0 <= c["tanh"] <= 1.0 and 0.0 <= c["pgd"] <= 1.0


def test_attack_strength_runs(tmp_path):
    """Every contender on every case and region, one row per (case, region, contender, steps)."""
    data = run_benchmark("attack_strength", tmp_path, "--contenders", "tanh (default)", "pgd",
                         "segpgd (ours, reference)")
    rows = [r for r in data["rows"] if r["contender"] != "torchattacks PGD"]
    assert len(rows) == 3 * 2 * 3 * 2  # cases x regions x contenders x steps
    for r in rows:
        assert 0.0 <= r["asr"] <= 1.0 and r["seconds"] > 0
        if "+" in r["case"]:  # joint: asr_all is at most each model's asr
            assert r["asr"] <= min(r["per_model"].values()) + 1e-6


def test_attack_strength_defended_case_runs_every_contender(tmp_path):
    data = run_benchmark("attack_strength", tmp_path, "--defended", "--no-torchattacks",
                         "--cases", "enet_robust")
    rows = data["rows"]
    assert {r["contender"] for r in rows} >= {"pgd (default)", "apgd masked_ce", "padam cosine",
                                               "protocol (experiment=robustness)"}
    assert {r["steps"] for r in rows} == {9, 18} and all(0 <= r["asr"] <= 1 for r in rows)
    protocol = [r for r in rows if r["contender"].startswith("protocol")]
    assert all(r["steps_per_image"] <= r["steps"] for r in protocol)  # members share the budget


def test_protocol_throughput_times_the_protocol_and_each_member(tmp_path):
    data = run_benchmark("protocol_throughput", tmp_path)
    members = data["settings"]["members"]
    assert set(data["times"]) == {"protocol", *data["counts"]} and len(data["times"]) == members + 1
    assert data["ratio"] > 0
    # the protocol's first member draws the same start as that member alone: the worst case
    # over all members fools at least as many pixels per image
    first = data["counts"][data["first_member"]]
    assert all(p >= f for p, f in zip(data["counts"]["protocol"], first))
