"""Figures: colour-coded label maps, per-image attack panels, transfer heatmaps, ASR curves.

Figures are drawn with matplotlib's object API on an Agg canvas, never through pyplot: the
process-wide backend and pyplot's figure registry stay untouched, and a figure is freed as soon
as its function returns (there is nothing to close). PNGs are written atomically (docs/design.md, "Outputs").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.patheffects import Normal, Stroke
from matplotlib.ticker import PercentFormatter

from ..io import atomic_write
from ..labels import IGNORE_INDEX, colorize
from .metrics_json import check_transfer

CHANGED_RGB = (0.85, 0.1, 0.1)
AREA_STYLE = ({"colors": "black", "linewidths": 2.6}, {"colors": "yellow", "linewidths": 1.2})
PANEL_WIDTH = 3.2  # inches per image panel
DPI = 100


def _save(fig: Figure, path: str | Path) -> Path:
    FigureCanvasAgg(fig)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def _rgb(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) numpy in [0, 1]."""
    return image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()


def _check_shape(name: str, t: torch.Tensor, shape: tuple) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"attack_panel: {name} has shape {tuple(t.shape)}, expected {shape}")


def _outline(ax, area: np.ndarray | None) -> None:
    """Draw the border of the attacked area, visible on any background."""
    if area is None or not area.any():
        return
    h, w = area.shape
    # A False border makes areas that touch the image edge closed outlines too.
    padded = np.pad(area.astype(float), 1)
    xs, ys = np.arange(-1, w + 1), np.arange(-1, h + 1)
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for style in AREA_STYLE:
        ax.contour(xs, ys, padded, levels=[0.5], **style)
    ax.set_xlim(xlim)  # the padding must not widen the image's frame
    ax.set_ylim(ylim)


def _share(mask: torch.Tensor, within: torch.Tensor) -> str:
    """``mask`` as a percentage of the ``within`` pixels, or "n/a" when there are none."""
    n = int(within.sum())
    return f"{100 * float((mask & within).sum()) / n:.1f}%" if n else "n/a"


def _show(ax, picture: np.ndarray, title: str) -> None:
    ax.imshow(picture, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def attack_panel(path: str | Path, image: torch.Tensor, x_adv: torch.Tensor, target: torch.Tensor,
                 clean_preds: Mapping[str, torch.Tensor], adv_preds: Mapping[str, torch.Tensor],
                 palette: Sequence[Sequence[int]], class_names: Sequence[str],
                 area: torch.Tensor | None = None, title: str = "") -> Path:
    """One image under attack: inputs and perturbation, then each model's clean/adversarial output.

    Row 0: input, perturbation amplified to the full range, adversarial input, ground truth.
    One row per model: clean prediction, adversarial prediction, changed pixels, and the
    image's own numbers (share wrong in the area before/after, share changed). A legend of
    class colours sits at the bottom; the attacked area, when given, is outlined in yellow.

    Args:
        path: PNG to write (atomically).
        image, x_adv: clean and adversarial image, floats in [0, 1].
        target: ground truth, 255 = ignored.
        clean_preds, adv_preds: model name -> predicted class ids (same names in both).
        palette: one RGB triple (0..255) per class.
        class_names: one name per class.
        area: attacked area A, or None for the whole image.
        title: figure title.

    Shape:
        image, x_adv: (3, H, W); target, predictions: (H, W) int64; area: (H, W) bool.
    """
    if list(clean_preds) != list(adv_preds):
        raise ValueError(f"attack_panel: clean_preds {list(clean_preds)} and adv_preds "
                         f"{list(adv_preds)} must name the same models")
    h, w = target.shape
    _check_shape("image", image, (3, h, w))
    _check_shape("x_adv", x_adv, (3, h, w))
    for name in clean_preds:
        _check_shape(f"clean_preds[{name!r}]", clean_preds[name], (h, w))
        _check_shape(f"adv_preds[{name!r}]", adv_preds[name], (h, w))
    if area is not None:
        _check_shape("area", area, (h, w))

    target = target.detach().cpu().long()
    valid = target != IGNORE_INDEX
    in_area = valid if area is None else valid & area.detach().cpu().bool()
    area_np = None if area is None else area.detach().cpu().bool().numpy()
    a_name = "image" if area is None else "A"
    img, adv = _rgb(image), _rgb(x_adv)
    delta = adv - img
    peak = float(np.abs(delta).max())
    gray = img.mean(axis=2, keepdims=True)

    panel_h = PANEL_WIDTH * h / w
    rows = 1 + len(clean_preds)
    fig = Figure(figsize=(4 * PANEL_WIDTH, rows * (panel_h + 0.45) + 1.0 + 0.4 * bool(title)),
                 dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 4, squeeze=False)

    _show(axes[0, 0], img, "input")
    if peak > 0:
        # delta in [-peak, peak] -> [0, 1]: the amplification factor is 1 / (2 peak).
        _show(axes[0, 1], 0.5 + delta / (2 * peak),
              f"perturbation ×{1 / (2 * peak):.3g}\n(max |δ| = {peak * 255:.1f}/255)")
    else:
        _show(axes[0, 1], np.full_like(img, 0.5), "perturbation (zero)")
    _show(axes[0, 2], adv, "adversarial input")
    _show(axes[0, 3], colorize(target, palette).numpy(), "ground truth")
    _outline(axes[0, 3], area_np)

    for row, name in enumerate(clean_preds, start=1):
        clean = clean_preds[name].detach().cpu().long()
        attacked = adv_preds[name].detach().cpu().long()
        changed = clean != attacked
        _show(axes[row, 0], colorize(clean, palette).numpy(), "clean prediction")
        axes[row, 0].set_ylabel(name, fontsize=13, fontweight="bold")
        _show(axes[row, 1], colorize(attacked, palette).numpy(), "adversarial prediction")
        _outline(axes[row, 1], area_np)
        # Changed pixels in red over a faded copy of the input, so they can be located.
        faded = np.repeat(0.7 + 0.3 * gray, 3, axis=2)
        faded[changed.numpy()] = CHANGED_RGB
        _show(axes[row, 2], faded, f"changed pixels ({_share(changed, in_area)} of {a_name})")
        _outline(axes[row, 2], area_np)
        lines = [f"{name}, this image",
                 f"wrong in {a_name}: {_share(clean != target, in_area)}"
                 f" → {_share(attacked != target, in_area)}",
                 f"changed in {a_name}: {_share(changed, in_area)}"]
        if area is not None:
            lines.append(f"changed outside A: {_share(changed, valid & ~in_area)}")
        axes[row, 3].axis("off")
        axes[row, 3].text(0.02, 0.5, "\n".join(lines), va="center", fontsize=10,
                          transform=axes[row, 3].transAxes)

    handles = [Patch(facecolor=np.asarray(c) / 255, edgecolor="0.4", label=n)
               for n, c in zip(class_names, palette)]
    handles.append(Patch(facecolor="black", edgecolor="0.4", label="ignored"))
    handles.append(Patch(facecolor=CHANGED_RGB, edgecolor="0.4", label="changed"))
    if area is not None:
        handles.append(Line2D([], [], color="yellow", linewidth=1.5, label="attacked area",
                              path_effects=[Stroke(linewidth=3.5, foreground="black"), Normal()]))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8),
               fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=13)
    return _save(fig, path)


