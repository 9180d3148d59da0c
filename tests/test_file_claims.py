"""Every file is checked against its own claims before use: a per-image set, a universal
perturbation, weights and training checkpoints, each written by the project's own writer on tiny
tensors and then tampered with. Each refusal is one line naming the file (exit 2 at the entry point)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import PER_IMAGE, SIZE, compose_attack_cfg, universal_file
from test_bad_input import outputs

from segattack.attacks.task import run_attack
from segattack.cli import run_task
from segattack.errors import WeightsError
from segattack.files.adversarial import AdversarialWriter, load_adversarial_set
from segattack.files.checkpoint import check_fits, load_checkpoint_model
from segattack.files.perturbation import read_universal_metadata
from segattack.files.tensorfile import read_metadata, read_tensors, write_tensor_file
from segattack.files.weights import load_weights, save_weights
from segattack.models import NormalizedModel, create_model

EPS = 4 / 255
SET_META = {"method": "pgd", "mode": "per_image", "eps": EPS, "region": "full", "source_models": ["enet"],
            "image_size": list(SIZE), "dataset": "synthetic", "split": "val", "num_images": 4}


def refused(call, path) -> str:
    """The message of the WeightsError ``call()`` raises: it names ``path`` and is one line."""
    with pytest.raises(WeightsError) as err:
        call()
    message = str(err.value)
    assert str(path) in message and "\n" not in message, message
    return message


def tamper(path, tensors=None, **meta):
    """Rewrite a file with the project's writer: its tensors changed by ``tensors(dict)``, metadata
    keys set (``None`` removes a key)."""
    old_meta, old = read_metadata(path), read_tensors(path)
    new = tensors(old) if tensors else old
    merged = {k: v for k, v in {**old_meta, **meta}.items() if v is not None}
    write_tensor_file(path, new, merged)


# --- per-image sets ---------------------------------------------------------------------------
def write_set(folder, dtype="fp16", shard_size=2):
    """Four images' honest deltas (within EPS, a box of each frame) as ``save_adversarial=all`` writes them."""
    writer = AdversarialWriter(folder, SET_META, dtype, shard_size=shard_size)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, *SIZE, generator=g) * 0.5 + 0.25
    delta = torch.zeros_like(x)
    delta[:, :, 8:24, 16:40] = (torch.rand(4, 3, 16, 24, generator=g) * 2 - 1) * EPS
    x_adv = (x + delta).clamp(0, 1)
    for batch in (slice(0, 2), slice(2, 4)):
        writer(torch.arange(4)[batch], x[batch], x_adv[batch])
    writer.close()
    return folder


def scale(factor):
    return lambda t: {k: v * factor if k.startswith("delta.") else v for k, v in t.items()}


SET_CASES = {  # case -> (how the first shard is tampered, what the message says)
    "deltas x60": (lambda p: tamper(p, scale(60)), "beyond the file's eps=0.0156863 (4/255)"),
    "deltas x1.05": (lambda p: tamper(p, scale(1.05)), "beyond the file's eps"),
    "NaN delta": (lambda p: tamper(p, lambda t: {**t, "delta.0": t["delta.0"] * float("nan")}),
                  "delta.0 holds NaN or infinite values"),
    "dtype not as stated": (lambda p: tamper(p, lambda t: {**t, "delta.0": t["delta.0"].float()}),
                            "delta.0 is float32, the metadata says dtype='fp16'"),
    "one channel": (lambda p: tamper(p, lambda t: {**t, "delta.0": t["delta.0"][:1]}),
                    "expected [3, h, w] (3 colour channels)"),
    "crop outside the image": (lambda p: tamper(p, lambda t: {**t, "origin.0": torch.tensor([40, 50])}),
                               "does not lie inside the stated image size 48x64"),
    "negative origin": (lambda p: tamper(p, lambda t: {**t, "origin.0": torch.tensor([-1, 0])}),
                        "does not lie inside"),
    "float origin": (lambda p: tamper(p, lambda t: {**t, "origin.0": torch.tensor([8.0, 16.0])}),
                     "expected two int64 (y, x)"),
    "eps removed": (lambda p: tamper(p, eps=None), "metadata lacks ['eps']"),
    "eps='abc'": (lambda p: tamper(p, eps="abc"), "metadata eps='abc': expected a number"),
    "eps=inf": (lambda p: tamper(p, eps=float("inf")), "metadata eps=inf"),
    "dtype unknown": (lambda p: tamper(p, dtype="fp8"), "metadata dtype='fp8': expected one of"),
    "index beyond num_images": (lambda p: tamper(p, indices=[0, 9]), "indices reach 9, beyond its num_images=4"),
    "negative index": (lambda p: tamper(p, indices=[-1, 0]), "metadata indices=[-1,0]"),
    "tensor not listed": (lambda p: tamper(p, indices=[0]), "holds 'delta.1', which its metadata indices do not list"),
    "image in two shards": (lambda p: tamper(p, lambda t: {"delta.0": t["delta.2"], "origin.0": t["origin.2"]},
                                             indices=[0]), "image 0 is also in another shard"),
}


