"""What the evaluation reports: targeted success only where a goal exists, rates on the pixels the
model had right, null for nothing to count, per-image rows and intervals, patch placements
independent of the batch size, checked perturbation files, saved per-image sets, DDP."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from helpers import (
    SIZE,
    assert_same_numbers,
    attack_cli,
    compose_attack_cfg,
    numbers,
    run_cli,
)
from omegaconf import OmegaConf

from segattack.attacks.evaluation import AttackEvaluation, goal_pixels
from segattack.attacks.sampling import shard
from segattack.attacks.spec import goal_map
from segattack.attacks.task import run_attack
from segattack.errors import ConfigError
from segattack.labels import IGNORE_INDEX
from segattack.metrics import batch_asr
from segattack.metrics.per_image import bootstrap_ratio
from segattack.regions import BoxRegion, ClassRegion
from segattack.report import validate_metrics

IGN = IGNORE_INDEX
PED, ROAD, CAR = 9, 3, 8


def lut(**kw):
    a = OmegaConf.create({"targeted": True, "target_class": None, "target_map": None, **kw})
    return goal_map(a, 12)


def evaluate(y, area, clean, adv, goal=None, goal_lut=None, models=("a",), sources=None):
    """One batch through an AttackEvaluation; returns its results()."""
    ev = AttackEvaluation(list(models), list(sources or models), 12, goal is not None, 0,
                          goal_lut)
    x = torch.zeros(y.shape[0], 3, *y.shape[1:])
    ev.update(x, x, y, area, goal, clean, adv)
    return ev, ev.results()


# --- 1. targeted: only pixels whose label has a goal ------------------------------------------
def test_dilated_class_ring_does_not_count_as_targeted_success():
    # A 1x5x5 scene: a 1x1 pedestrian in the middle of road-less cars; the region grows it by 1
    # pixel, so the area is the 3x3 block: 1 pedestrian pixel + 8 car pixels (the ring).
    y = torch.full((1, 5, 5), CAR)
    y[0, 2, 2] = PED
    area = ClassRegion([PED], 12, dilate=1).mask(y)
    assert int(area.sum()) == 9
    table = lut(target_map={PED: ROAD})
    goal = torch.where(y == IGN, IGN, table[y])
    clean = y.clone()  # the model is right everywhere
    # Nothing changes: the ring's cars keep their (correct) label, which is also their "goal"
    # under the map's identity for unmapped classes. They must not count as successes.
    _, r = evaluate(y, area, {"a": clean}, {"a": clean}, goal, table)
    a = r["per_model"]["a"]
    assert a["asr"] == 0.0 and a["clean_error_in_area"] == 0.0  # not 8/9 as before
    assert a["pixels_in_area"] == 9 and a["pixels_scored"] == 1
    # The pedestrian becomes road: asr 1/1, on correct 1/1; the ring still does not count.
    adv = clean.clone()
    adv[0, 2, 2] = ROAD
    _, r = evaluate(y, area, {"a": clean}, {"a": adv}, goal, table)
    assert r["per_model"]["a"]["asr"] == 1.0 and r["per_model"]["a"]["asr_on_correct"] == 1.0
    assert r["per_model"]["a"]["fooling_rate"] == pytest.approx(1 / 9)  # over the whole area
    # The universal fit's progress-bar rate scores the same pixels as metrics.json.
    ev, _ = evaluate(y, area, {"a": clean}, {"a": adv}, goal, table)
    assert float(batch_asr(adv, y, area, goal, ev.has_goal(y))) == 1.0
    assert float(batch_asr(clean, y, area, goal, ev.has_goal(y))) == 0.0  # not 8/9


def test_target_class_scores_every_pixel():
    assert goal_pixels(lut(target_class=ROAD), 12) is None  # every pixel has a goal
    table = lut(target_map={PED: ROAD, CAR: ROAD})
    has = goal_pixels(table, 12)
    assert has[PED] and has[CAR] and not has[ROAD] and not has[0]
    y = torch.tensor([[[PED, ROAD, 0, 1]]])
    area = torch.ones_like(y, dtype=torch.bool)
    goal = torch.full_like(y, ROAD)
    clean = torch.tensor([[[PED, ROAD, 0, 1]]])
    adv = torch.tensor([[[ROAD, ROAD, ROAD, 1]]])
    _, r = evaluate(y, area, {"a": clean}, {"a": adv}, goal, lut(target_class=ROAD))
    a = r["per_model"]["a"]
    # every pixel scored: at goal after 3/4, before 1/4 (the road pixel); not at goal before:
    # 3 pixels, of which 2 reach it -> 2/3.
    assert (a["asr"], a["clean_error_in_area"], a["asr_on_correct"]) == pytest.approx((3 / 4, 1 / 4, 2 / 3))


# --- 2. asr on correct pixels, joint, pixel counts, null for an empty area ------------------
def test_asr_on_correct_and_joint_on_correct_by_hand():
    y = torch.tensor([[[0, 1, 2, 3, IGN]]])
    area = torch.tensor([[[True, True, True, True, True]]])
    clean = {"a": torch.tensor([[[0, 1, 0, 3, 0]]]), "b": torch.tensor([[[0, 0, 2, 3, 0]]])}
    adv = {"a": torch.tensor([[[1, 1, 1, 0, 0]]]), "b": torch.tensor([[[1, 0, 2, 0, 0]]])}
    _, r = evaluate(y, area, clean, adv, models=("a", "b"))
    a, b, j = r["per_model"]["a"], r["per_model"]["b"], r["joint"]
    # a: right before at 0, 1, 3 (3 pixels); wrong after at 0, 3 -> 2/3; asr 3/4 (0, 2, 3).
    assert (a["asr"], a["asr_on_correct"], a["pixels_correct_in_area"]) == pytest.approx((3 / 4, 2 / 3, 3))
    # b: right before at 0, 2, 3; wrong after at 0, 3 -> 2/3; asr 3/4 (0, 1, 3).
    assert b["asr_on_correct"] == pytest.approx(2 / 3)
    # both right before: 0, 3; both wrong after at both -> 1; asr_all: 0, 3 -> 2/4.
    assert (j["asr_all"], j["asr_all_on_correct"]) == pytest.approx((2 / 4, 1.0))
    assert a["pixels_in_area"] == 4  # the ignored pixel counts nowhere


def test_empty_area_is_null_with_a_warning_and_valid_json(capsys):
    y = torch.zeros(1, 2, 2, dtype=torch.long)
    area = torch.zeros(1, 2, 2, dtype=torch.bool)
    _, r = evaluate(y, area, {"a": y}, {"a": y + 1})
    a = r["per_model"]["a"]
    assert a["asr"] is None and a["asr_on_correct"] is None and a["fooling_rate"] is None
    assert a["pixels_in_area"] == 0 and a["asr_ci95"] is None and r["joint"]["asr_all"] is None
    assert a["collateral"] == 1.0  # outside the (empty) area: 4 of 4 changed
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the area holds no valid pixel")
    metrics = {"schema": 1, "attack": {"method": "tanh", "mode": "per_image", "eps": 0.01,
                                       "steps": 1, "region": "full", "area": "full",
                                       "targeted": False, "target_class": None},
               "source_models": ["a"],
               "data": {"name": "x", "fit_split": None, "eval_split": "val", "num_images": 1},
               **r, "runtime": {"seconds": 1.0, "images_per_second": 1.0}}
    validate_metrics(metrics)  # null is accepted for a rate ...
    metrics["per_model"]["a"]["asr_ci95"] = [0.5, 0.2]
    with pytest.raises(ValueError, match="low <= high"):  # ... a bad interval is not
        validate_metrics(metrics)


# --- 6. per-image rows and the bootstrap interval ---------------------------------------------
def test_per_image_rows_and_interval():
    y = torch.tensor([[[0, 0]], [[0, 0]], [[0, 0]]])
    area = torch.ones_like(y, dtype=torch.bool)
    clean = torch.tensor([[[0, 0]], [[0, 1]], [[0, 0]]])
    adv = torch.tensor([[[1, 1]], [[1, 1]], [[0, 0]]])
    ev = AttackEvaluation(["a"], ["a"], 12, False, 0)
    x = torch.zeros(3, 3, 1, 2)
    ev.update(x[2:], x[2:], y[2:], area[2:], None, {"a": clean[2:]}, {"a": adv[2:]},
              torch.tensor([2]))  # out of order: rows come back sorted by index
    ev.update(x[:2], x[:2], y[:2], area[:2], None, {"a": clean[:2]}, {"a": adv[:2]},
              torch.tensor([0, 1]))
    header, rows = ev.per_image_table()
    assert header[:5] == ["index", "a_clean_error", "a_asr", "a_asr_on_correct", "a_fooling"]
    assert rows[0][:5] == [0, 0.0, 1.0, 1.0, 1.0]
    assert rows[1][:5] == [1, 0.5, 1.0, 1.0, 0.5]  # right before at one pixel, flipped
    assert rows[2][:5] == [2, 0.0, 0.0, 0.0, 0.0]
    lo, hi = ev.results()["per_model"]["a"]["asr_ci95"]
    assert 0.0 <= lo <= 4 / 6 <= hi <= 1.0
    # identical images: no spread; a zero total: no interval
    assert bootstrap_ratio([1, 1, 1], [2, 2, 2]) == [0.5, 0.5]
    assert bootstrap_ratio([0, 0], [0, 0]) is None


def test_shards_cover_every_image_once():
    for size in range(0, 12):
        for world in (1, 2, 3, 4):
            got = [i for r in range(world) for i in shard(size, r, world)]
            assert got == list(range(size)), (size, world)


# --- 3. random patch positions fixed per image index ------------------------------------------
def test_eval_placements_depend_on_the_index_only():
    box = BoxRegion((8, 8), SIZE, "random", seed=3)
    whole = box.place_at(torch.arange(6))
    parts = torch.cat([box.place_at(torch.arange(i, i + 1)) for i in range(6)])
    assert torch.equal(whole, parts)
    box.place(5)  # a fit drawing from the region's generator changes nothing
    assert torch.equal(box.place_at(torch.arange(6)), whole)
    assert not torch.equal(whole, BoxRegion((8, 8), SIZE, "random", seed=3).place(6))
    assert not torch.equal(whole, BoxRegion((8, 8), SIZE, "random", seed=4).place_at(torch.arange(6)))


PATCH = ["mode=universal", "region=box", "region.size=[16,24]", "region.position=random",
         "data.num_val=8"]


@pytest.fixture(scope="module")
def saved_patch(weights, tmp_path_factory):
    from segattack.files.perturbation import save_perturbation

    g = torch.Generator().manual_seed(1)
    w = torch.randn(1, 3, 16, 24, generator=g) * 2
    path = tmp_path_factory.mktemp("patch") / "perturbation.safetensors"
    eps = 8 / 255
    save_perturbation(path, {"w": w, "delta": eps * torch.tanh(w)},
                      {"method": "tanh", "mode": "universal", "eps": eps,
                       "region": "box 16x24 (random)", "source_models": ["enet"],
                       "image_size": list(SIZE), "dataset": "synthetic"})
    return path


def evaluate_patch(tmp_path, weights, path, *overrides):
    cfg = compose_attack_cfg(tmp_path, [f"weights.enet={weights}", *PATCH, "eps=8/255",
                                        f"perturbation={path}", *overrides])
    run_attack(cfg)
    return json.loads((tmp_path / "metrics.json").read_text())


def test_same_patch_same_metrics_at_batch_1_and_4(weights, saved_patch, tmp_path):
    one = evaluate_patch(tmp_path / "b1", weights, saved_patch, "data.batch_size=1")
    four = evaluate_patch(tmp_path / "b4", weights, saved_patch, "data.batch_size=4")
    assert one["data"]["batch_size"] == 1 and four["data"]["batch_size"] == 4
    assert one["attack"]["eval_placement"] == "region: per image index, seed 0"
    for block in ("per_model", "joint", "perturbation"):
        assert_same_numbers(one[block], four[block], tol=1e-6, where=block)
    assert one["per_model"]["enet"]["asr"] > 0


# --- 4. a loaded perturbation is checked against the run ---------------------------------------
@pytest.mark.parametrize("override, key", [("eps=4/255", "eps="), ("region.size=[16,16]", "region"),
                                           ("source_models=[enet,enet]", "source_models")])
def test_mismatched_perturbation_is_refused_in_one_line(weights, saved_patch, tmp_path,
                                                        override, key):
    with pytest.raises(ConfigError) as err:
        evaluate_patch(tmp_path, weights, saved_patch, override)
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message, message
    assert not (tmp_path / "metrics.json").exists()


def test_perturbation_applied_at_its_own_eps_when_asked(weights, saved_patch, tmp_path):
    m = evaluate_patch(tmp_path / "own", weights, saved_patch, "eps=4/255", "perturbation_eps=file")
    assert m["attack"]["eps"] == pytest.approx(8 / 255)
    assert m["attack"]["loaded_eps"] == {"perturbation_eps": "file", "file_eps": pytest.approx(8 / 255),
                                         "run_eps": pytest.approx(4 / 255)}
    same = evaluate_patch(tmp_path / "same", weights, saved_patch)  # eps=8/255: no mismatch
    assert m["per_model"] == same["per_model"]
    assert m["perturbation"]["linf"] > 4 / 255


# --- 5. every per-image perturbation saved, PNGs, re-evaluated on other models ------------------
PER_IMAGE = ["mode=per_image", "attack=pgd", "attack.steps=2", "region=box",
             "region.size=[16,24]", "data.num_val=5", "data.batch_size=2", "eps=8/255"]


def test_saved_per_image_set_and_pngs_re_evaluate(weights, tmp_path):
    from PIL import Image

    from segattack.files.adversarial import load_adversarial_set

    run = tmp_path / "run"
    run_attack(compose_attack_cfg(run, [f"weights.enet={weights}", *PER_IMAGE, "save_adversarial=all",
                                        "adversarial_dtype=fp32", "export_png=true"]))
    m = json.loads((run / "metrics.json").read_text())
    meta, deltas = load_adversarial_set(run / "adversarial")
    assert sorted(deltas) == list(range(5)) and meta["eps"] == pytest.approx(8 / 255)
    assert meta["dtype"] == "fp32" and meta["region"] == "box 16x24 (center)"
    for crop, origin in deltas.values():  # compact: the box only, at the centred box's corner
        assert crop.shape[1] <= 16 and crop.shape[2] <= 24 and crop.abs().max() <= 8 / 255 + 1e-6
        assert origin[0] >= (SIZE[0] - 16) // 2 and origin[1] >= (SIZE[1] - 24) // 2
    pngs = sorted((run / "adversarial_png").glob("*.png"))
    assert len(pngs) == 5 and Image.open(pngs[0]).size == (SIZE[1], SIZE[0])
    assert set(m["png"]["per_model"]["enet"]) >= {"asr", "asr_on_correct"}
    assert m["saved"] == {"adversarial": "all", "adversarial_dtype": "fp32", "export_png": True}
    with open(run / "per_image.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["index"]) for r in table] == list(range(5))
    assert all(0 <= float(r["enet_asr"]) <= 1 for r in table) and table[0]["image"] == "00000"

    # re-evaluated, also on a model that was not there (the same weights under another name)
    again = tmp_path / "again"
    run_attack(compose_attack_cfg(again, [f"weights.enet={weights}", f"+weights.later={weights}",
                                          *PER_IMAGE, "eval_models=[later]",
                                          f"perturbation={run / 'adversarial'}"]))
    r = json.loads((again / "metrics.json").read_text())
    for key in ("asr", "asr_on_correct", "adv_miou", "fooling_rate"):
        assert r["per_model"]["enet"][key] == pytest.approx(m["per_model"]["enet"][key], abs=1e-6), key
        assert r["per_model"]["later"][key] == pytest.approx(m["per_model"]["enet"][key], abs=1e-6), key
    assert r["perturbation"]["linf"] == pytest.approx(m["perturbation"]["linf"], abs=1e-6)
    # a set is refused where it does not fit: another split size, or a universal run
    with pytest.raises(ConfigError, match="holds 5 images"):
        run_attack(compose_attack_cfg(tmp_path / "bad", [f"weights.enet={weights}", *PER_IMAGE,
                                                         "data.num_val=7",
                                                         f"perturbation={run / 'adversarial'}"]))


# --- 7. DDP: every image once, one summary ----------------------------------------------------
@pytest.mark.slow
def test_ddp_counts_each_image_once_with_an_odd_split(weights, tmp_path):
    # ifgsm: no random start, so each image's attack is the same whichever process runs it
    common = [f"weights.enet={weights}", "mode=per_image", "attack=ifgsm", "attack.steps=2",
              "region=full", "data.num_val=7", "data.batch_size=2"]
    ddp = run_cli(attack_cli(tmp_path / "ddp", *common, "trainer=ddp", "trainer.accelerator=cpu",
                             "trainer.devices=2"), timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run_cli(attack_cli(tmp_path / "single", *common), timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = numbers(tmp_path / "ddp" / "metrics.json"), numbers(tmp_path / "single" / "metrics.json")
    assert a["data"]["num_images"] == 7
    assert a["per_model"]["enet"]["pixels_in_area"] == b["per_model"]["enet"]["pixels_in_area"]
    assert_same_numbers(a, b, tol=1e-6)
    rows = (tmp_path / "ddp" / "per_image.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(7))
    assert ddp.stdout.count("joint asr_all") == 1  # one summary, from rank 0


def test_collect_and_report_show_the_new_columns(tmp_path):
    from segattack.report import write_metrics, write_report
    from segattack.report.collect import HEADER, collect_table

    y = torch.tensor([[[0, 1, 2, 3]]])
    area = torch.ones_like(y, dtype=torch.bool)
    _, r = evaluate(y, area, {"a": torch.tensor([[[0, 1, 2, 0]]])}, {"a": torch.tensor([[[1, 1, 2, 0]]])})
    # asr 2/4 (pixels 0 and 3), on correct 1/3 (pixel 0 of the right 0, 1, 2)
    metrics = {"schema": 1, "attack": {"method": "tanh", "mode": "per_image", "eps": 4 / 255,
                                       "steps": 1, "region": "full", "area": "full",
                                       "targeted": False, "target_class": None},
               "source_models": ["a"],
               "data": {"name": "x", "fit_split": None, "eval_split": "val", "num_images": 1},
               **r, "runtime": {"seconds": 1.0, "images_per_second": 1.0}}
    run = tmp_path / "run"
    run.mkdir()
    write_metrics(run / "metrics.json", metrics)
    table = collect_table([run])
    header = HEADER.splitlines()[0].split(" | ")
    row = table.splitlines()[2].split(" | ")
    assert len(row) == len(header)  # no stray column separator in a cell
    cell = dict(zip(header, row))
    assert cell["asr"] == "50.0%" and cell["asr on correct"] == "33.3%"
    assert cell["asr 95% CI"] == "[50.0%, 50.0%]"  # one image: no spread
    assert cell["pixels in area"] == "4" and cell["collateral"] == "–"  # full frame: no outside
    text = write_report(run, metrics, []).read_text()
    assert "| 50.0% | [50.0, 50.0]% | 25.0% | 33.3% |" in text  # asr, CI, clean error, on correct
