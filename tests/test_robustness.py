"""The worst-case robustness protocol: per-image IoU counts and their bootstrap against hand-computed
cases, the ensemble's worst case with skipped images and winners, and
``attack.py task=robustness`` end to end."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from helpers import TINY, make_module, random_weights, run_entry, synthetic

from segattack.attacks.batch import prepare_batch
from segattack.labels import IGNORE_INDEX
from segattack.metrics import SegmentationIoU
from segattack.metrics.iou import per_image_iou_counts
from segattack.metrics.per_image import bootstrap_miou

# Two 2x2 images of 3 classes (hand-computed below); the last pixel of the second is ignored.
PRED = torch.tensor([[[0, 1], [1, 1]], [[2, 0], [0, 1]]])
LABEL = torch.tensor([[[0, 1], [1, 0]], [[2, 2], [0, IGNORE_INDEX]]])
TP = [[1, 2, 0], [1, 0, 1]]
UNION = [[2, 3, 0], [2, 0, 2]]  # class 1 of the second image: its only prediction is ignored


def test_per_image_iou_counts_add_up_to_the_split_iou():
    tp, union = per_image_iou_counts(PRED, LABEL, 3)
    assert tp.tolist() == TP and union.tolist() == UNION
    iou = SegmentationIoU(3)
    iou.update(PRED, LABEL)
    per_class = iou.compute()["per_class"]
    assert torch.allclose(tp.sum(0) / union.sum(0), per_class)  # 2/4, 2/3, 1/2


def test_bootstrap_miou_spans_the_resamples():
    # Resamples: both first images (classes 0, 1: mIoU 7/12), both second (classes 0, 2: 1/2),
    # one of each (1/2, 2/3, 1/2: 5/9); each end has probability 1/4, so the 95% interval is
    # exactly [1/2, 7/12]. Class 1 is 2/3 wherever it appears, class 2 1/2.
    miou, per_class = bootstrap_miou(TP, UNION, seed=0)
    assert miou == pytest.approx([1 / 2, 7 / 12])
    assert per_class[1] == pytest.approx([2 / 3, 2 / 3]) and per_class[2] == pytest.approx([0.5, 0.5])
    assert per_class[0] == pytest.approx([0.5, 0.5])
    assert bootstrap_miou([[0, 0]], [[0, 0]]) == (None, [None, None])  # nothing to score


MEMBERS = "attack.members=[{attack: pgd},{attack: apgd, loss: js, name: second}]"


@pytest.mark.parametrize("skip", [True, False])
def test_ensemble_keeps_the_worst_case_and_skips_fooled_images(trained_models, skip):
    dm = synthetic(num_val=8)
    x, y = next(iter(dm.dataloader("val", train=False)))
    # a small area and a large eps: some images are wholly fooled by the first member
    module = make_module({"enet": trained_models["enet"]}, "attack=ensemble", MEMBERS,
                         "attack.steps=3", "eps=32/255", "region=full",
                         "area={type:box,size:[6,6],position:center}", f"attack.skip_fooled={skip}")
    batch = prepare_batch(module.spec, module.objective, x, y, torch.arange(len(y)))
    result = module.craft(batch)
    counts = result.member_counts
    total = (batch.area & (y != IGNORE_INDEX)).flatten(1).sum(1)
    fooled_by_first = counts[0] >= total
    assert fooled_by_first.any()  # the case under test happens
    ran = counts >= 0
    assert ran[0].all()
    assert torch.equal(ran[1], ~fooled_by_first if skip else torch.ones_like(ran[1]))
    best = torch.where(ran, counts, -1).max(0).values
    assert torch.equal(result.count, best)  # the worst case per image ...
    assert torch.equal(counts[result.winner, torch.arange(len(y))], best)  # ... and who reached it
    assert (result.winner == 0).all() if not ran[1].any() else True
    steps = result.steps_used
    assert (steps <= 6).all() and (steps[~ran[1]] <= 3).all()  # a skipped image costs nothing more


def test_warm_started_members_never_start_below_the_worst_case_so_far(trained_models):
    dm = synthetic(num_val=8)
    x, y = next(iter(dm.dataloader("val", train=False)))
    members = "attack.members=[{attack: pgd},{attack: apgd, loss: js},{attack: padam, loss: ce}]"
    module = make_module({"enet": trained_models["enet"]}, "attack=ensemble", members,
                         "attack.steps=2", "eps=8/255", "region=full", "attack.skip_fooled=false",
                         "attack.warm_start=true")
    batch = prepare_batch(module.spec, module.objective, x, y, torch.arange(len(y)))
    result = module.craft(batch)
    counts = result.member_counts
    # each member scores its start, the worst case so far: its best can only be at least that
    assert (counts[1] >= counts[0]).all() and (counts[2] >= counts[:2].max(0).values).all()
    assert torch.equal(result.count, counts[-1])
    assert (result.x_adv - x).abs().max() <= 8 / 255 + 1e-6


def test_robustness_task_runs_every_eps_on_the_same_images(tmp_path):
    out = tmp_path / "run"
    members = "attack.members=[{attack: tanh},{attack: pgd, loss: segpgd, name: segpgd}]"
    run_entry("attack.py", *TINY, *random_weights(tmp_path / "w"), "task=robustness",
              "source_models=[enet,enet2]", "attack=ensemble", members, "attack.skip_fooled=false",
              "region=full",
              "robustness.eps=[8/255,2/255]", "logger=none", f"hydra.run.dir={out}")
    summary = json.loads((out / "robustness.json").read_text())
    assert summary["eps"] == pytest.approx([2 / 255, 8 / 255])  # smallest first
    assert summary["attacks"] == ["tanh:margin", "segpgd"]
    assert (out / "robustness.png").stat().st_size > 0 and "| 8/255 |" in (out / "robustness.md").read_text()
    for model, entry in summary["models"].items():
        for r in entry["by_eps"]:
            # every member attacked every image: the worst case is at least as bad as each one
            worst_asr = 1 - r["accuracy"]
            for a in r["attacks"]:
                assert a["images_attacked"] == summary["num_images"]
                assert a["asr_on_attacked"] <= worst_asr + 1e-9, (model, a)
            assert sum(a["share_won"] for a in r["attacks"]) == pytest.approx(1.0)
            low, high = r["accuracy_ci95"]
            assert low <= r["accuracy"] <= high
            assert r["forward_backward_per_image"] <= 2 * 2  # two members of 2 steps each
    with open(out / "eps_8" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["num_images"] and {r["winner"] for r in rows} <= {"tanh:margin", "segpgd"}