def test_honest_set_loads(tmp_path):
    for dtype in ("fp16", "fp32"):
        meta, deltas = load_adversarial_set(write_set(tmp_path / dtype, dtype))
        assert sorted(deltas) == [0, 1, 2, 3] and meta["eps"] == EPS
        assert max(float(d.abs().max()) for d, _ in deltas.values()) > 0.9 * EPS


@pytest.mark.parametrize("case", sorted(SET_CASES))
def test_tampered_set_refused(tmp_path, case):
    folder = write_set(tmp_path / "adversarial")
    shards = sorted(folder.glob("shard_*.safetensors"))
    change, text = SET_CASES[case]
    change(shards[0] if case != "image in two shards" else shards[1])
    message = refused(lambda: load_adversarial_set(folder), folder)
    assert text in message, message


def test_set_with_deltas_times_60_stops_the_run(tmp_path, weights, capsys):
    """The issue's worst case: a real run's set, deltas x60, re-evaluated: exit 2 and one line
    before any image is evaluated, no outputs (it used to report asr 85% at eps 4/255)."""
    common = [f"weights.enet={weights}", *PER_IMAGE, "attack.steps=1", "data.num_val=4"]
    run_attack(compose_attack_cfg(tmp_path / "made", [*common, "save_adversarial=all"]))
    shard = sorted((tmp_path / "made" / "adversarial").glob("shard_*.safetensors"))[0]
    tamper(shard, scale(60))
    cfg = compose_attack_cfg(tmp_path / "again", [*common, f"perturbation={shard.parent}"])
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith(f"error: {shard}: delta.")
    assert "beyond the file's eps" in err
    assert outputs(tmp_path / "again") == []


# --- universal perturbations ------------------------------------------------------------------
def write_universal(path):
    w = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    return universal_file(path, {"w": w, "delta": EPS * torch.tanh(w)}, eps=EPS)


UNIVERSAL_CASES = {
    "eps='abc'": ({"eps": "abc"}, "metadata eps='abc': expected a number"),
    "eps=0": ({"eps": 0}, "metadata eps=0: expected > 0"),
    "eps removed": ({"eps": None}, "metadata lacks ['eps']"),
    "stripped of eps, region, models": ({"eps": None, "region": None, "source_models": None},
                                        "metadata lacks ['eps', 'region', 'source_models']"),
    "region a number": ({"region": 3}, "metadata region=3: expected a string"),
    "no models": ({"source_models": []}, "metadata source_models=[]: expected at least 1 value"),
    "per-image file": ({"mode": "per_image"}, "not a universal perturbation"),
    "image size of one value": ({"image_size": [48]}, "metadata image_size=[48]"),
}


@pytest.mark.parametrize("case", sorted(UNIVERSAL_CASES))
def test_universal_metadata_checked(tmp_path, case):
    path = write_universal(tmp_path / "perturbation.safetensors")
    read_universal_metadata(path)  # the honest file
    meta, text = UNIVERSAL_CASES[case]
    tamper(path, **meta)
    assert text in refused(lambda: read_universal_metadata(path), path)


def test_universal_delta_beyond_its_eps_refused(tmp_path):
    from segattack.files.perturbation import load_universal_w

    path = write_universal(tmp_path / "perturbation.safetensors")
    assert load_universal_w(path, (1, 3, *SIZE), "tanh", "").shape == (1, 3, *SIZE)
    tamper(path, lambda t: {**t, "delta": t["delta"] * 60})
    assert "beyond the file's eps" in refused(lambda: load_universal_w(path, (1, 3, *SIZE), "tanh", ""), path)


def test_universal_eps_abc_at_the_entry_point(tmp_path, weights, capsys):
    """``eps="abc"`` in the file was a traceback: now one line, exit 2, no outputs."""
    path = write_universal(tmp_path / "perturbation.safetensors")
    tamper(path, eps="abc")
    cfg = compose_attack_cfg(tmp_path / "run", ["mode=universal", "region=full", f"weights.enet={weights}",
                                                f"perturbation={path}"])
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {path}: metadata eps='abc': expected a number\n"
    assert outputs(tmp_path / "run") == []


