"""Training throughput: SegmentationModule + Trainer.fit against a bare PyTorch loop.

Both paths start from the same weights (the shipped CamVid ones, reloaded before every run) and
the same torch seed, and run the same steps on the same batches: forward, cross-entropy (void
255 ignored), backward, Adam (lr 5e-4, weight decay 2e-4, as configs/train_models.yaml) and the
poly learning-rate schedule stepped per batch. bf16-mixed: the Trainer's precision plugin, and
torch.autocast("cpu", dtype=torch.bfloat16) around forward and loss in the bare loop. The
Lightning run is fit with limit_train_batches = steps, one epoch, no validation, no logger,
checkpoints or progress bar. Equal final losses show both paths did the same steps.

"overhead %" compares whole runs (Trainer set-up included); "loop overhead %" counts only the
Lightning batches, so the fixed cost shows apart from the per-step one.

--adversarial: also the adversarial training step of ``train_experiment=camvid_adversarial``
(the inner attack crafts its share of each batch, then the same update), on the Lightning path;
its cost is reported as a multiple of the clean step's, against the bound inner steps + 1.2.

Sizes: default batch 2, 2 steps, 3 repeats at 360x480 (a few minutes on 2 cores); --full batch
4, 10 steps, 3 repeats (about 20 minutes); --quick: 96x128 synthetic, 1 repeat.
"""

from __future__ import annotations

import copy

import common as C
import torch
from torch.nn import functional as F

SCRIPT = "train_throughput"


