"""Per-image attack throughput: PerturbationModule + Trainer, the Python API and a bare PyTorch loop.

Both paths do the same work on the same frozen models and the same batch: a clean forward per
model, ``steps`` forward/backward/update steps of a full-image perturbation (tanh: Adam on w with
delta = eps * tanh(w); PGD: sign step on w with delta = eps * clamp(w, -1, 1), w clamped to
[-1, 1], uniform random start drawn from the same seeded generator as the module's), and an
adversarial forward per model to count the asr. The Lightning path adds what a real run pays:
Trainer set-up, the test loop, metrics (IoU, rates, perturbation size), logging, figure samples.
Cases: ENet, ERFNet and the joint pair; then the joint cost for K = 1, 2, 3 models (K = 3 adds a
second ENet instance) against the sum of the single-model costs (tanh, Lightning path).

The API path (``segattack.Attack``, built once, as a notebook holds it) runs the same module
without a Trainer: "api vs loop %" compares one whole API call (a fresh module, the batches, the
metrics) with the Lightning batches alone, what the API adds per attack step over the command
line's loop (goal: at most 2%).

img·steps/s = batch * steps / (median time of one whole run). "overhead %" compares whole runs;
"loop overhead %" counts only the Lightning batches (set-up and tear-down excluded), so the fixed
cost shows apart from the per-step one. Equal asr on every path shows they did the same steps.

Sizes: default batch 1, 2 steps, 3 repeats at 360x480 (a few minutes on 2 cores);
--full batch 4, 10 steps, 3 repeats (about half an hour); --quick: 96x128 synthetic, 1 repeat.
Examples:
  python benchmarks/attack_throughput.py
  python benchmarks/attack_throughput.py --precision 32-true bf16-mixed --channels-last
"""

from __future__ import annotations

import common as C
import torch
from torch.nn import functional as F

SCRIPT = "attack_throughput"
CASES = {"enet": ["enet"], "erfnet": ["erfnet"], "enet+erfnet": ["enet", "erfnet"]}
JOINT = {1: ["enet"], 2: ["enet", "erfnet"], 3: ["enet", "erfnet", "enet2"]}
CASES_KEY = {1: "enet", 2: "enet+erfnet"}  # K = 1 and 2 reuse the main table's Lightning runs


def masked_neg_ce(logits, y, valid):
    """The untargeted attack loss of one model, per image: -mean CE over its valid pixels."""
    ce = F.cross_entropy(logits, y, ignore_index=C.IGNORE, reduction="none")
    m = valid.to(ce.dtype)
    return -(ce * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)


def bare_attack(models: dict, x, y, method: str, eps: float, steps: int, precision: str, seed: int = 0):
    """The same attack as ``PerturbationModule`` (per_image, full region, every step, last
    iterate, CE) in plain PyTorch: per-image losses summed, w projected so x + delta is valid."""
    valid = y != C.IGNORE
    lo, hi = (-x / eps).clamp(min=-1), ((1 - x) / eps).clamp(max=1)  # f(w) bounds
    with C.autocast(precision):
        with torch.no_grad():
            clean = {k: m(x).argmax(1) for k, m in models.items()}
        if method == "tanh":
            w = torch.zeros(x.shape)
            inf = torch.tensor(float("inf"))
            safe = 1 - 1e-6
            lo_w = torch.where(lo > -1, torch.atanh(lo.clamp(-safe, safe)), -inf)
            hi_w = torch.where(hi < 1, torch.atanh(hi.clamp(-safe, safe)), inf)
            noise = torch.tanh
        else:
            g = torch.Generator().manual_seed(seed)
            w = torch.rand(x.shape, generator=g) * 2 - 1
            lo_w, hi_w = lo, hi
            noise = lambda v: v.clamp(-1.0, 1.0)  # noqa: E731
        w = torch.maximum(torch.minimum(w, hi_w), lo_w).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=C.config_lr("tanh")) if method == "tanh" else None
        for _ in range(steps):
            x_adv = (x + eps * noise(w)).clamp(0, 1)
            loss = sum(masked_neg_ce(m(x_adv), y, valid) for m in models.values()).sum()
            w.grad = None
            loss.backward()
            with torch.no_grad():
                if opt is not None:
                    opt.step()
                else:
                    w.sub_(2.5 / steps * w.grad.sign()).clamp_(-1.0, 1.0)
                w.copy_(torch.maximum(torch.minimum(w, hi_w), lo_w))
        with torch.no_grad():
            x_adv = (x + eps * noise(w)).clamp(0, 1)
            adv = {k: m(x_adv).argmax(1) for k, m in models.items()}
    return {"asr": {k: C.pixel_error(adv[k], y) for k in models},
            "clean_error": {k: C.pixel_error(clean[k], y) for k in models}}


def api_attack(models: dict, x, y, method: str, eps: float, steps: int, num_classes: int):
    """``segattack.Attack`` with the Lightning path's settings (``C.attack_module``), built once;
    the returned function runs one call on the batch."""
    import segattack

    fixed = [*C.FIXED_WORK, *(C.CLASSICAL_PGD if method == "pgd" else [])]
    atk = segattack.Attack(models, eps=eps, steps=steps, method=method, num_classes=num_classes,
                           keep_images=False, overrides=fixed)

    def call():
        metrics = atk(x, y).metrics
        return {"asr": {k: metrics["per_model"][k]["asr"] for k in models}}

    return call


def asr_text(asr: dict | None) -> str:
    return "-" if not asr else "/".join(f"{v:.3f}" for v in asr.values())


