"""Shared helpers of the benchmark scripts: arguments, machine line, timing, tables, JSON, memory.

Every script compares its contenders *in one process, on the same inputs*: ``interleaved`` runs
one repetition of every case per round (the order rotates from round to round, so no case always
runs first or last), drops the warm-up rounds and reports the median of the rest. Ratios between
medians are what the scripts report; absolute numbers depend on the machine (printed above each
table) and on how idle it was.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import platform
import resource
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import torch

from segattack.labels import IGNORE_INDEX as IGNORE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS = ROOT / "weights" / "camvid"
SAMPLE = ROOT / "data" / "camvid_sample"
# Where CamVid/ is looked for, as the configs do: $SEGATTACK_DATA, else data/ in this clone.
CAMVID = Path(os.environ.get("SEGATTACK_DATA") or ROOT / "data") / "CamVid"
QUICK_SIZE = (96, 128)


# --- arguments and set-up --------------------------------------------------------------------
def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every script takes; scripts add their own."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join((doc or "").strip().splitlines()[1:]))
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="large settings (long: see the script's doc)")
    size.add_argument("--quick", action="store_true",
                      help=f"smoke test: {QUICK_SIZE[0]}x{QUICK_SIZE[1]} synthetic images, 1 repeat, "
                           "no warm-up (numbers mean nothing)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions per case (median)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON file (default benchmarks/results/<script>.json, <script>.quick.json "
                        "with --quick)")
    return p


def setup(args: argparse.Namespace, script: str) -> None:
    """Threads, quiet Lightning, and the default output path."""
    import lightning  # noqa: F401  (it sets its loggers' levels on import: quiet them after)

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning\..*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    if args.out is None:
        args.out = RESULTS / (f"{script}.quick.json" if args.quick else f"{script}.json")


def settings(args: argparse.Namespace, quick: dict, default: dict, full: dict) -> dict:
    """Pick the settings of the chosen size; ``--repeats`` overrides; quick has no warm-up."""
    chosen = dict(quick if args.quick else full if args.full else default)
    chosen.setdefault("repeats", 1 if args.quick else 5 if args.full else 3)
    chosen.setdefault("warmup", 0 if args.quick else 1)
    if args.repeats:
        chosen["repeats"] = args.repeats
    chosen["size"] = "quick" if args.quick else "full" if args.full else "default"
    return chosen


# --- the machine -----------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import lightning

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
            "torch": torch.__version__, "lightning": lightning.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def machine_line(m: dict) -> str:
    return (f"machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
            f"torch {m['torch']} ({m['cpu_capability']}), lightning {m['lightning']}, "
            f"python {m['python']}, threads {m['threads']}")


# --- timing ----------------------------------------------------------------------------------
def interleaved(cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                progress: bool = True) -> dict[str, dict]:
    """Time every case ``warmup + repeats`` times, one repetition of each per round.

    The order rotates each round. Returns ``{name: {"times": [s...], "median": s,
    "results": [return values of the timed calls], "warmup_times": [s...]}}`` (the warm-up
    rounds are timed apart: the first call holds one-off costs such as torch.compile's).
    """
    names = list(cases)
    out = {n: {"times": [], "results": [], "warmup_times": []} for n in names}
    rounds = warmup + repeats
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            start = time.perf_counter()
            result = cases[name]()
            seconds = time.perf_counter() - start
            if r >= warmup:
                out[name]["times"].append(seconds)
                out[name]["results"].append(result)
            else:
                out[name]["warmup_times"].append(seconds)
            if progress:
                tag = "warm-up" if r < warmup else f"{r - warmup + 1}/{repeats}"
                print(f"  [{tag}] {name}: {seconds:.3f} s", file=sys.stderr, flush=True)
    for name in names:
        out[name]["median"] = statistics.median(out[name]["times"])
    return out


def median_of(results: Iterable[dict], key: str) -> float:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def overhead_pct(ours: float, bare: float) -> float:
    """How much longer ``ours`` takes than ``bare``, in percent (negative: faster)."""
    return (ours / bare - 1.0) * 100.0 if bare else float("nan")


# --- Lightning helpers -----------------------------------------------------------------------
def step_clock():
    """A callback recording when the first batch starts and the last batch ends (fit or test).

    ``loop_s`` is the time spent on batches; the rest of a timed ``fit``/``test`` call is
    Lightning's fixed set-up and tear-down.
    """
    import lightning as L

    class StepClock(L.Callback):
        def __init__(self):
            self.first = self.last = None

        def _start(self, *_):
            if self.first is None:
                self.first = time.perf_counter()

        def _end(self, *_):
            self.last = time.perf_counter()

        on_train_batch_start = on_test_batch_start = _start
        on_train_batch_end = on_test_batch_end = _end

        @property
        def loop_s(self) -> float | None:
            return None if self.first is None else self.last - self.first

    return StepClock()


def trainer(**kwargs):
    """A quiet CPU Trainer (no logger, progress bar, checkpoints or summary)."""
    import lightning as L

    base = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                enable_checkpointing=False, enable_model_summary=False)
    return L.Trainer(**{**base, **kwargs})


def batch_loader(batches: Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """A DataLoader that yields the given (x, y) batches unchanged (no collation, no copies)."""
    from torch.utils.data import DataLoader

    return DataLoader(list(batches), batch_size=None, shuffle=False, num_workers=0)


def autocast(precision: str):
    """The context the bare loops use for a Trainer ``precision``."""
    from contextlib import nullcontext

    if precision == "bf16-mixed":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision in ("32-true", "32"):
        return nullcontext()
    raise SystemExit(f"--precision {precision}: expected 32-true or bf16-mixed")


# --- data and models -------------------------------------------------------------------------
def images(n: int, quick: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images and labels: the CamVid sample at 360x480 (cycled when n > 16), or synthetic
    96x128 scenes with ``quick``. Returns x (n, 3, H, W) float in [0, 1], y (n, H, W) int64."""
    if quick:
        from segattack.data import SyntheticDataModule

        ds = SyntheticDataModule(num_val=n, image_size=QUICK_SIZE).dataset("val")
    else:
        from segattack.data import CamVidDataModule

        if not (SAMPLE / "val").is_dir():
            raise SystemExit(f"{SAMPLE}: the CamVid sample is missing (expected val/ and valannot/)")
        ds = CamVidDataModule(str(SAMPLE)).dataset("val", train=False)
    pairs = [ds[i % len(ds)] for i in range(n)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
            clone: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive batches of ``batch_size`` (own memory, or views of x and y with clone=False)."""
    own = (lambda t: t.clone()) if clone else (lambda t: t)  # noqa: E731
    return [(own(x[i:i + batch_size]), own(y[i:i + batch_size])) for i in range(0, x.shape[0], batch_size)]


def load_model(name: str, frozen: bool = True):
    """The shipped CamVid model ``name`` (eval mode; parameters frozen unless ``frozen=False``)."""
    from segattack.files.weights import load_weights

    path = WEIGHTS / f"{name}.safetensors"
    if not path.is_file():
        raise SystemExit(f"{path}: shipped weights missing")
    model, meta = load_weights(path)
    for p in model.parameters():
        p.requires_grad_(not frozen)
    return model, meta


# The training optimiser of configs/train_models.yaml (Adam lr 5e-4, weight decay 2e-4).
TRAIN_OPTIMIZER = partial(torch.optim.Adam, lr=5e-4, weight_decay=2e-4)

def attack_spec(method: str, eps: float, steps: int, mode: str, sources: Sequence[str],
                image_size: Sequence[int], num_classes: int, seed: int = 0, overrides=()):
    """The spec ``attack.py`` builds for ``attack=<method>`` over the full image (the composed
    ``configs/attack.yaml``: the optimiser is the config's)."""
    from segattack.attacks.spec import build_attack_spec
    from segattack.config import compose_config

    chosen = any(o.startswith(("attack=", "experiment=")) for o in overrides)  # overrides pick it
    cfg = compose_config(ROOT, "attack", [*([] if chosen else [f"attack={method}"]), f"eps={eps!r}",
                                          "region=full", f"mode={mode}", f"seed={seed}",
                                          f"source_models=[{','.join(sources)}]", *overrides,
                                          f"attack.steps={steps}"])
    return build_attack_spec(cfg, image_size, num_classes)


# The classical attacks (as experiment=paper_baselines runs them): constant steps, the last
# iterate, no early stop; PGD's step 2.5 eps / steps, no momentum. Speed comparisons time every
# step of them with the cross-entropy, the work the bare loops replicate; the strength
# benchmark's SegPGD too.
CLASSICAL = ["attack.kappa=0", "attack.schedule=constant", "attack.best=false", "attack.early_stop=false"]
FIXED_WORK = ["attack.loss=ce", *CLASSICAL]
CLASSICAL_PGD = ['attack.optimizer.lr="${div:2.5,${attack.steps}}"', "attack.optimizer.momentum=0"]


def attack_module(models: dict, method: str, eps: float, steps: int, mode: str,
                  image_size: Sequence[int], num_classes: int, seed: int = 0):
    """A PerturbationModule attacking all of ``models`` jointly over the full image, every step."""
    from segattack.attacks.module import PerturbationModule

    fixed = [*FIXED_WORK, *(CLASSICAL_PGD if method == "pgd" else [])]
    spec = attack_spec(method, eps, steps, mode, list(models), image_size, num_classes, seed,
                       overrides=fixed)
    return PerturbationModule(models, spec)


def config_lr(method: str) -> float:
    """The step size ``configs/attack/<method>.yaml`` gives (for the plain-PyTorch replicas)."""
    return float(attack_spec(method, 4 / 255, 10, "per_image", ["m"], (32, 32), 2).optimizer.keywords["lr"])


def lightning_attack(models: dict, loader_batches, method: str, eps: float, steps: int,
                     precision: str, num_classes: int, seed: int = 0) -> dict:
    """``trainer.test`` of a per-image PerturbationModule (full region) over ``loader_batches``.

    Returns ``{"asr": {model: asr}, "loop_s": seconds spent on batches, "results": metrics}``.
    """
    x = loader_batches[0][0]
    module = attack_module(models, method, eps, steps, "per_image", x.shape[-2:], num_classes, seed)
    clock = step_clock()
    t = trainer(inference_mode=False, precision=precision, callbacks=[clock])
    t.test(module, dataloaders=batch_loader(loader_batches), verbose=False)
    results = module.results()
    return {"asr": {k: results["per_model"][k]["asr"] for k in models}, "loop_s": clock.loop_s,
            "results": results}


def pixel_error(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Share of valid pixels predicted wrong (the untargeted asr over the full image)."""
    valid = y != IGNORE
    return float(((pred != y) & valid).sum() / valid.sum().clamp(min=1))


# --- memory ----------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """The process's peak resident set size so far (``resource.getrusage``), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20
        except ImportError:
            return None


class RssSampler:
    """Peak RSS *during* a block (sampled every ``interval`` s by a thread), in MiB.

    ``getrusage`` gives only the process-wide peak so far, which never goes down; this gives the
    peak of one case among several run in the same process. None where RSS cannot be read.
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak: float | None = None
        self._stop = threading.Event()

    def _sample(self):
        rss = current_rss_mb()
        if rss is not None:
            self.peak = rss if self.peak is None else max(self.peak, rss)

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        return False


# --- output ----------------------------------------------------------------------------------
def fmt(value, digits: int = 3) -> str:
    """Numbers for tables: ``digits`` significant digits, thousands kept whole; '-' for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) >= 10 ** digits:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.1f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep, *map(line, cells[1:])])


def _plain(obj):
    """JSON-safe: NaN/inf become None, tensors and paths plain values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, torch.Tensor):
        return _plain(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, payload: dict) -> Path:
    """Write ``payload`` (plus the peak RSS) atomically; create the folder if needed."""
    from segattack.io import write_json as atomic_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "peak_rss_mb": peak_rss_mb()}
    atomic_json(path, _plain(payload))
    return path


def report(script: str, args: argparse.Namespace, m: dict, conf: dict, tables: dict[str, str],
           data: dict) -> None:
    """Print the machine line and the tables; write the JSON (tables included as markdown)."""
    print(machine_line(m))
    print(f"settings: {', '.join(f'{k}={v}' for k, v in conf.items())}")
    for title, table in tables.items():
        print(f"\n### {title}\n\n{table}")
    print(f"\npeak RSS {peak_rss_mb():.0f} MiB")
    out = write_json(args.out, {"script": script, "machine": m, "settings": conf,
                                "tables": tables, **data})
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
