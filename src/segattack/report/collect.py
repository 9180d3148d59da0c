"""One markdown table from several runs' ``metrics.json``: ``python -m segattack.report.collect RUN...``.

Each row is one run and one evaluated model (attacked models marked ``*``), so sweeps over eps,
methods or attacked sets read side by side.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = ("| run | method | mode | eps | steps | model | clean mIoU | adv mIoU | asr | clean err | "
          "fooling | collateral | asr_all |\n|" + "---|" * 13)


def rows(run_dir: Path) -> list[str]:
    m = json.loads((run_dir / "metrics.json").read_text())
    a = m["attack"]
    out = []
    for name, r in m["per_model"].items():
        star = "*" if name in m["source_models"] else ""
        out.append(f"| {run_dir.name} | {a['method']} | {a['mode']} | {a['eps'] * 255:.0f}/255 | "
                   f"{a['steps']} | {name}{star} | {r['clean_miou']:.1%} | {r['adv_miou']:.1%} | "
                   f"{r['asr']:.1%} | {r['clean_error_in_area']:.1%} | {r['fooling_rate']:.1%} | "
                   f"{r['collateral']:.1%} | {m['joint']['asr_all']:.1%} |")
    return out


def collect_table(run_dirs: list[Path]) -> str:
    """The table of every run in ``run_dirs`` that has a metrics.json, in the given order."""
    body = [row for d in run_dirs if (d / "metrics.json").is_file() for row in rows(d)]
    return "\n".join([HEADER, *body])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m segattack.report.collect RUN_DIR [RUN_DIR ...]")
    print(collect_table([Path(p) for p in sys.argv[1:]]))