def main():
    p = C.parser(__doc__)
    p.add_argument("--precision", nargs="+", default=["32-true"], choices=["32-true", "bf16-mixed"],
                   help="Trainer precision(s), compared side by side (bare loop: torch.autocast bf16)")
    p.add_argument("--channels-last", action="store_true", help="models and batch in channels_last")
    p.add_argument("--eps", type=float, default=8 / 255, help="L-inf bound, [0, 1] pixel units")
    p.add_argument("--methods", nargs="+", default=["tanh", "pgd"], choices=["tanh", "pgd"])
    args = p.parse_args()
    C.setup(args, SCRIPT)
    conf = C.settings(args, quick=dict(batch=1, steps=2), default=dict(batch=1, steps=2),
                      full=dict(batch=4, steps=10, repeats=3))
    conf.update(eps=args.eps, precision=args.precision, channels_last=args.channels_last,
                methods=args.methods)
    B, steps, eps = conf["batch"], conf["steps"], args.eps

    x, y = C.images(B, args.quick)
    conf["image_size"] = list(x.shape[-2:])
    models, num_classes = {}, None
    for name, file in (("enet", "enet"), ("erfnet", "erfnet"), ("enet2", "enet")):
        models[name], meta = C.load_model(file)
        num_classes = int(meta["num_classes"])
    if args.channels_last:
        for m in models.values():
            m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def run(impl, names, method, prec):
        chosen = {n: models[n] for n in names}
        if impl == "lightning":
            return lambda: C.lightning_attack(chosen, [(x, y)], method, eps, steps, prec, num_classes)
        if impl == "api":
            return api_attack(chosen, x, y, method, eps, steps, num_classes)
        return lambda: bare_attack(chosen, x, y, method, eps, steps, prec)

    cases = {}
    for prec in args.precision:
        for method in args.methods:
            for case, names in CASES.items():
                for impl in ("lightning", "bare") + (("api",) if prec == "32-true" else ()):
                    cases[(prec, method, case, impl)] = run(impl, names, method, prec)
        if "tanh" in args.methods:
            cases[(prec, "tanh", "+".join(JOINT[3]), "lightning")] = run("lightning", JOINT[3], "tanh", prec)
    timed = C.interleaved({" ".join(k): f for k, f in cases.items()}, conf["repeats"], conf["warmup"])
    get = lambda *k: timed[" ".join(k)]  # noqa: E731

    rows, joint_rows = [], []
    work = B * steps
    for prec in args.precision:
        for method in args.methods:
            for case in CASES:
                lt, bt = get(prec, method, case, "lightning"), get(prec, method, case, "bare")
                loop = C.median_of(lt["results"], "loop_s")
                at = timed.get(" ".join((prec, method, case, "api")))  # fp32 only
                rows.append({"method": method, "case": case, "precision": prec,
                             "lightning_img_steps_per_s": work / lt["median"],
                             "bare_img_steps_per_s": work / bt["median"],
                             "overhead_pct": C.overhead_pct(lt["median"], bt["median"]),
                             "loop_overhead_pct": C.overhead_pct(loop, bt["median"]),
                             "lightning_setup_s": lt["median"] - loop,
                             "lightning_s": lt["median"], "bare_s": bt["median"],
                             "lightning_times_s": lt["times"], "bare_times_s": bt["times"],
                             "api_img_steps_per_s": work / at["median"] if at else None,
                             "api_vs_loop_pct": C.overhead_pct(at["median"], loop) if at else None,
                             "api_s": at["median"] if at else None, "api_times_s": at["times"] if at else None,
                             "asr_api": at["results"][-1]["asr"] if at else None,
                             "asr_lightning": lt["results"][-1]["asr"], "asr_bare": bt["results"][-1]["asr"],
                             "clean_error": bt["results"][-1]["clean_error"]})
        if "tanh" in args.methods:
            single = {n: get(prec, "tanh", n, "lightning")["median"] for n in ("enet", "erfnet")}
            single["enet2"] = single["enet"]  # the same architecture and weights as enet
            for k, names in JOINT.items():
                key = CASES_KEY.get(k, "+".join(names))
                t = get(prec, "tanh", key, "lightning")["median"]
                total = sum(single[n] for n in names)
                joint_rows.append({"precision": prec, "K": k, "models": "+".join(names), "time_s": t,
                                   "sum_of_singles_s": total, "ratio": C.ratio(t, total)})

    main_table = C.markdown_table(
        ["method", "case", "precision", "lightning img·steps/s", "bare img·steps/s", "overhead %",
         "loop overhead %", "lightning set-up s", "api img·steps/s", "api vs loop %", "asr lightning",
         "asr api", "asr bare"],
        [[r["method"], r["case"], r["precision"], r["lightning_img_steps_per_s"], r["bare_img_steps_per_s"],
          C.pct(r["overhead_pct"]), C.pct(r["loop_overhead_pct"]), r["lightning_setup_s"],
          r["api_img_steps_per_s"] or "-", "-" if r["api_vs_loop_pct"] is None else C.pct(r["api_vs_loop_pct"]),
          asr_text(r["asr_lightning"]), asr_text(r["asr_api"]), asr_text(r["asr_bare"])] for r in rows])
    tables = {f"per-image attack, batch {B}, {steps} steps, eps {eps * 255:.3g}/255, "
              f"{x.shape[-2]}x{x.shape[-1]}{', channels_last' if args.channels_last else ''}": main_table}
    if joint_rows:
        tables["joint cost (tanh, Lightning path): K models against the sum of single-model runs"] = \
            C.markdown_table(["precision", "K", "models", "time s", "sum of singles s", "ratio"],
                             [[r["precision"], r["K"], r["models"], r["time_s"], r["sum_of_singles_s"],
                               r["ratio"]] for r in joint_rows])
    C.report(SCRIPT, args, C.machine(), conf, tables, {"rows": rows, "joint": joint_rows})


if __name__ == "__main__":
    main()
