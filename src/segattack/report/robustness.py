"""The worst-case robustness protocol's outputs: ``robustness.json``, ``robustness.md`` and the
plot of robust pixel accuracy and mIoU against eps, from the ``metrics.json`` of each eps.

Untargeted, full-area attacks: a pixel is robust when the model still predicts its label, so
robust pixel accuracy is ``1 - asr`` (its interval the asr interval mirrored) and robust mIoU is
the adversarial mIoU of the worst case per image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from ..io import write_text
from .figures import DPI, _save


def _mirror(ci):
    return None if ci is None else [1 - ci[1], 1 - ci[0]]


def eps_label(eps: float) -> str:
    return f"{eps * 255:g}/255"


def summarise(runs: Sequence[tuple[float, dict]]) -> dict:
    """One summary over the per-eps ``metrics.json`` of a protocol run (same models and images)."""
    first = runs[0][1]
    models = list(first["per_model"])
    summary = {"eps": [eps for eps, _ in runs], "num_images": first["data"]["num_images"],
               "eval_split": first["data"]["eval_split"], "dataset": first["data"]["name"],
               "attacks": [m["name"] for m in first.get("members") or []], "models": {}}
    for model in models:
        clean = first["per_model"][model]
        entry = {"clean": {"accuracy": 1 - clean["clean_error_in_area"], "miou": clean["clean_miou"],
                           "per_class": clean.get("clean_per_class_iou")},
                 "by_eps": {}}
        for eps, metrics in runs:
            m = metrics["per_model"][model]
            members = metrics.get("members") or []
            entry["by_eps"][eps_label(eps)] = {
                "eps": eps, "accuracy": 1 - m["asr"], "accuracy_ci95": _mirror(m.get("asr_ci95")),
                "miou": m["adv_miou"], "miou_ci95": m.get("adv_miou_ci95"),
                "per_class": m.get("adv_per_class_iou"),
                "attacks": {a["name"]: {"accuracy": a["accuracy"].get(model), "wins": a["wins"]}
                            for a in members},
                "forward_backward_per_image": metrics["runtime"].get("steps_per_image"),
                "seconds": metrics["runtime"]["seconds"]}
        summary["models"][model] = entry
    return summary


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _ci(ci) -> str:
    return "" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def table(summary: dict) -> str:
    """Markdown: per model and eps, clean and robust pixel accuracy and mIoU (95% bootstrap
    intervals over images), each attack's own accuracy and its share of images won, the budget."""
    attacks = summary["attacks"]
    lines = [f"# Worst-case robustness: {summary['dataset']} {summary['eval_split']}, "
             f"{summary['num_images']} images", "",
             "Per image, the worst case over the attacks (the image where most pixels are wrong). "
             "Pixel accuracy and mIoU in %, 95% bootstrap intervals over images; per attack: its "
             "own pixel accuracy / share of images where it was the worst case.", "",
             "| model | eps | pixel acc | mIoU | " + " | ".join(attacks) + " | fwd+bwd per image |",
             "|---" * (5 + len(attacks)) + "|"]
    for model, entry in summary["models"].items():
        c = entry["clean"]
        lines.append(f"| {model} | clean | {_pct(c['accuracy'])} | {_pct(c['miou'])} | "
                     + " | ".join("" for _ in attacks) + " | 0 |")
        for label, r in entry["by_eps"].items():
            cells = [f"{_pct(r['attacks'][a]['accuracy'])} / {_pct(r['attacks'][a]['wins'])}"
                     if a in r["attacks"] else "-" for a in attacks]
            budget = r["forward_backward_per_image"]
            lines.append(f"| {model} | {label} | {_pct(r['accuracy'])}{_ci(r['accuracy_ci95'])} | "
                         f"{_pct(r['miou'])}{_ci(r['miou_ci95'])} | " + " | ".join(cells)
                         + f" | {'-' if budget is None else f'{budget:.0f}'} |")
    never = [f"{a} at {label} ({model})" for model, entry in summary["models"].items()
             for label, r in entry["by_eps"].items() for a in attacks
             if a in r["attacks"] and not r["attacks"][a]["wins"]]
    if never:
        lines += ["", "Attacks that won no image: " + "; ".join(never) + "."]
    return "\n".join(lines) + "\n"


def plot(path: str | Path, summary: dict) -> Path:
    """Robust pixel accuracy and mIoU against eps (0 = clean), one line per model."""
    fig = Figure(figsize=(9, 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    for model, entry in summary["models"].items():
        eps = [0.0] + [r["eps"] * 255 for r in entry["by_eps"].values()]
        for ax, key in zip(axes, ("accuracy", "miou")):
            values = [entry["clean"][key]] + [r[key] for r in entry["by_eps"].values()]
            ax.plot(eps, np.asarray(values, dtype=float), marker="o", label=model)
    for ax, name in zip(axes, ("robust pixel accuracy", "robust mIoU")):
        ax.set_xlabel("eps (/255)")
        ax.set_ylabel(name)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"worst case over {len(summary['attacks'])} attacks, {summary['num_images']} images")
    return _save(fig, path)


def write(out: Path, summary: dict) -> dict[str, Path]:
    """``robustness.json``, ``robustness.md`` and ``robustness.png`` in ``out``."""
    return {"json": write_text(out / "robustness.json", json.dumps(summary, indent=2) + "\n"),
            "md": write_text(out / "robustness.md", table(summary)),
            "png": plot(out / "robustness.png", summary)}
