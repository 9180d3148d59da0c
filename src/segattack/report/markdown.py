"""``report.md`` and the end-of-run summary: a run's numbers and figures in readable form."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..io import write_text
from .metrics_json import check_transfer, validate_metrics

PER_MODEL_COLUMNS = (("clean mIoU", "clean_miou"), ("adv mIoU", "adv_miou"), ("asr", "asr"),
                     ("asr 95% CI", "asr_ci95"),
                     ("clean error in area", "clean_error_in_area"),
                     ("asr on correct", "asr_on_correct"),
                     ("fooling rate", "fooling_rate"), ("collateral", "collateral"),
                     ("pixels in area", "pixels_in_area"),
                     ("pixels correct", "pixels_correct_in_area"))
SUMMARY_COLUMNS = (("clean mIoU", "clean_miou"), ("adv mIoU", "adv_miou"), ("asr", "asr"),
                   ("clean err", "clean_error_in_area"), ("asr|right", "asr_on_correct"))


def _pct(rate) -> str:
    """A rate as a percentage; "–" for null (nothing to count) or a key an older run lacks."""
    return "–" if rate is None else f"{100 * rate:.1f}%"


def _cell(entry: dict, key: str) -> str:
    """One table cell: a rate as %, an interval as [lo, hi] %, a pixel count as an integer."""
    value = entry.get(key)
    if isinstance(value, list):
        return f"[{100 * value[0]:.1f}, {100 * value[1]:.1f}]%"
    if key.startswith("pixels_"):
        return "–" if value is None else str(value)
    return _pct(value)


def _over255(value: float) -> str:
    """0.0314 -> "8/255": pixel units as grey levels, the way eps is usually quoted."""
    levels = f"{value * 255:.1f}".removesuffix(".0")
    return f"{levels}/255"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _link(figure: str | Path, run_dir: Path) -> str:
    """Figure path (absolute, or relative to the current directory) as a link from run_dir."""
    rel = os.path.relpath(Path(figure).resolve(), run_dir.resolve())
    return f"![{Path(figure).stem}]({Path(rel).as_posix()})"


def write_report(run_dir: str | Path, metrics: dict, figures: Sequence[str | Path],
                 transfer: dict | None = None, title: str | None = None) -> Path:
    """Write ``run_dir/report.md`` (atomically): settings, per-model table, figures.

    Args:
        run_dir: the run's output folder (must exist).
        metrics: a schema-1 metrics dict (validated here).
        figures: PNG paths as written (absolute, or relative to the current directory);
            they are linked relative to ``run_dir``.
        transfer: ``{"rows", "cols", "asr"}`` as in ``transfer.json``, or None.
        title: page title; default names the method and mode.
    """
    validate_metrics(metrics)
    run_dir = Path(run_dir)
    attack, data = metrics["attack"], metrics["data"]
    sources = metrics["source_models"]
    goal = "untargeted"
    floor = "clean error in area"
    if attack["targeted"]:
        floor = "clean floor (at goal before)"
        goal = (f"targeted (class {attack['target_class']})" if attack["target_class"] is not None
                else f"targeted (map {attack['target_map']})")
    fitted = (f"fitted on `{data['fit_split']}`, " if data["fit_split"] is not None
              else "per-image perturbations, ")

    title = title or f"Attack report: {attack['method']}, {attack['mode']}"
    lines = [f"# {title}", ""]
    lines += _table(("method", "mode", "eps", "steps", "region", "area", "goal"),
                    [(str(attack["method"]), str(attack["mode"]),
                      f"{attack['eps']:.4g} ({_over255(attack['eps'])})", str(attack["steps"]),
                      str(attack["region"]), str(attack["area"]), goal)])
    lines += ["", f"Data: **{data['name']}**, {fitted}evaluated on `{data['eval_split']}` "
                  f"({data['num_images']} images). Attacked models: {', '.join(sources)}.", ""]
    trained = {m: d for m, d in (metrics.get("defences") or {}).items() if d}
    if trained:
        lines += ["Adversarially trained: " + "; ".join(
            f"{m} (against {d.get('method')}, loss {d.get('loss')}, eps {_over255(d.get('eps', 0))}, "
            f"{d.get('steps')} steps, ratio {d.get('ratio')})" for m, d in trained.items()) + ".", ""]

    lines += ["## Per model", ""]
    labels = [floor if key == "clean_error_in_area" else label for label, key in PER_MODEL_COLUMNS]
    lines += _table(("model", "attacked", *labels),
                    [(name, "yes" if name in sources else "no",
                      *(_cell(entry, key) for _, key in PER_MODEL_COLUMNS))
                     for name, entry in metrics["per_model"].items()])
    scored = ("targeted: only pixels whose label has a goal are scored; " if attack["targeted"]
              else "")
    lines += ["", f"Rates over the valid pixels of the area ({scored}null, shown as –: nothing "
                  "to count). asr on correct: among the pixels the model had right before the "
                  "attack (targeted: not at the goal), the share it gets wrong (at the goal) "
                  "after. 95% CI: bootstrap over images."]

    joint, pert, runtime = metrics["joint"], metrics["perturbation"], metrics["runtime"]
    ci = joint.get("asr_all_ci95")
    ci_text = f" (95% CI {_cell(joint, 'asr_all_ci95')})" if ci else ""
    lines += ["", "## Joint", "",
              f"- success on every attacked model at once (asr_all): {_pct(joint['asr_all'])}{ci_text}",
              f"- success on at least one attacked model (asr_any): {_pct(joint['asr_any'])}",
              *([f"- on pixels every attacked model had right (asr_all_on_correct): "
                 f"{_pct(joint['asr_all_on_correct'])}"] if "asr_all_on_correct" in joint else []),
              "", "## Perturbation", "",
              f"- L∞: {pert['linf']:.4g} ({_over255(pert['linf'])})",
              f"- mean L2 per image: {pert['l2_mean']:.4g}",
              f"- mean PSNR: {pert['psnr_mean']:.1f} dB",
              "", "## Runtime", "",
              f"{runtime['seconds']:.1f} s ({runtime['images_per_second']:.3g} images/s)"]

    png = metrics.get("png")
    if png:
        lines += ["", "## After 8-bit rounding (export_png)", "",
                  "The same metrics on the adversarial images as written to PNG.", ""]
        lines += _table(("model", "asr", "asr on correct", "adv mIoU"),
                        [(name, _pct(e.get("asr")), _pct(e.get("asr_on_correct")),
                          _pct(e.get("adv_miou"))) for name, e in png["per_model"].items()])
        lines += ["", f"- asr_all: {_pct(png['joint'].get('asr_all'))}, "
                      f"L∞ {png['perturbation']['linf']:.4g} ({_over255(png['perturbation']['linf'])})"]

    if transfer is not None:
        check_transfer(transfer["rows"], transfer["cols"], transfer["asr"])
        lines += ["", "## Transfer (asr)", ""]
        lines += _table(("crafted on ↓ / evaluated on →", *transfer["cols"]),
                        [(row, *(_pct(v) for v in values))
                         for row, values in zip(transfer["rows"], transfer["asr"])])

    if figures:
        lines += ["", "## Figures", ""]
        for figure in figures:
            lines += [_link(figure, run_dir), ""]
    return write_text(run_dir / "report.md", "\n".join(lines).rstrip("\n") + "\n")


def summary_table(metrics: dict) -> str:
    """A short fixed-width table of the per-model numbers, for the end of a CLI run.

    Attacked (source) models are marked with ``*``; a last line gives the joint rates.
    """
    validate_metrics(metrics)
    sources = metrics["source_models"]
    names = [name + ("*" if name in sources else "") for name in metrics["per_model"]]
    width = max(len("model"), *map(len, names))
    header = f"{'model':<{width}}" + "".join(f"  {label:>10}" for label, _ in SUMMARY_COLUMNS)
    rows = [f"{name:<{width}}" + "".join(f"  {_pct(entry.get(key)):>10}" for _, key in SUMMARY_COLUMNS)
            for name, entry in zip(names, metrics["per_model"].values())]
    joint = metrics["joint"]
    footer = (f"* attacked; joint asr_all {_pct(joint['asr_all'])}, "
              f"asr_any {_pct(joint['asr_any'])}")
    return "\n".join([header, *rows, footer])