def transfer_heatmap(path: str | Path, rows: Sequence[str], cols: Sequence[str],
                     asr: Sequence[Sequence[float]],
                     title: str = "transfer: attack success rate") -> Path:
    """Heatmap of success rates, each cell annotated as a percentage.

    Args:
        path: PNG to write (atomically).
        rows: source sets the perturbation was crafted on.
        cols: models it was evaluated on.
        asr: rates in [0, 1]. Shape: (len(rows), len(cols)).
        title: figure title.
    """
    check_transfer(rows, cols, asr)
    values = np.asarray(asr, dtype=float)
    fig = Figure(figsize=(max(4.5, 2.8 + 1.1 * len(cols)), max(3.2, 1.6 + 0.6 * len(rows))),
                 dpi=DPI, layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(values, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            ax.text(j, i, f"{100 * v:.1f}%", ha="center", va="center", fontsize=11,
                    color="white" if v > 0.55 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=30 if len(cols) > 4 else 0)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("crafted on")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="asr", format=PercentFormatter(1.0))
    return _save(fig, path)


def asr_curve(path: str | Path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
              xlabel: str, ylabel: str = "asr", title: str = "", percent: bool = True) -> Path:
    """Line plot of several series, e.g. success rate against eps or against steps.

    Args:
        path: PNG to write (atomically).
        series: name -> (xs, ys), xs and ys of equal length.
        xlabel, ylabel: axis labels.
        title: figure title.
        percent: ys are rates in [0, 1], drawn on a fixed 0-100% axis so runs compare.
    """
    if not series:
        raise ValueError("asr_curve: series is empty")
    for name, (xs, ys) in series.items():
        if len(xs) != len(ys) or not len(xs):
            raise ValueError(f"asr_curve: series {name!r} has {len(xs)} xs and {len(ys)} ys")
        if not all(math.isfinite(v) for v in (*xs, *ys)):
            raise ValueError(f"asr_curve: series {name!r} has a non-finite value")
        if percent and not all(0 <= v <= 1 for v in ys):
            raise ValueError(f"asr_curve: series {name!r} has ys outside [0, 1] "
                             f"(pass percent=False for values that are not rates)")
    fig = Figure(figsize=(6.4, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    if percent:
        ax.set_ylim(-0.02, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)
