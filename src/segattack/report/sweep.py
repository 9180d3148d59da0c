"""One summary for a Hydra multirun: the table of every run and, when a single numeric key
varies, a plot of asr against it (``python -m segattack.report.sweep SWEEP_DIR`` to redo it).

A run is a sub-folder with Hydra's ``.hydra/`` record and a ``metrics.json``; runs are read in
job order and told apart by their overrides, so the summary works for any launcher.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from omegaconf import OmegaConf

from ..io import write_text
from .collect import collect_table

_FRACTION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")


@dataclass
class SweepRun:
    path: Path
    num: int
    overrides: dict[str, str]
    metrics: dict | None = field(default=None, repr=False)


def _parse_override(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.lstrip("+~"), value


def find_runs(sweep_dir: Path) -> list[SweepRun]:
    """The sweep's job folders in job order (``metrics`` None where a run wrote none)."""
    runs = []
    for hydra_dir in sorted(Path(sweep_dir).glob("*/.hydra")):
        overrides_file, hydra_file = hydra_dir / "overrides.yaml", hydra_dir / "hydra.yaml"
        if not overrides_file.is_file():
            continue
        overrides = dict(_parse_override(o) for o in OmegaConf.load(overrides_file))
        num = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.job.num", default=len(runs)) \
            if hydra_file.is_file() else len(runs)
        metrics_file = hydra_dir.parent / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        runs.append(SweepRun(hydra_dir.parent, int(num), overrides, metrics))
    return sorted(runs, key=lambda r: r.num)


def varying_keys(runs: list[SweepRun]) -> list[str]:
    """Override keys whose value is not the same in every run, in first-seen order."""
    keys = list(dict.fromkeys(k for r in runs for k in r.overrides))
    return [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]


def numeric_axis(key: str, values: list[str]) -> tuple[list[float], str] | None:
    """x values and axis label for override values, or None when one is not a number.

    ``k/255`` values that share their denominator stay in those units (``eps (x 1/255)``).
    """
    fractions = [_FRACTION.match(v or "") for v in values]
    if all(fractions) and len({m.group(2) for m in fractions}) == 1:
        denominator = fractions[0].group(2)
        return [float(m.group(1)) for m in fractions], f"{key} (x 1/{denominator})"
    try:
        return [float(Fraction(v)) if "/" in v else float(v) for v in values], key
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def asr_series(runs: list[SweepRun]) -> dict[str, list[float]]:
    """asr per evaluated model (present in every run) and joint asr_all when several are attacked."""
    models = [m for m in runs[0].metrics["per_model"] if all(m in r.metrics["per_model"] for r in runs)]
    series = {}
    for m in models:
        attacked = all(m in r.metrics["source_models"] for r in runs)
        series[f"{m} ({'attacked' if attacked else 'evaluated'})"] = [
            r.metrics["per_model"][m]["asr"] for r in runs]
    if all(len(r.metrics["source_models"]) > 1 for r in runs):
        series["asr_all (every attacked model fooled)"] = [r.metrics["joint"]["asr_all"] for r in runs]
    return series


def summarize_sweep(sweep_dir: str | Path, command: str | None = None) -> str:
    """Write ``summary.md`` (and ``asr_vs_<key>.png`` when it applies) into ``sweep_dir``; return
    the text to print."""
    from .figures import asr_curve

    sweep_dir = Path(sweep_dir)
    runs = find_runs(sweep_dir)
    done = [r for r in runs if r.metrics is not None]
    missing = [r.path.name for r in runs if r.metrics is None]
    varying = varying_keys(done)
    lines = [f"# Sweep summary: {len(done)} run{'s' * (len(done) != 1)}", ""]
    if command:
        lines += [f"`{command}`", ""]
    if varying:
        lines += [f"Varying: {', '.join(varying)}. Rows: one per run and evaluated model "
                  "(* attacked).", ""]
    lines.append(collect_table([r.path for r in done]))
    if missing:
        lines += ["", f"No metrics.json (failed, or task=transfer): {', '.join(missing)}"]
    plot = None
    if len(varying) == 1 and len(done) > 1:
        key = varying[0]
        axis = numeric_axis(key, [r.overrides.get(key) for r in done])
        if axis is not None:
            xs, xlabel = axis
            order = sorted(range(len(done)), key=lambda i: xs[i])
            series = {name: ([xs[i] for i in order], [ys[i] for i in order])
                      for name, ys in asr_series(done).items()}
            safe = re.sub(r"[^\w.-]", "_", key)
            plot = asr_curve(sweep_dir / f"asr_vs_{safe}.png", series, xlabel,
                             title=f"asr against {key} ({done[0].metrics['attack']['method']}, "
                                   f"{done[0].metrics['data']['name']} {done[0].metrics['data']['eval_split']})")
            lines += ["", f"![asr against {key}]({plot.name})"]
    summary = sweep_dir / "summary.md"
    write_text(summary, "\n".join(lines) + "\n")
    printed = [f"sweep summary ({len(done)} runs): {summary}", collect_table([r.path for r in done])]
    if missing:
        printed.append(f"no metrics.json: {', '.join(missing)}")
    if plot is not None:
        printed.append(f"asr against {varying[0]}: {plot}")
    return "\n".join(printed)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m segattack.report.sweep SWEEP_DIR")
    print(summarize_sweep(sys.argv[1]))
