"""The robustness protocol's outputs (``task=robustness``): ``robustness.json``, ``robustness.md``
and the plot of robust pixel accuracy and mIoU against eps, from the ``metrics.json`` of each eps.

Robust pixel accuracy is the share of valid pixels still predicted right under the worst case
per image, robust mIoU the mIoU of those predictions; intervals are 95% bootstrap intervals
over images (``metrics.json``: ``adv_accuracy_ci95``, ``adv_miou_ci95``).
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


def eps_label(eps: float) -> str:
    return f"{eps * 255:.4g}/255"


def eps_folder(eps: float) -> str:
    """The run folder of one eps (``eps_4`` for 4/255)."""
    return f"eps_{eps * 255:.4g}".replace(".", "p")


def summarise(runs: Sequence[tuple[float, dict]]) -> dict:
    """One summary over the ``metrics.json`` of each eps (same models and images)."""
    first = runs[0][1]
    summary = {"dataset": first["data"]["name"], "eval_split": first["data"]["eval_split"],
               "num_images": first["data"]["num_images"], "region": first["attack"]["region"],
               "attacks": first["attack"]["members"] or [first["attack"]["method"]],
               "budget_per_image_max": first["attack"]["steps"],  # every attack's steps in full
               "eps": [eps for eps, _ in runs], "models": {}}
    for model, clean in first["per_model"].items():
        entry = {"clean": {"accuracy": clean["clean_accuracy"], "miou": clean["clean_miou"]},
                 "by_eps": []}
        for eps, metrics in runs:
            m = metrics["per_model"][model]
            entry["by_eps"].append({
                "eps": eps, "accuracy": m["adv_accuracy"], "accuracy_ci95": m["adv_accuracy_ci95"],
                "miou": m["adv_miou"], "miou_ci95": m["adv_miou_ci95"],
                "iou_per_class": m["adv_iou_per_class"],
                "iou_per_class_ci95": m["adv_iou_per_class_ci95"],
                "attacks": metrics.get("members", []),
                "forward_backward_per_image": metrics["runtime"]["steps_per_image"],
                "seconds": metrics["runtime"]["seconds"]})
        summary["models"][model] = entry
    return summary


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _ci(ci) -> str:
    return "" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def table(summary: dict) -> str:
    """Markdown: per model and eps, robust pixel accuracy and mIoU (95% intervals), each
    attack's share of images won (its own success rate on the images it attacked), the budget."""
    attacks = summary["attacks"]
    lines = [f"# Worst-case robustness: {summary['dataset']} {summary['eval_split']}, "
             f"{summary['num_images']} images, region {summary['region']}", "",
             "Per image, the worst case over the attacks (the adversarial image with the most "
             "pixels wrong). Pixel accuracy and mIoU in %, with 95% bootstrap intervals over "
             "images. Per attack: the share of images where it was the worst case (first attack "
             "wins a tie) and, in brackets, the share of valid pixels it fooled on the images it "
             "attacked (images already wholly fooled are not attacked again). Budget: forward and "
             "backward passes per image, all attacks together (at most "
             f"{summary['budget_per_image_max']}; early stops and skipped images spend less).", "",
             "| model | eps | pixel acc | mIoU | " + " | ".join(attacks) + " | budget |",
             "|---" * (5 + len(attacks)) + "|"]
    for model, entry in summary["models"].items():
        c = entry["clean"]
        lines.append(f"| {model} | clean | {_pct(c['accuracy'])} | {_pct(c['miou'])} | "
                     + " | ".join("" for _ in attacks) + " | 0 |")
        for r in entry["by_eps"]:
            cells = [f"{_pct(a['share_won'])} ({_pct(a['asr_on_attacked'])})" for a in r["attacks"]]
            budget = r["forward_backward_per_image"]
            lines.append(f"| {model} | {eps_label(r['eps'])} | {_pct(r['accuracy'])}"
                         f"{_ci(r['accuracy_ci95'])} | {_pct(r['miou'])}{_ci(r['miou_ci95'])} | "
                         + " | ".join(cells or ["-"] * len(attacks))
                         + f" | {'-' if budget is None else f'{budget:.0f}'} |")
    never = sorted({a["attack"] for entry in summary["models"].values() for r in entry["by_eps"]
                    for a in r["attacks"] if a["images_won"] == 0})
    if never:
        lines += ["", "Won no image at some eps: " + ", ".join(never) + " (see the table)."]
    return "\n".join(lines) + "\n"


def plot(path: str | Path, summary: dict) -> Path:
    """Robust pixel accuracy and mIoU against eps (0 = clean), one line per model, with the
    bootstrap intervals as bands."""
    fig = Figure(figsize=(9, 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    for model, entry in summary["models"].items():
        eps = np.asarray([0.0] + [r["eps"] * 255 for r in entry["by_eps"]])
        for ax, key in zip(axes, ("accuracy", "miou")):
            values = np.asarray([entry["clean"][key]] + [r[key] for r in entry["by_eps"]], dtype=float)
            line, = ax.plot(eps, values, marker="o", label=model)
            cis = [r[f"{key}_ci95"] for r in entry["by_eps"]]
            if all(ci is not None for ci in cis):
                low = [values[0]] + [ci[0] for ci in cis]
                high = [values[0]] + [ci[1] for ci in cis]
                ax.fill_between(eps, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    for ax, name in zip(axes, ("robust pixel accuracy", "robust mIoU")):
        ax.set_xlabel("eps (/255)")
        ax.set_ylabel(name)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"worst case over {len(summary['attacks'])} attack(s), {summary['dataset']} "
                 f"{summary['eval_split']}, {summary['num_images']} images")
    return _save(fig, path)


def write(out: Path, summary: dict) -> dict[str, Path]:
    """``robustness.json``, ``robustness.md`` and ``robustness.png`` in ``out``."""
    return {"json": write_text(out / "robustness.json", json.dumps(summary, indent=2) + "\n"),
            "md": write_text(out / "robustness.md", table(summary)),
            "png": plot(out / "robustness.png", summary)}
