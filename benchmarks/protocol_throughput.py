"""Protocol throughput: the worst-case ensemble (experiment=robustness) against its members alone.

The same batch, the same members and steps: the ensemble loop (every member in turn, the
per-image worst-case bookkeeping, warm starts) against each member's own per-image loop, timed
interleaved on the defended ENet. No image is skipped and no batch stops early
(``attack.skip_fooled=false``, ``attack.early_stop=false``), so both do the same forward and
backward passes; "ratio" is the sum of the members' times over the protocol's (the aim: at
least 0.95, the bookkeeping costing at most 5%). Only the crafting is timed (no Trainer, no
evaluation), the part the two differ in.

Sizes: default 1 CamVid sample image, 4 steps per member, eps 4/255, 3 repeats;
--full 2 images, 10 steps; --quick: 96x128 synthetic, 1 step, 1 repeat.
  python benchmarks/protocol_throughput.py --threads 1
"""

from __future__ import annotations

import common as C
import torch

SCRIPT = "protocol_throughput"
MODEL = "enet_robust"
EQUAL_WORK = ["attack.skip_fooled=false", "attack.early_stop=false"]


def main():
    p = C.parser(__doc__)
    p.add_argument("--eps", type=float, default=4, help="L-inf bound in 1/255")
    args = p.parse_args()
    C.setup(args, SCRIPT)
    conf = C.settings(args, quick=dict(batch=1, steps=1), default=dict(batch=1, steps=4),
                      full=dict(batch=2, steps=10, repeats=3))
    from segattack.attacks.batch import prepare_batch
    from segattack.attacks.module import PerturbationModule

    x, y = C.images(conf["batch"], args.quick)
    model, meta = C.load_model(MODEL)
    num_classes = int(meta["num_classes"])
    spec = C.attack_spec("ensemble", args.eps / 255, conf["steps"], "per_image", [MODEL], x.shape[-2:],
                         num_classes, overrides=["experiment=robustness", *EQUAL_WORK])
    conf.update(eps=f"{args.eps:g}/255", image_size=list(x.shape[-2:]), members=len(spec.members))
    modules = {"protocol": PerturbationModule({MODEL: model}, spec),
               **{m.label: PerturbationModule({MODEL: model}, m) for m in spec.members}}
    batch = prepare_batch(spec, modules["protocol"].objective, x, y, torch.arange(len(x)))

    def craft(module):
        def call():
            module.generator.manual_seed(0)
            return module.craft(batch).count.tolist()
        return call

    timed = C.interleaved({name: craft(m) for name, m in modules.items()}, conf["repeats"], conf["warmup"])
    singles = sum(timed[m.label]["median"] for m in spec.members)
    protocol = timed["protocol"]["median"]
    passes = conf["batch"] * conf["steps"] * len(spec.members)
    rows = [[name, t["median"], conf["batch"] * conf["steps"] / t["median"]]
            for name, t in timed.items() if name != "protocol"]
    rows += [["members, sum", singles, passes / singles], ["protocol", protocol, passes / protocol]]
    tables = {f"{MODEL}, {len(spec.members)} members x {conf['steps']} steps, batch {conf['batch']}, "
              f"eps {args.eps:g}/255 (ratio {C.ratio(singles, protocol):.3f})":
              C.markdown_table(["attack", "time s", "img·passes/s"], rows)}
    C.report(SCRIPT, args, C.machine(), conf, tables,
             {"ratio": C.ratio(singles, protocol), "protocol_s": protocol, "members_sum_s": singles,
              "first_member": spec.members[0].label,
              "times": {k: v["times"] for k, v in timed.items()},
              "counts": {k: v["results"][-1] for k, v in timed.items()}})


if __name__ == "__main__":
    main()