# --- weights ----------------------------------------------------------------------------------
def write_weights(path):
    torch.manual_seed(0)
    model = NormalizedModel(create_model("enet", 5))
    return save_weights(model, path, architecture="enet", num_classes=5, class_names=list("abcde"),
                        input_size=list(SIZE))


WEIGHTS_CASES = {
    "std=inf in metadata": (dict(std=[float("inf"), 0.2, 0.2]), None, "metadata std=[inf,0.2,0.2]"),
    "std=0 in metadata": (dict(std=[0.0, 0.2, 0.2]), None, "expected > 0"),
    "mean=NaN in metadata": (dict(mean=[float("nan"), 0.5, 0.5]), None, "expected a finite number"),
    "mean not the tensors'": (dict(mean=[0.1, 0.2, 0.3]), None, "metadata mean=[0.1, 0.2, 0.3] differs from"),
    "std tensor 0": ({}, lambda t: {**t, "std": torch.zeros_like(t["std"])}, "tensor std=[0.0, 0.0, 0.0]"),
    "float tensor as integers": ({}, lambda t: {k: v.long() if k.endswith("initial.conv.weight") else v
                                                for k, v in t.items()}, "is int64, expected a floating type"),
    "counter as float": ({}, lambda t: {k: v.float() if k.endswith("num_batches_tracked") else v
                                        for k, v in t.items()}, "is float32, expected an integer type"),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS_CASES))
def test_weights_checked_against_their_claims(tmp_path, case):
    path = write_weights(tmp_path / "enet.safetensors")
    load_weights(path)
    meta, tensors, text = WEIGHTS_CASES[case]
    tamper(path, tensors, **meta)
    assert text in refused(lambda: load_weights(path), path)


# --- training checkpoints ---------------------------------------------------------------------
def write_checkpoint(path, state=None):
    """A checkpoint laid out as ``train_models.py``'s Lightning writes it (``model.`` prefix)."""
    torch.manual_seed(0)
    net = NormalizedModel(create_model("enet", 5))
    state = {f"model.{k}": v for k, v in net.state_dict().items()} if state is None else state
    torch.save({"state_dict": state, "epoch": 3, "global_step": 12}, path)
    return path


def good_state():
    torch.manual_seed(0)
    return {f"model.{k}": v for k, v in NormalizedModel(create_model("enet", 5)).state_dict().items()}


CHECKPOINT_CASES = {
    "state_dict a list": (lambda: [1, 2], "state_dict is a list, expected a mapping of names to tensors"),
    "integer key": (lambda: {**good_state(), 3: torch.zeros(1)}, "state_dict entry 3 is a Tensor"),
    "value not a tensor": (lambda: {**good_state(), "model.mean": [0.5, 0.5, 0.5]},
                           "state_dict entry 'model.mean' is a list"),
    "tensor of another shape": (lambda: {**good_state(), "model.std": torch.ones(4)},
                                "tensors do not fit a enet with 5 classes"),
    "std 0": (lambda: {**good_state(), "model.std": torch.zeros(1, 3, 1, 1)}, "expected values > 0"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_checkpoint_state_dict_checked(tmp_path, case):
    load_checkpoint_model(write_checkpoint(tmp_path / "good.ckpt"), "enet", 5)
    state, text = CHECKPOINT_CASES[case]
    path = write_checkpoint(tmp_path / "last.ckpt", state())
    assert text in refused(lambda: load_checkpoint_model(path, "enet", 5), path)


def test_resume_checkpoint_must_fit_the_module(tmp_path):
    from segattack.run import load_torch_file

    module = torch.nn.Module()
    module.model = NormalizedModel(create_model("enet", 5))
    good = write_checkpoint(tmp_path / "good.ckpt")
    check_fits(good, load_torch_file(good), module)
    bad = write_checkpoint(tmp_path / "bad.ckpt", {**good_state(), "model.std": torch.ones(4)})
    message = refused(lambda: check_fits(bad, load_torch_file(bad), module), bad)
    assert "model.std [4] (expected [1, 3, 1, 1])" in message


def test_metadata_of_a_tampered_file_is_json(tmp_path):
    """``tamper`` keeps every other key as the writer stored it (the cases above change one thing)."""
    path = write_universal(tmp_path / "p.safetensors")
    tamper(path, region="box 8x8 (center)")
    meta = read_metadata(path)
    assert meta["region"] == "box 8x8 (center)" and meta["eps"] == EPS and json.dumps(meta)
