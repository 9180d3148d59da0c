"""Truncated or wrong weights and perturbation files fail with one line that names them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import (
    NUM_CLASSES,
    SIZE,
    UNIVERSAL,
    Conv,
    compose_attack_cfg,
    conv_attack,
    universal_file,
)
from safetensors.torch import save_file

from segattack.attacks.loaded import load_perturbation
from segattack.attacks.task import run_attack
from segattack.cli import run_task
from segattack.errors import ConfigError, WeightsError
from segattack.files.weights import load_weights
from segattack.models import NormalizedModel, create_model

# --- truncated or wrong files ----------------------------------------------------------------

def _bad_weights(kind: str, good: Path, folder: Path) -> Path:
    data, path = good.read_bytes(), folder / f"{kind}.safetensors"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "header_only":
        path.write_bytes(data[:8])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random_bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "foreign_metadata":  # e.g. a file from another tool: {"format": "pt"}
        save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    elif kind == "no_metadata":
        save_file({"w": torch.zeros(2)}, str(path))
    elif kind == "wrong_tensors":  # segattack metadata, tensors of a 3-class model
        meta = {k: json.dumps(v) for k, v in {
            "architecture": "enet", "num_classes": NUM_CLASSES, "class_names": list("abcde"),
            "mean": [0.5] * 3, "std": [0.5] * 3, "input_size": list(SIZE)}.items()}
        tensors = NormalizedModel(create_model("enet", 3)).state_dict()
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    elif kind == "missing":
        pass
    elif kind == "directory":
        path.mkdir()
    return path


WEIGHTS_CASES = {  # kind -> what the message must say besides the file name
    "truncated": "not a readable safetensors file",
    "header_only": "not a readable safetensors file",
    "empty": "not a readable safetensors file",
    "random_bytes": "not a readable safetensors file",
    "foreign_metadata": "metadata lacks",
    "no_metadata": "metadata lacks",
    "wrong_tensors": "tensors do not fit a enet with 5 classes",
    "missing": "weights file not found",
    "directory": "weights file not found",
}


@pytest.mark.parametrize("kind", sorted(WEIGHTS_CASES))
def test_bad_weights_file(tmp_path, weights, kind):
    path = _bad_weights(kind, weights, tmp_path)
    with pytest.raises(WeightsError) as err:
        load_weights(path, expect_num_classes=NUM_CLASSES)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and WEIGHTS_CASES[kind] in message
    assert "\n" not in message


def test_truncated_weights_via_entry_point(tmp_path, weights, capsys):
    bad = _bad_weights("truncated", weights, tmp_path)
    cfg = compose_attack_cfg(tmp_path / "run", [*UNIVERSAL, f"weights.enet={bad}"])
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert f"{bad}: not a readable safetensors file" in err


@pytest.fixture
def universal_module():
    return conv_attack(Conv(), "universal")  # w: (1, 3, 48, 64)


def _save_perturbation(path: Path, w: torch.Tensor, method: str = "tanh", key: str = "w", **meta) -> Path:
    return universal_file(path, {key: w}, **{"method": method, "source_models": ["m"], **meta})


PERTURBATION_CASES = {  # kind -> (error type, what the message says)
    "wrong_shape": (WeightsError, "perturbation of shape [1, 3, 24, 32] does not fit this run "
                                  "(expected [1, 3, 48, 64]"),
    "wrong_channels": (WeightsError, "perturbation of shape [1, 1, 48, 64] does not fit"),
    "per_image_file": (WeightsError, "not a universal perturbation file"),
    "truncated": (WeightsError, "not a universal perturbation file"),
    "random_bytes": (WeightsError, "not a universal perturbation file"),
    "missing": (WeightsError, "not a universal perturbation file"),
    "other_method": (ConfigError, "was made with 'pgd'; run with attack=pgd"),
}


@pytest.mark.parametrize("kind", sorted(PERTURBATION_CASES))
def test_bad_perturbation_file(tmp_path, universal_module, kind):
    path = tmp_path / "perturbation.safetensors"
    if kind == "wrong_shape":
        _save_perturbation(path, torch.zeros(1, 3, 24, 32))
    elif kind == "wrong_channels":
        _save_perturbation(path, torch.zeros(1, 1, *SIZE))
    elif kind == "per_image_file":
        _save_perturbation(path, torch.zeros(2, 3, *SIZE), key="delta")
    elif kind == "truncated":
        data = _save_perturbation(path, torch.zeros(1, 3, *SIZE)).read_bytes()
        path.write_bytes(data[: len(data) - 100])
    elif kind == "random_bytes":
        path.write_bytes(os.urandom(1000))
    elif kind == "other_method":
        _save_perturbation(path, torch.zeros(1, 3, *SIZE), method="pgd")
    before = universal_module.w.detach().clone()
    error, text = PERTURBATION_CASES[kind]
    with pytest.raises(error) as err:
        load_perturbation(path, universal_module)
    assert str(path) in str(err.value) and text in str(err.value)
    assert "\n" not in str(err.value)
    assert torch.equal(universal_module.w, before), "a refused file changed the perturbation"


def test_good_perturbation_file_loads(tmp_path, universal_module):
    w = torch.randn(1, 3, *SIZE)
    load_perturbation(_save_perturbation(tmp_path / "p.safetensors", w), universal_module)
    assert torch.equal(universal_module.w.detach(), w)


def test_bad_perturbation_via_entry_point(tmp_path, weights, capsys):
    bad = _save_perturbation(tmp_path / "perturbation.safetensors", torch.zeros(1, 3, 24, 32),
                             source_models=["enet"], eps=4 / 255)
    cfg = compose_attack_cfg(tmp_path / "run", [*UNIVERSAL, f"weights.enet={weights}",
                                                f"perturbation={bad}"])
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"{bad}: perturbation of shape [1, 3, 24, 32] does not fit" in err
    assert "expected [1, 3, 48, 64]" in err and "\n" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()
