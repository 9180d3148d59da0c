"""scripts/reproduce_results.sh: its list of runs, and ONLY selecting none of them (no attack runs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import ROOT


def test_only_selects_runs_and_the_plain_setting_is_listed(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_results.sh"), str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ONLY": "^nothing$",  # the script's `python`: this one
                               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = re.findall(r"^== (\S+): (.*)$", proc.stdout, re.M)
    names = [n for n, _ in lines]
    assert {"local_enet_eps1", "local_joint_eps8", "local_erfnet_eps4_plain", "baseline_joint_pgd",
            "transfer_eps4", "universal_joint_full_eps8", "universal_pgd_joint_full_eps8",
            "hide_pedestrians_erfnet", "robustness_erfnet_robust_eps8", "transfer_defended_eps4",
            "universal_pgd_defended"} <= set(names)
    assert len(names) == len(set(names))  # every run has its own directory
    assert all(why == "not in ONLY" for _, why in lines)
    assert "asr_vs_eps.png not drawn" in proc.stdout and not any(tmp_path.iterdir())
