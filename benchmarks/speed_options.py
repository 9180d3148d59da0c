"""Which speed options pay on this machine: channels_last, torch.compile and bf16 autocast.

For ENet and ERFNet, each option is timed against plain eager fp32 in one run, on two jobs:

* attack: a per-image tanh attack through PerturbationModule + Trainer.test (full region, batch 1,
  ``steps`` steps, eps 8/255), the options applied to the frozen models;
* train: forward, cross-entropy, backward and Adam on the shipped weights (a bare loop: the
  Trainer's own cost is train_throughput.py's question), batch 2.

Options: ``channels_last`` runs the model in NHWC (``NormalizedModel.use_channels_last``, what
``channels_last=true`` does in attack.py and train_models.py);
``compile`` wraps the model in ``torch.compile`` (inductor; the first call compiles: "first
call s" is the warm-up round's time, which holds the compile time; not in the default set, ask
for it with ``--options``); ``bf16`` runs under bf16
autocast (Trainer precision bf16-mixed / torch.autocast). "speed-up" is eager fp32 time over the
option's time (higher is better); asr and final loss show whether the numbers stay the same.

Examples:
  python benchmarks/speed_options.py
  python benchmarks/speed_options.py --models enet --options "compile fp32" "compile bf16"

Sizes: default 4 attack steps and 3 training steps, 3 repeats at 360x480; --full 10 and 10;
--quick: 96x128 synthetic, 1 repeat.
"""

from __future__ import annotations

import copy

import common as C
import torch
from torch.nn import functional as F

SCRIPT = "speed_options"
OPTIONS = {  # name -> (channels_last, compile, precision)
    "eager fp32": (False, False, "32-true"),
    "channels_last fp32": (True, False, "32-true"),
    "compile fp32": (False, True, "32-true"),
    "eager bf16": (False, False, "bf16-mixed"),
    "channels_last bf16": (True, False, "bf16-mixed"),
    "compile bf16": (False, True, "bf16-mixed"),
}
DEFAULT_OPTIONS = [o for o in OPTIONS if not o.startswith("compile")]


def prepared(model, channels_last: bool, compiled: bool):
    """A copy of ``model`` with the option applied (its own weights: the cases stay independent)."""
    m = copy.deepcopy(model).use_channels_last(channels_last)  # as channels_last=true in the configs
    return torch.compile(m) if compiled else m


def attack_case(model, name, x, y, steps, precision, num_classes):
    return lambda: C.lightning_attack({name: model}, [(x, y)], "tanh", 8 / 255, steps, precision, num_classes)


def train_case(model, init, batches, precision):
    def run():
        getattr(model, "_orig_mod", model).load_state_dict(init)  # a compiled model wraps the net
        model.train()
        torch.manual_seed(0)
        opt = C.TRAIN_OPTIMIZER(model.parameters())
        for x, y in batches:
            with C.autocast(precision):
                loss = F.cross_entropy(model(x), y, ignore_index=C.IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return {"loss": loss.item()}
    return run


def main():
    p = C.parser(__doc__)
    p.add_argument("--models", nargs="+", default=["enet", "erfnet"], choices=["enet", "erfnet"])
    p.add_argument("--options", nargs="+", default=DEFAULT_OPTIONS, choices=list(OPTIONS),
                   help="compile is not in the default set: it compiles for minutes per model and "
                        "precision on a 2-core machine")
    p.add_argument("--jobs", nargs="+", default=["attack", "train"], choices=["attack", "train"])
    args = p.parse_args()
    C.setup(args, SCRIPT)
    conf = C.settings(args, quick=dict(attack_steps=2, train_steps=2),
                      default=dict(attack_steps=4, train_steps=3), full=dict(attack_steps=10, train_steps=10))
    options = ["eager fp32"] + [o for o in args.options if o != "eager fp32"]
    conf.update(models=args.models, options=options, jobs=args.jobs)
    x, y = C.images(2 * conf["train_steps"], args.quick)
    conf["image_size"] = list(x.shape[-2:])

    cases, num_classes = {}, None
    for name in args.models:
        frozen, meta = C.load_model(name)
        trainable, _ = C.load_model(name, frozen=False)
        init = copy.deepcopy(trainable.state_dict())
        num_classes = int(meta["num_classes"])
        for opt in options:
            cl, comp, prec = OPTIONS[opt]
            if "attack" in args.jobs:
                cases[(name, "attack", opt)] = attack_case(prepared(frozen, cl, comp), name, x[:1], y[:1],
                                                           conf["attack_steps"], prec, num_classes)
            if "train" in args.jobs:
                net = prepared(trainable, cl, comp)
                cases[(name, "train", opt)] = train_case(net, init, C.batches(x, y, 2), prec)
    timed = C.interleaved({" ".join(k): f for k, f in cases.items()}, conf["repeats"], conf["warmup"])

    rows = []
    for (name, job, opt) in cases:
        t, base = timed[" ".join((name, job, opt))], timed[" ".join((name, job, "eager fp32"))]
        res = t["results"][-1]
        work = conf["attack_steps"] if job == "attack" else 2 * conf["train_steps"]
        rows.append({"model": name, "job": job, "option": opt, "seconds": t["median"], "times_s": t["times"],
                     "first_call_s": (t["warmup_times"] or [None])[0],
                     "per_second": work / t["median"], "speedup": C.ratio(base["median"], t["median"]),
                     "asr": res["asr"][name] if job == "attack" else None,
                     "loss": res["loss"] if job == "train" else None})
    unit = {"attack": "img·steps/s", "train": "img/s"}
    tables = {}
    for job in args.jobs:
        tables[f"{job} ({unit[job]}), {x.shape[-2]}x{x.shape[-1]}"] = C.markdown_table(
            ["model", "option", unit[job], "speed-up", "first call s", "asr" if job == "attack" else "final loss"],
            [[r["model"], r["option"], r["per_second"], r["speedup"], r["first_call_s"],
              r["asr"] if job == "attack" else f"{r['loss']:.5f}"] for r in rows if r["job"] == job])
    C.report(SCRIPT, args, C.machine(), conf, tables, {"rows": rows})


if __name__ == "__main__":
    main()
