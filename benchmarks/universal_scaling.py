"""Universal attack: time of one epoch (Trainer.fit, mode universal, region full, tanh) vs images.

One epoch over N images (the CamVid sample, cycled when N > 16) at a fixed batch size is N / batch
forward/backward/Adam steps on the one shared ``w``: the time per image should not depend on N
(linear scaling). "s/image" divides the whole fit (Trainer set-up included, which weighs more on
small N) by N; "loop s/image" counts only the batches. "vs smallest N" is loop s/image over that
of the smallest N (1.0 = linear). "peak RSS" is the highest resident memory sampled during the
fit (the process holds the models and all images throughout), "run RSS" how far it rose during
the fit: it should not grow with N either.

Sizes: default ENet, N = 4 8 16, batch 2, 3 repeats at 360x480 (about a minute or two on 2
cores); --full N = 16 32 64, batch 4, 5 repeats; --quick: 96x128 synthetic, N = 2 4 8, 1 repeat.
"""

from __future__ import annotations

import common as C

SCRIPT = "universal_scaling"


def universal_epoch(model, name: str, loader_batches, eps: float, num_classes: int) -> dict:
    x = loader_batches[0][0]
    module = C.attack_module({name: model}, "tanh", eps, len(loader_batches), "universal",
                             x.shape[-2:], num_classes)
    clock = C.step_clock()
    trainer = C.trainer(max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock])
    with C.RssSampler() as rss:
        start = C.current_rss_mb()
        trainer.fit(module, train_dataloaders=C.batch_loader(loader_batches))
    return {"loop_s": clock.loop_s, "peak_rss_mb": rss.peak,
            "run_rss_mb": None if rss.peak is None or start is None else rss.peak - start,
            "steps": trainer.global_step}


def main():
    p = C.parser(__doc__)
    p.add_argument("--model", default="enet", choices=["enet", "erfnet"])
    p.add_argument("--eps", type=float, default=8 / 255)
    p.add_argument("--images", type=int, nargs="+", default=None, help="the N to compare")
    args = p.parse_args()
    C.setup(args, SCRIPT)
    conf = C.settings(args, quick=dict(batch=2, images=[2, 4, 8]), default=dict(batch=2, images=[4, 8, 16]),
                      full=dict(batch=4, images=[16, 32, 64]))
    if args.images:
        conf["images"] = sorted(args.images)
    conf.update(model=args.model, eps=args.eps, method="tanh", region="full")
    B = conf["batch"]
    x, y = C.images(max(conf["images"]), args.quick)
    conf["image_size"] = list(x.shape[-2:])
    model, meta = C.load_model(args.model)
    num_classes = int(meta["num_classes"])

    cases = {f"N={n}": (lambda n=n: universal_epoch(model, args.model, C.batches(x[:n], y[:n], B, clone=False),
                                                    args.eps, num_classes))
             for n in conf["images"]}
    timed = C.interleaved(cases, conf["repeats"], conf["warmup"])
    rows = []
    for n in conf["images"]:
        t = timed[f"N={n}"]
        loop = C.median_of(t["results"], "loop_s")
        peaks = [r["peak_rss_mb"] for r in t["results"] if r["peak_rss_mb"] is not None]
        runs = [r["run_rss_mb"] for r in t["results"] if r["run_rss_mb"] is not None]
        rows.append({"images": n, "steps": t["results"][-1]["steps"], "epoch_s": t["median"],
                     "times_s": t["times"], "s_per_image": t["median"] / n, "loop_s_per_image": loop / n,
                     "peak_rss_mb": max(peaks) if peaks else None, "run_rss_mb": max(runs) if runs else None})
    base = rows[0]["loop_s_per_image"]
    for r in rows:
        r["vs_smallest"] = C.ratio(r["loop_s_per_image"], base)
    table = C.markdown_table(
        ["N images", "steps", "epoch s", "s/image", "loop s/image", "vs smallest N", "peak RSS MiB", "run RSS MiB"],
        [[r["images"], r["steps"], r["epoch_s"], r["s_per_image"], r["loop_s_per_image"], r["vs_smallest"],
          r["peak_rss_mb"], r["run_rss_mb"]] for r in rows])
    title = (f"universal epoch, {args.model}, tanh, region full, batch {B}, eps {args.eps * 255:.3g}/255, "
             f"{x.shape[-2]}x{x.shape[-1]}")
    C.report(SCRIPT, args, C.machine(), conf, {title: table}, {"rows": rows})


if __name__ == "__main__":
    main()
