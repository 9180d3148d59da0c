"""One markdown table from several runs' ``metrics.json``: ``python -m segattack.report.collect RUN...``.

Each row is one run and one evaluated model (attacked models marked ``*``), so sweeps over eps,
methods or attacked sets read side by side.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("run", "method", "mode", "eps", "steps", "model", "clean mIoU", "adv mIoU", "asr",
           "asr 95% CI", "clean err", "asr on correct", "fooling", "collateral", "pixels in area",
           "asr_all", "asr_all 95% CI", "asr_all on correct")
HEADER = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)


def _pct(v) -> str:
    """A rate; "–" for null (nothing to count) or a key an older run does not have."""
    return "–" if v is None else f"{v:.1%}"


def _ci(v) -> str:
    return "–" if not v else f"[{v[0]:.1%}, {v[1]:.1%}]"


def rows(run_dir: Path) -> list[str]:
    m = json.loads((run_dir / "metrics.json").read_text())
    a, j = m["attack"], m["joint"]
    out = []
    for name, r in m["per_model"].items():
        star = "*" if name in m["source_models"] else ""
        cells = (run_dir.name, a["method"], a["mode"], f"{a['eps'] * 255:.0f}/255", a["steps"],
                 f"{name}{star}", _pct(r["clean_miou"]), _pct(r["adv_miou"]), _pct(r["asr"]),
                 _ci(r.get("asr_ci95")), _pct(r["clean_error_in_area"]),
                 _pct(r.get("asr_on_correct")), _pct(r["fooling_rate"]), _pct(r["collateral"]),
                 r.get("pixels_in_area", "–"), _pct(j["asr_all"]), _ci(j.get("asr_all_ci95")),
                 _pct(j.get("asr_all_on_correct")))
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return out


def collect_table(run_dirs: list[Path]) -> str:
    """The table of every run in ``run_dirs`` that has a metrics.json, in the given order."""
    body = [row for d in run_dirs if (d / "metrics.json").is_file() for row in rows(d)]
    return "\n".join([HEADER, *body])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m segattack.report.collect RUN_DIR [RUN_DIR ...]")
    print(collect_table([Path(p) for p in sys.argv[1:]]))
