"""Val mIoU against epochs for one or more training runs: a PNG and the spread over the last epochs.

    python scripts/training_curves.py outputs/camvid_enet outputs/camvid_erfnet --out curves.png
    python scripts/training_curves.py erfnet150=outputs/camvid_erfnet --last 10

Each argument is a run folder of ``train_models.py logger=csv`` (``<run>/<model>/version_N/
metrics.csv``, one curve per model), a model folder, or a ``metrics.csv``; ``LABEL=PATH`` names its
curve. A resumed run logs into a new ``version_N``: versions are merged, and where an epoch was
logged twice (re-done after a kill) the later version's value is kept. Printed per curve: the
epochs, the best epoch, and mean / std (n-1) / min / max of the metric over the last ``--last``
epochs (all epochs where there are fewer), in percent.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from pathlib import Path


def version_number(path: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", path.parent.name)
    return int(match.group(1)) if match else -1


def read_curve(csv_files: list[Path], metric: str = "val/miou") -> dict[int, float]:
    """``epoch -> metric`` from CSVLogger files, later versions winning where epochs repeat."""
    curve: dict[int, float] = {}
    for path in sorted(csv_files, key=version_number):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get(metric) not in (None, ""):
                    curve[int(row["epoch"])] = float(row[metric])
    return dict(sorted(curve.items()))


def find_curves(arg: str) -> dict[str, list[Path]]:
    """``label -> metrics.csv files`` for one command-line argument (``[LABEL=]PATH``)."""
    label, sep, path = arg.partition("=")
    if not sep:
        label, path = None, arg
    root = Path(path)
    if root.is_file():
        return {label or str(root): [root]}
    if not root.is_dir():
        raise SystemExit(f"error: {root}: no such run folder or metrics.csv")
    groups: dict[Path, list[Path]] = {}
    for f in root.glob("**/metrics.csv"):
        # <model>/version_N/metrics.csv -> <model>; a bare version folder or file -> its parent
        key = f.parent.parent if version_number(f) >= 0 else f.parent
        groups.setdefault(key, []).append(f)
    if not groups:
        raise SystemExit(f"error: {root}: no metrics.csv under it (was the run made with logger=csv?)")
    out = {}
    for key, files in sorted(groups.items()):
        name = key.relative_to(root).as_posix() if key != root else ""
        base = label or root.name
        out[f"{base}/{name}" if name and (label is None or len(groups) > 1) else base] = files
    return out


def spread(curve: dict[int, float], last: int) -> dict:
    """Best epoch and the statistics of the last ``last`` epochs of ``curve``."""
    epochs = sorted(curve)
    tail = [curve[e] for e in epochs[-last:]]
    best = max(epochs, key=curve.get)
    return {"epochs": len(epochs), "first": epochs[0], "final": epochs[-1], "best_epoch": best,
            "best": curve[best], "n": len(tail), "mean": statistics.fmean(tail),
            "std": statistics.stdev(tail) if len(tail) > 1 else 0.0,
            "min": min(tail), "max": max(tail), "last": tail[-1]}


def plot(curves: dict[str, dict[int, float]], path: Path, metric: str, last: int) -> Path:
    # The object API on an Agg canvas: no pyplot, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, curve in curves.items():
        epochs = sorted(curve)
        (line,) = ax.plot(epochs, [100 * curve[e] for e in epochs], label=label, lw=1.4)
        tail = epochs[-last:]
        ax.axvspan(tail[0], tail[-1], color=line.get_color(), alpha=0.08, lw=0)
        best = max(epochs, key=curve.get)
        ax.plot([best], [100 * curve[best]], "o", color=line.get_color(), ms=4)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{metric} per epoch (dot: best epoch; shaded: last {last} epochs)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="[LABEL=]run folder, model folder or metrics.csv")
    parser.add_argument("--out", type=Path, default=Path("training_curves.png"), help="PNG to write")
    parser.add_argument("--last", type=int, default=10, help="epochs at the end to summarise")
    parser.add_argument("--metric", default="val/miou", help="CSV column to plot (default val/miou)")
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error("--last must be at least 1")

    curves = {}
    for arg in args.runs:
        for label, files in find_curves(arg).items():
            curve = read_curve(files, args.metric)
            if not curve:
                raise SystemExit(f"error: {label}: no {args.metric} values in {[str(f) for f in files]}")
            curves[label] = curve
    rows = {label: spread(curve, args.last) for label, curve in curves.items()}
    width = max(len("run"), *map(len, rows))
    print(f"{'run':<{width}}  epochs  best (epoch)   last-n  mean    std   min    max    final  ({args.metric}, %)")
    for label, s in rows.items():
        print(f"{label:<{width}}  {s['first']:>2}-{s['final']:<3}  {100 * s['best']:5.2f} ({s['best_epoch']:>3})"
              f"   {s['n']:>4}  {100 * s['mean']:5.2f}  {100 * s['std']:4.2f}  {100 * s['min']:5.2f}"
              f"  {100 * s['max']:5.2f}  {100 * s['last']:5.2f}")
    print(f"plot: {plot(curves, args.out, args.metric, args.last)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
