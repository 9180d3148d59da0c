"""Attack strength: asr against steps for each contender, on ENet, ERFNet and the joint pair.

Every point is its own run of ``attack.py``'s module (``PerturbationModule`` + ``Trainer.test``,
built through the spec from the composed config), per image, untargeted, on the first CamVid val
images sorted by name (``--data camvid``, the default where ``$SEGATTACK_DATA/CamVid``, else
``data/CamVid``, exists; else the shipped sample). The reported figure is the share of valid pixels of the area wrong after
the attack (single model: ``asr``; joint: ``asr_all``, wrong on both models at once). Seconds
are wall time of the batches (one core is enough; compare contenders within one run).
References: our own SegPGD (``attack=pgd attack.loss=segpgd``) and, when installed, torchattacks'
PGD (single model, full image; ``pip install --no-deps torchattacks==3.5.1``).

Sizes: default 8 images, steps 5 10 20, full image and centred box, eps 4/255 (an hour on one
core). --full: 24 images, steps 1 2 5 10 20 50 100, eps 1 2 4 8/255 (many hours; resumable:
finished points are kept in the JSON and skipped). --quick: 2 synthetic 96x128 images, steps 1 2.

--defended: the shipped robust models (``enet_robust``, ``erfnet_robust``), full image, robust
pixel accuracy (``1 - asr``, lower is a stronger attack) against the budget (forward and
backward passes per image: 10 30 100 300, eps 4/255 and 8/255) for the default PGD, APGD per
loss, SegPGD, CosPGD, projected Adam with CE and cosine, and the protocol of
``experiment=robustness`` (its members share the budget: ``steps / members`` each).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import common as C
import torch

SCRIPT = "attack_strength"
TARGET = 0.9
CONTENDERS = {  # name -> overrides of configs/attack.yaml
    "tanh CE last (paper)": ["experiment=paper_plain"],
    "tanh (default)": ["attack=tanh"],
    "pgd": ["attack=pgd"],
    # Gu et al.'s SegPGD: the classical PGD's constant steps (whatever pgd.yaml's default) with
    # the SegPGD loss, the last iterate.
    "segpgd (ours, reference)": ["attack=pgd", "attack.loss=segpgd", *C.CLASSICAL, *C.CLASSICAL_PGD],
    "apgd": ["attack=apgd"],
}
CASES = {"enet": ["enet"], "erfnet": ["erfnet"], "enet+erfnet": ["enet", "erfnet"]}
PROTOCOL = "protocol (experiment=robustness)"
DEFENDED_CONTENDERS = {
    "pgd (default)": ["attack=pgd"],
    **{f"apgd {loss}": ["attack=apgd", f"attack.loss={loss}"]
       for loss in ("masked_ce", "js", "masked_spherical", "dlr")},
    "segpgd": ["attack=pgd", "attack.loss=segpgd", "attack.schedule=constant",
               "attack.optimizer.lr=0.25", "attack.optimizer.momentum=0"],
    "cospgd": ["attack=pgd", "attack.loss=cospgd", "attack.schedule=constant",
               "attack.optimizer.lr=0.25", "attack.optimizer.momentum=0"],
    "padam ce": ["attack=padam", "attack.loss=ce"],
    "padam cosine": ["attack=padam", "attack.loss=cosine"],
    PROTOCOL: ["experiment=robustness"],
}
DEFENDED_CASES = {"enet_robust": ["enet_robust"], "erfnet_robust": ["erfnet_robust"]}


def protocol_members() -> int:
    from omegaconf import OmegaConf

    return len(OmegaConf.load(C.ROOT / "configs" / "experiment" / "robustness.yaml").attack.members)
REGIONS = {"full": ["region=full"], "box": ["region=box"]}
# where the entry points look for data sets (configs/paths/default.yaml)


def load_images(n: int, data: str, quick: bool):
    if quick:
        return C.images(n, quick=True)
    from segattack.data import CamVidDataModule

    root = C.CAMVID if data == "camvid" else C.SAMPLE
    ds = CamVidDataModule(str(root)).dataset("val", train=False)
    pairs = [ds[i] for i in range(min(n, len(ds)))]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def run_point(models: dict, loader_batches, overrides, eps, steps, num_classes) -> dict:
    from segattack.attacks.module import PerturbationModule

    x = loader_batches[0][0]
    spec = C.attack_spec("tanh", eps, steps, "per_image", list(models), x.shape[-2:], num_classes,
                         overrides=overrides)
    module = PerturbationModule(models, spec)
    clock = C.step_clock()
    C.trainer(inference_mode=False, callbacks=[clock]).test(
        module, dataloaders=C.batch_loader(loader_batches), verbose=False)
    res = module.results()
    per_model = {k: res["per_model"][k]["asr"] for k in models}
    asr = res["joint"]["asr_all"] if len(models) > 1 else next(iter(per_model.values()))
    return {"asr": asr, "per_model": per_model, "seconds": clock.loop_s,
            "steps_per_image": res.get("steps_per_image")}


def torchattacks_point(model, loader_batches, eps, steps) -> dict | None:
    try:
        from pgd_vs_torchattacks import seg_pgd_class
        SegPGD, _ = seg_pgd_class()
    except SystemExit:
        return None
    atk = SegPGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
    wrong = valid = 0
    start = time.perf_counter()
    for x, y in loader_batches:
        torch.manual_seed(0)
        x_adv = atk(x, y)
        with torch.no_grad():
            pred = model(x_adv).argmax(1)
        v = y != C.IGNORE
        wrong += int(((pred != y) & v).sum())
        valid += int(v.sum())
    return {"asr": wrong / max(valid, 1), "seconds": time.perf_counter() - start}


def split_overrides(text: str) -> list[str]:
    """``a=1,b=[x,y],c={k:v}`` -> the three overrides: commas inside brackets stay."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "[{(") - (ch in "]})")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def main():
    p = C.parser(__doc__)
    p.add_argument("--data", choices=["camvid", "sample"], default=None)
    p.add_argument("--cases", nargs="+", default=None, help=f"some of {list(CASES)} (--defended: "
                   f"{list(DEFENDED_CASES)})")
    p.add_argument("--regions", nargs="+", default=list(REGIONS), choices=list(REGIONS))
    p.add_argument("--contenders", nargs="+", default=None,
                   help=f"names of {list(CONTENDERS)} (--defended: {list(DEFENDED_CONTENDERS)}), or "
                        "NAME=OVERRIDE,OVERRIDE... for another setting")
    p.add_argument("--steps", nargs="+", type=int, default=None)
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--eps", nargs="+", type=int, default=None, metavar="K",
                   help="eps values in 1/255 (default: the size's)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--no-torchattacks", action="store_true",
                   help="skip the torchattacks PGD reference (it costs as much as a contender)")
    p.add_argument("--defended", action="store_true",
                   help="the shipped robust models, robust accuracy against the budget (see above)")
    args = p.parse_args()
    cases_all = DEFENDED_CASES if args.defended else CASES
    contenders_all = dict(DEFENDED_CONTENDERS if args.defended else CONTENDERS)
    args.cases = args.cases or list(cases_all)
    args.regions = ["full"] if args.defended else args.regions
    unknown = [c for c in args.cases if c not in cases_all]
    if unknown:
        p.error(f"--cases {unknown[0]}: expected some of {list(cases_all)}")
    C.setup(args, SCRIPT)
    if args.defended:
        conf = C.settings(args, quick={"images": 2, "steps": [9, 18], "eps": [4 / 255]},
                          default={"images": 8, "steps": [10, 100], "eps": [4 / 255]},
                          full={"images": 24, "steps": [10, 30, 100, 300], "eps": [4 / 255, 8 / 255]})
    else:
        conf = C.settings(args, quick={"images": 2, "steps": [1, 2], "eps": [4 / 255]},
                          default={"images": 8, "steps": [5, 10, 20], "eps": [4 / 255]},
                          full={"images": 24, "steps": [1, 2, 5, 10, 20, 50, 100],
                                "eps": [1 / 255, 2 / 255, 4 / 255, 8 / 255]})
    conf["defended"] = args.defended
    conf["images"] = args.images or conf["images"]
    conf["steps"] = args.steps or conf["steps"]
    conf["eps"] = [k / 255 for k in args.eps] if args.eps else conf["eps"]
    data = args.data or ("camvid" if (C.CAMVID / "val").is_dir() else "sample")
    conf["data"] = "synthetic" if args.quick else data
    x, y = load_images(conf["images"], data, args.quick)
    num_classes = 5 if args.quick else 11
    if args.quick:
        from segattack.models import NormalizedModel, create_model
        torch.manual_seed(0)
        models = {n: NormalizedModel(create_model(cases_all[n][0].removesuffix("_robust"), num_classes)).eval()
                  for n in cases_all}
        for m in models.values():
            m.requires_grad_(False)
    else:
        models = {n: C.load_model(n)[0] for n in {m for c in args.cases for m in cases_all[c]}}
    loader_batches = C.batches(x, y, args.batch_size)
    args.contenders = args.contenders or list(contenders_all)
    for c in args.contenders:  # NAME=override,override: a setting to try next to the named ones
        if "=" in c.split(",")[0] and c.split("=", 1)[0] not in contenders_all:
            name, overrides = c.split("=", 1)
            contenders_all[name] = split_overrides(overrides)
    args.contenders = [c.split("=", 1)[0] if c not in contenders_all else c for c in args.contenders]
    m = C.machine()
    print(C.machine_line(m))
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    same = {k: previous.get("settings", {}).get(k) for k in ("images", "data")} == {
        "images": conf["images"], "data": conf["data"]}
    points = {(r["case"], r["region"], r["contender"], r["eps"], r["steps"]): r
              for r in previous.get("rows", []) if same}
    for eps in conf["eps"]:
        for region in args.regions:
            for case in args.cases:
                chosen = {k: models[k] for k in cases_all[case]}
                for contender in args.contenders:
                    for steps in conf["steps"]:
                        key = (case, region, contender, eps, steps)
                        if key in points:
                            continue
                        overrides = [*contenders_all[contender], *REGIONS[region],
                                     *(["region.size=[48,64]"] if args.quick and region == "box" else [])]
                        # the protocol's members share the budget
                        protocol = "experiment=robustness" in contenders_all[contender]
                        per_member = max(1, steps // protocol_members()) if protocol else steps
                        r = run_point(chosen, loader_batches, overrides, eps, per_member, num_classes)
                        points[key] = {"case": case, "region": region, "contender": contender,
                                       "eps": eps, "steps": steps, **r}
                        print(f"  {case} {region} {contender} eps={eps * 255:.0f}/255 steps={steps}: "
                              f"asr {r['asr']:.3f} ({r['seconds']:.1f} s)", flush=True)
                        C.write_json(args.out, {"settings": conf, "machine": m, "rows": list(points.values())})
                if len(cases_all[case]) == 1 and region == "full" and not args.no_torchattacks:
                    for steps in conf["steps"]:
                        key = (case, region, "torchattacks PGD", eps, steps)
                        if key not in points:
                            r = torchattacks_point(chosen[case], loader_batches, eps, steps)
                            if r is not None:
                                points[key] = {"case": case, "region": region,
                                               "contender": "torchattacks PGD", "eps": eps,
                                               "steps": steps, **r}
                                C.write_json(args.out, {"settings": conf, "machine": m,
                                                        "rows": list(points.values())})
    rows = list(points.values())
    tables = {}
    for eps in conf["eps"]:
        for region in args.regions:
            names = sorted({r["contender"] for r in rows if r["region"] == region and r["eps"] == eps},
                           key=lambda n: list(contenders_all).index(n) if n in contenders_all else 99)
            header = ["contender", *[f"{c} {s}" for c in args.cases for s in conf["steps"]],
                      *([] if args.defended else [f"{c}: time to 90% (s)" for c in args.cases])]
            body = []
            for name in names:
                line = [name]
                for case in args.cases:
                    for s in conf["steps"]:
                        r = points.get((case, region, name, eps, s))
                        line.append(f"{1 - r['asr'] if args.defended else r['asr']:.1%}" if r else "")
                for case in [] if args.defended else args.cases:
                    hit = [points[(case, region, name, eps, s)] for s in conf["steps"]
                           if (case, region, name, eps, s) in points
                           and points[(case, region, name, eps, s)]["asr"] >= TARGET]
                    line.append(C.fmt(hit[0]["seconds"], 1) if hit else "not reached")
                body.append(line)
            what = "robust pixel accuracy by budget (fwd+bwd per image)" if args.defended else "asr by steps"
            title = f"{what}, {region} image, eps {eps * 255:.0f}/255, {conf['images']} images ({conf['data']})"
            tables[title] = C.markdown_table(header, body)
    C.report(SCRIPT, args, m, conf, tables, {"rows": rows})
    if not args.quick:  # beside the JSON
        plot(rows, conf, args.out.with_suffix(".png"), args.cases)
        print(f"plot: {args.out.with_suffix('.png')}")


def plot(rows, conf, path: Path, cases) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    eps = 4 / 255 if 4 / 255 in conf["eps"] else conf["eps"][0]
    regions = sorted({r["region"] for r in rows})
    fig = Figure(figsize=(4 * len(cases), 3.2 * len(regions)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(regions), len(cases), squeeze=False)
    for i, region in enumerate(regions):
        for j, case in enumerate(cases):
            ax = axes[i][j]
            for name in sorted({r["contender"] for r in rows}):
                pts = sorted((r["steps"], r["asr"]) for r in rows if r["case"] == case
                             and r["region"] == region and r["contender"] == name and r["eps"] == eps)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=name)
            ax.set_xscale("log")
            ax.set_title(f"{case}, {region}")
            ax.set_xlabel("steps")
            ax.set_ylabel("asr_all" if "+" in case else "asr")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
