"""Our PGD (PerturbationModule + Trainer) against torchattacks.PGD; asr of tanh and PGD vs steps.

Table 1: the same model (ENet), batch, eps, alpha = 2.5 * eps / steps (the classical PGD, as
experiment=paper_baselines runs it: CE, constant steps) and steps for both; each run also
predicts the clean and the adversarial batch (ours does it inside test_step, torchattacks' run
does it around the attack), so "ms per step" = run time / steps includes those two forwards on
both sides; "batches-only" leaves out our Trainer's set-up and tear-down (torchattacks has none). asr = share of valid pixels wrong after the
attack (full image, void ignored).

torchattacks.PGD builds ``nn.CrossEntropyLoss()`` inside ``forward`` (no attribute to set in
3.5.1), which fails on CamVid's void label 255. ``SegPGD`` below runs torchattacks' own forward
unchanged, with that one name resolved to ``CrossEntropyLoss(ignore_index=255)`` for the call:
(B, C, H, W) logits against (B, H, W) labels, mean over valid pixels, as our loss. Known
differences: torchattacks draws its random start from the global RNG (seeded here) and clamps
x + delta into [0, 1] after each step; ours keeps w in the eps-ball and clamps in the forward.

Table 2: asr of the classical tanh (Adam at configs/attack/tanh.yaml's lr, CE) and PGD (lr
2.5 / steps, so every run ends on the ball's surface) as a function of steps at eps 4/255,
and the fewest steps (of those tried) reaching 90% asr. Every point is its own run (PGD's step
size depends on the number of steps).

Sizes: default batch 2, 3 steps, 3 repeats; curve on 2 images at steps 1 2 5 10 20 (a few
minutes on 2 cores). --full: batch 4, 10 steps, 5 repeats; curve on all 16 sample images at
steps 1 2 5 10 20 50 (about half an hour). --quick: 96x128 synthetic, 1 repeat, steps 1 2.
Needs ``pip install --no-deps torchattacks==3.5.1``.
"""

from __future__ import annotations

import inspect
import sys
import types

import common as C
import torch

SCRIPT = "pgd_vs_torchattacks"
TARGET = 0.9


def seg_pgd_class():
    """torchattacks.PGD whose loss ignores the void label (see the module doc)."""
    try:
        import torchattacks
    except ImportError:
        raise SystemExit("torchattacks is not installed: pip install --no-deps torchattacks==3.5.1 "
                         "(--no-deps: its torchvision requirement would replace torch)") from None
    pgd_module = sys.modules[torchattacks.PGD.__module__]
    if "nn.CrossEntropyLoss()" not in inspect.getsource(torchattacks.PGD.forward):
        raise SystemExit(f"torchattacks {torchattacks.__version__}: PGD.forward no longer builds "
                         "nn.CrossEntropyLoss() itself; adapt SegPGD in this script")
    ignore_void = types.SimpleNamespace(
        CrossEntropyLoss=lambda: torch.nn.CrossEntropyLoss(ignore_index=C.IGNORE))

    class SegPGD(torchattacks.PGD):
        def forward(self, images, labels):
            original = pgd_module.nn
            pgd_module.nn = ignore_void
            try:
                return super().forward(images, labels)
            finally:
                pgd_module.nn = original

    return SegPGD, torchattacks.__version__