def bare_train(model, init, batches, precision: str, seed: int = 0) -> dict:
    from segattack.training.module import poly_lambda

    model.load_state_dict(init)
    model.train()
    torch.manual_seed(seed)
    opt = C.TRAIN_OPTIMIZER(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_lambda(len(batches)))
    for x, y in C.batch_loader(batches):  # as Lightning's: its iterator draws a seed from torch's RNG
        with C.autocast(precision):
            loss = F.cross_entropy(model(x), y, ignore_index=C.IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return {"loss": loss.item()}


def adversarial_training(name: str, image_size, num_classes: int):
    """The inner attack of ``train_experiment=camvid_adversarial`` for model ``name``."""
    from segattack.config import compose_config
    from segattack.training.adversarial import AdversarialTraining

    cfg = compose_config(C.ROOT, "train_models", ["train_experiment=camvid_adversarial", f"models=[{name}]"])
    return AdversarialTraining(cfg, name, image_size, num_classes)


def lightning_train(model, init, batches, precision: str, class_names, seed: int = 0,
                    adversarial=None) -> dict:
    from segattack.training.module import SegmentationModule

    model.load_state_dict(init)
    model.train()  # Lightning 2.x fit does not call .train(): load_weights returns an eval model
    torch.manual_seed(seed)
    module = SegmentationModule(model, class_names, C.TRAIN_OPTIMIZER, schedule="poly", log_images=0,
                                adversarial=adversarial)
    clock = C.step_clock()
    trainer = C.trainer(max_epochs=1, limit_train_batches=len(batches), limit_val_batches=0,
                        num_sanity_val_steps=0, precision=precision, callbacks=[clock])
    trainer.fit(module, train_dataloaders=C.batch_loader(batches))
    loss = trainer.callback_metrics.get("train/loss")
    return {"loss": None if loss is None else float(loss), "loop_s": clock.loop_s}


def main():
    p = C.parser(__doc__)
    p.add_argument("--precision", nargs="+", default=["32-true", "bf16-mixed"],
                   choices=["32-true", "bf16-mixed"])
    p.add_argument("--models", nargs="+", default=["enet", "erfnet"], choices=["enet", "erfnet"])
    p.add_argument("--adversarial", action="store_true", help="also time the adversarial training step")
    args = p.parse_args()
    C.setup(args, SCRIPT)
    conf = C.settings(args, quick=dict(batch=2, steps=2), default=dict(batch=2, steps=2),
                      full=dict(batch=4, steps=10, repeats=3))
    conf.update(precision=args.precision, models=args.models, optimizer="Adam lr 5e-4 wd 2e-4, poly")
    B, steps = conf["batch"], conf["steps"]
    x, y = C.images(B * steps, args.quick)
    conf["image_size"] = list(x.shape[-2:])
    data = C.batches(x, y, B)

    nets, inits, names = {}, {}, None
    for name in args.models:
        nets[name], meta = C.load_model(name, frozen=False)
        inits[name] = copy.deepcopy(nets[name].state_dict())
        names = meta["class_names"]

    cases = {}
    for name in args.models:
        for prec in args.precision:
            cases[f"{name} {prec} lightning"] = (
                lambda n=name, pr=prec: lightning_train(nets[n], inits[n], data, pr, names))
            cases[f"{name} {prec} bare"] = lambda n=name, pr=prec: bare_train(nets[n], inits[n], data, pr)
        if args.adversarial:
            adv = adversarial_training(name, x.shape[-2:], len(names))
            conf["adversarial"] = adv.metadata()["adversarial"]
            cases[f"{name} adversarial"] = (
                lambda n=name, a=adv: lightning_train(nets[n], inits[n], data, "32-true", names, adversarial=a))
    timed = C.interleaved(cases, conf["repeats"], conf["warmup"])

    rows = []
    for name in args.models:
        for prec in args.precision:
            lt, bt = timed[f"{name} {prec} lightning"], timed[f"{name} {prec} bare"]
            loop = C.median_of(lt["results"], "loop_s")
            rows.append({"model": name, "precision": prec,
                         "lightning_img_per_s": B * steps / lt["median"],
                         "bare_img_per_s": B * steps / bt["median"],
                         "overhead_pct": C.overhead_pct(lt["median"], bt["median"]),
                         "loop_overhead_pct": C.overhead_pct(loop, bt["median"]),
                         "lightning_setup_s": lt["median"] - loop,
                         "lightning_s": lt["median"], "bare_s": bt["median"],
                         "lightning_times_s": lt["times"], "bare_times_s": bt["times"],
                         "loss_lightning": lt["results"][-1]["loss"], "loss_bare": bt["results"][-1]["loss"]})
    for r in rows:  # bf16 speed-up over fp32, on the Lightning path
        fp32 = next((q for q in rows if q["model"] == r["model"] and q["precision"] == "32-true"), None)
        r["speedup_vs_fp32"] = C.ratio(r["lightning_img_per_s"], fp32["lightning_img_per_s"]) if fp32 else None
    table = C.markdown_table(
        ["model", "precision", "lightning img/s", "bare img/s", "overhead %", "loop overhead %",
         "lightning set-up s", "speed-up vs fp32", "final loss lightning", "final loss bare"],
        [[r["model"], r["precision"], r["lightning_img_per_s"], r["bare_img_per_s"], C.pct(r["overhead_pct"]),
          C.pct(r["loop_overhead_pct"]), r["lightning_setup_s"], r["speedup_vs_fp32"],
          f"{r['loss_lightning']:.5f}", f"{r['loss_bare']:.5f}"] for r in rows])
    title = f"training, batch {B}, {steps} steps, {x.shape[-2]}x{x.shape[-1]}"
    tables = {title: table}
    adversarial_rows = []
    if args.adversarial:
        inner = conf["adversarial"]["steps"]
        for name in args.models:
            clean = C.median_of(timed[f"{name} 32-true lightning"]["results"], "loop_s")
            adv = C.median_of(timed[f"{name} adversarial"]["results"], "loop_s")
            adversarial_rows.append({"model": name, "clean_loop_s": clean, "adversarial_loop_s": adv,
                                     "cost_x_clean": adv / clean, "bound_x_clean": inner + 1.2})
        tables[f"adversarial training step against the clean one ({conf['adversarial']})"] = C.markdown_table(
            ["model", "clean s", "adversarial s", "cost (x clean)", "bound (inner steps + 1.2)"],
            [[r["model"], r["clean_loop_s"], r["adversarial_loop_s"], r["cost_x_clean"], r["bound_x_clean"]]
             for r in adversarial_rows])
    C.report(SCRIPT, args, C.machine(), conf, tables, {"rows": rows, "adversarial": adversarial_rows})


if __name__ == "__main__":
    main()
