#!/usr/bin/env bash
# Re-run every experiment of docs/results.md on CamVid with the shipped weights.
# CamVid is read from $SEGATTACK_DATA/CamVid, else data/CamVid (python scripts/get_camvid.py).
#
#   bash scripts/reproduce_results.sh [OUT_DIR]          (default OUT_DIR: outputs/results)
#
# Each run writes OUT_DIR/<name>/ (metrics.json, report.md, figures). A run whose metrics.json
# already exists is skipped, so after an interruption the same command carries on where it
# stopped. At the end the tables of docs/results.md are printed (python -m segattack.report.collect).
# Settings that trade time for coverage (measured cost on 2 CPU cores: docs/results.md):
#   LOCAL_LIMIT   val images for the per-image eps sweep and the baselines (default 24; empty = all 101)
#   PRECISION     trainer precision of every run (default bf16-mixed: 1.5x faster, asr within
#                 1 point of fp32, docs/performance.md)
#   ONLY          a bash regex of the run names to run (default: all), e.g. ONLY='^(local|baseline)'
set -euo pipefail
OUT=${1:-outputs/results}
LOCAL_LIMIT=${LOCAL_LIMIT-24}
PRECISION=${PRECISION:-bf16-mixed}
ONLY=${ONLY:-}
LIMIT=()
[ -n "$LOCAL_LIMIT" ] && LIMIT=("data.limit=$LOCAL_LIMIT")

run() {  # run NAME OVERRIDES...: one attack.py run into OUT/NAME, unless it is already there
    local name=$1; shift                  # (RUN_PRECISION=...: this run's precision instead)
    if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then
        echo "== $name: not in ONLY"; return
    fi
    if [ -f "$OUT/$name/metrics.json" ] || [ -f "$OUT/$name/transfer.json" ] || [ -f "$OUT/$name/robustness.json" ]; then
        echo "== $name: done already"; return
    fi
    echo "== $name: python attack.py $*"
    python attack.py "$@" logger=csv "trainer.precision=${RUN_PRECISION:-$PRECISION}" "hydra.run.dir=$OUT/$name" name="$name"
}

# 1. Local per-image attacks (centred 120x160 box), every eps, on ENet, ERFNet and jointly;
#    each run is evaluated on both models, so the rows also give the transfer matrix per eps.
for eps in 1 2 4 8; do
    run "local_enet_eps$eps"   experiment=paper_local "eps=$eps/255" "source_models=[enet]"        "${LIMIT[@]}"
    run "local_erfnet_eps$eps" experiment=paper_local "eps=$eps/255" "source_models=[erfnet]"      "${LIMIT[@]}"
    run "local_joint_eps$eps"  experiment=paper_local "eps=$eps/255" "source_models=[enet,erfnet]" "${LIMIT[@]}"
done
#    The paper's plain setting (tanh, Adam, CE, last iterate; experiment=paper_plain) at 4/255.
for src in enet erfnet joint; do
    models=$src; [ "$src" = joint ] && models=enet,erfnet
    run "local_${src}_eps4_plain" 'experiment=[paper_local,paper_plain]' "source_models=[$models]" "${LIMIT[@]}"
done

# 2. The same attack against FGSM, I-FGSM and PGD on the joint pair (equal eps 4/255, 10 steps;
#    the tanh row is local_joint_eps4).
for method in fgsm ifgsm; do
    run "baseline_joint_$method" experiment=paper_baselines "attack=$method" "eval_models=[enet,erfnet]" "${LIMIT[@]}"
done
run baseline_joint_pgd experiment=paper_baselines attack=pgd 'attack.optimizer.lr="${div:2.5,${attack.steps}}"' \
    attack.optimizer.momentum=0 "eval_models=[enet,erfnet]" "${LIMIT[@]}"

# 3. Transfer matrix on all 101 val images at 4/255 (craft on ENet, on ERFNet, jointly).
run transfer_eps4 experiment=paper_transfer

# 4. Universal perturbations learned on train (100 Adam steps of batch 4), reported on all of val:
#    full frame and a 120x160 patch at random places, jointly; full frame on each single model.
for eps in 1 2 4 8; do
    run "universal_joint_full_eps$eps" experiment=paper_universal "eps=$eps/255" attack.steps=100 data.batch_size=4
done
for eps in 4 8; do
    run "universal_joint_patch_eps$eps" experiment=paper_universal "eps=$eps/255" attack.steps=100 data.batch_size=4 \
        region=box region.size=[120,160] region.position=random