def torchattacks_run(atk, model, x, y, seed: int = 0) -> dict:
    """Clean forward, torchattacks' attack, adversarial forward (the work of our test_step)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        clean = model(x).argmax(1)
    x_adv = atk(x, y)
    with torch.no_grad():
        adv = model(x_adv).argmax(1)
    linf = float((x_adv - x).abs().max())
    return {"asr": C.pixel_error(adv, y), "clean_error": C.pixel_error(clean, y), "linf": linf}


def main():
    p = C.parser(__doc__)
    p.add_argument("--model", default="enet", choices=["enet", "erfnet"])
    p.add_argument("--eps", type=float, default=4 / 255, help="L-inf bound, [0, 1] pixel units")
    p.add_argument("--curve-steps", type=int, nargs="+", default=None,
                   help="steps of the asr-vs-steps table (default 1 2 5 10 20)")
    args = p.parse_args()
    C.setup(args, SCRIPT)
    conf = C.settings(args,
                      quick=dict(batch=1, steps=2, curve_images=1, curve_steps=[1, 2]),
                      default=dict(batch=2, steps=3, curve_images=2, curve_steps=[1, 2, 5, 10, 20]),
                      full=dict(batch=4, steps=10, curve_images=16, curve_steps=[1, 2, 5, 10, 20, 50]))
    if args.curve_steps:
        conf["curve_steps"] = sorted(args.curve_steps)
    eps, B, steps = args.eps, conf["batch"], conf["steps"]
    alpha = 2.5 * eps / steps
    conf.update(model=args.model, eps=eps, alpha=alpha)
    SegPGD, ta_version = seg_pgd_class()
    conf["torchattacks"] = ta_version

    model, meta = C.load_model(args.model)
    num_classes = int(meta["num_classes"])
    x, y = C.images(max(B, conf["curve_images"]), args.quick)
    conf["image_size"] = list(x.shape[-2:])
    xb, yb = x[:B].clone(), y[:B].clone()
    atk = SegPGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)

    # --- table 1: time per step and asr, same batch, eps, alpha, steps --------------------------
    cases = {
        "ours (PerturbationModule, pgd)": lambda: C.lightning_attack(
            {args.model: model}, [(xb, yb)], "pgd", eps, steps, "32-true", num_classes),
        f"torchattacks {ta_version} PGD": lambda: torchattacks_run(atk, model, xb, yb),
    }
    timed = C.interleaved(cases, conf["repeats"], conf["warmup"])
    ours = timed[next(iter(cases))]["median"]
    rows = []
    for name, t in timed.items():
        last = t["results"][-1]
        if "results" in last:  # ours: the batches only, without the Trainer's set-up
            asr, linf = last["asr"][args.model], last["results"]["perturbation"]["linf"]
            loop = C.median_of(t["results"], "loop_s")
        else:
            asr, linf, loop = last["asr"], last["linf"], t["median"]
        rows.append({"implementation": name, "median_s": t["median"], "times_s": t["times"],
                     "ms_per_step": 1000 * t["median"] / steps,
                     "ms_per_image_step": 1000 * t["median"] / (steps * B),
                     "loop_ms_per_step": 1000 * loop / steps,
                     "time_vs_ours": C.ratio(t["median"], ours), "asr": asr, "linf": linf})
    speed = C.markdown_table(
        ["implementation", "ms per step", "ms per image·step", "time / ours", "batches-only ms per step",
         "asr", "L-inf x255"],
        [[r["implementation"], r["ms_per_step"], r["ms_per_image_step"], r["time_vs_ours"], r["loop_ms_per_step"],
          f"{r['asr']:.4f}", f"{r['linf'] * 255:.3f}"] for r in rows])

    # --- table 2: asr vs steps, tanh and PGD ---------------------------------------------------
    data = C.batches(x[:conf["curve_images"]], y[:conf["curve_images"]], B)
    curve = []
    for s in conf["curve_steps"]:
        row = {"steps": s}
        for method in ("tanh", "pgd"):
            out = C.lightning_attack({args.model: model}, data, method, eps, s, "32-true", num_classes)
            row[method] = out["asr"][args.model]
            print(f"  curve: {method} {s} steps asr {row[method]:.4f}", file=sys.stderr, flush=True)
        curve.append(row)

    def reached(method):
        hit = [r["steps"] for r in curve if r[method] >= TARGET]
        return min(hit) if hit else None

    to_target = {m: reached(m) for m in ("tanh", "pgd")}
    curve_table = C.markdown_table(
        ["steps", "tanh asr", "pgd asr"],
        [[r["steps"], f"{r['tanh']:.4f}", f"{r['pgd']:.4f}"] for r in curve]
        + [[f"steps to {TARGET:.0%} asr"] + [str(to_target[m]) if to_target[m] else "not reached"
                                              for m in ("tanh", "pgd")]])
    tables = {
        f"PGD, {args.model}, batch {B}, {steps} steps, eps {eps * 255:.3g}/255, alpha "
        f"{alpha * 255:.3g}/255, {x.shape[-2]}x{x.shape[-1]}": speed,
        f"asr vs steps, {args.model}, eps {eps * 255:.3g}/255, {conf['curve_images']} images": curve_table,
    }
    C.report(SCRIPT, args, C.machine(), conf, tables,
             {"speed": rows, "curve": curve, "steps_to_target": to_target, "target_asr": TARGET})


if __name__ == "__main__":
    main()