done
for model in enet erfnet; do
    run "universal_${model}_full_eps8" experiment=paper_universal eps=8/255 attack.steps=100 data.batch_size=4 \
        "source_models=[$model]"
done
#    The strongest universal attack measured (PGD, logit margin, momentum, 800 steps; about 22 min
#    on one core): configs/experiment/universal_pgd.yaml.
run universal_pgd_joint_full_eps8 experiment=universal_pgd

# 5. Beyond the paper: hide pedestrians (predicted as road) from both models at once.
run hide_pedestrians_joint experiment=hide_pedestrians "${LIMIT[@]}"
#    The same with ERFNet's loss weighted 4x (ENet, the easier model, dominates the plain sum).
run hide_pedestrians_joint_erfnet4 experiment=hide_pedestrians "attack.lambdas={enet:1,erfnet:4}" "${LIMIT[@]}"
#    And ERFNet alone: can it be made to call pedestrians road at all at this eps and these steps?
run hide_pedestrians_erfnet experiment=hide_pedestrians "source_models=[erfnet]" "${LIMIT[@]}"

# 6. Defended models. The worst-case protocol (nine attacks, 33 steps each) on the first 8 val
#    images, fp32, one run per model and eps (about 15 min each on one core) ...
for model in enet_robust erfnet_robust; do
    for eps in 4 8; do
        RUN_PRECISION=32-true run "robustness_${model}_eps$eps" experiment=robustness data.limit=8 \
            "source_models=[$model]" attack.steps=33 "robustness.eps=[$eps/255]"
    done
done
#    ... and PGD with the margin, 16 images, default box: jointly on the defended pair (also scored
#    on the clean pair), the clean pair on the defended one, each model alone and all four jointly.
run defended_joint_eps4 data=camvid data.limit=16 "source_models=[enet_robust,erfnet_robust]" \
    "eval_models=[enet,erfnet]" attack.loss=margin
run clean_joint_on_defended_eps4 data=camvid data.limit=16 "source_models=[enet,erfnet]" \
    "eval_models=[enet_robust,erfnet_robust]"
run transfer_defended_eps4 data=camvid data.limit=16 task=transfer attack.loss=margin \
    "source_models=[enet,erfnet,enet_robust,erfnet_robust]"
#    Universal (PGD, margin, 200 steps, full frame, 8/255) on each pair, scored on all four models.
run universal_pgd_defended experiment=universal_pgd attack.steps=200 "source_models=[enet_robust,erfnet_robust]" \
    "eval_models=[enet_robust,erfnet_robust,enet,erfnet]"
run universal_pgd_clean_on_defended experiment=universal_pgd attack.steps=200 "source_models=[enet,erfnet]" \
    "eval_models=[enet,erfnet,enet_robust,erfnet_robust]"

# The asr-against-eps figure of docs/results.md (local per-image sweep).
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from segattack.report import asr_curve

out = Path(sys.argv[1])
eps = [1, 2, 4, 8]
sweep = [out / f"local_{s}_eps{e}" / "metrics.json" for s in ("enet", "erfnet", "joint") for e in eps]
if not all(p.is_file() for p in sweep):
    print("asr_vs_eps.png not drawn: the local sweep is incomplete (ONLY?)")
    sys.exit(0)
def read(run, key):
    return [key(json.loads((out / f"{run}_eps{e}" / "metrics.json").read_text())) for e in eps]
series = {
    "ENet attacked alone": read("local_enet", lambda m: m["per_model"]["enet"]["asr"]),
    "ERFNet attacked alone": read("local_erfnet", lambda m: m["per_model"]["erfnet"]["asr"]),
    "ENet's perturbation on ERFNet": read("local_enet", lambda m: m["per_model"]["erfnet"]["asr"]),
    "ERFNet's perturbation on ENet": read("local_erfnet", lambda m: m["per_model"]["enet"]["asr"]),
    "joint: both fooled (asr_all)": read("local_joint", lambda m: m["joint"]["asr_all"]),
}
path = asr_curve(out / "asr_vs_eps.png", {k: (eps, v) for k, v in series.items()}, "eps (x 1/255)",
                 title="Local box attack, CamVid val: asr against eps")
print(f"wrote {path}")
PY

echo
python -m segattack.report.collect "$OUT"/local_* "$OUT"/baseline_* "$OUT"/transfer_eps4/* \
    "$OUT"/universal_* "$OUT"/hide_* "$OUT"/defended_* "$OUT"/clean_joint_* "$OUT"/transfer_defended_eps4/*
for table in "$OUT"/robustness_*/robustness.md; do
    if [ -f "$table" ]; then echo; cat "$table"; fi
done
