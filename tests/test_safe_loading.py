"""No code runs from a file: weights, checkpoints and resumes are read with ``weights_only``."""

from __future__ import annotations

import ast
import pathlib
import pickle
from pathlib import Path

import pytest
import torch
from helpers import (
    ROOT,
    UNIVERSAL,
    compose_attack_cfg,
    compose_train_cfg,
)

from segattack.attacks.task import run_attack
from segattack.cli import run_task
from segattack.errors import WeightsError
from segattack.run import load_torch_file
from segattack.training.task import train


class RunsCode:
    """Unpickling this object creates ``marker``: a stand-in for any code a file could run."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# --- no code runs from a file ---------------------------------------------------------------

def _torch_save(obj, path):
    torch.save(obj, path)


def _pickle_dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _malicious(marker: Path) -> dict:
    """What a Lightning checkpoint looks like, with one object that runs code when unpickled."""
    return {"epoch": 0, "global_step": 5, "state_dict": {"w": torch.zeros(1, 3, 4, 4)},
            "callbacks": {"ModelCheckpoint": RunsCode(marker)}}


@pytest.mark.parametrize("name, save", [("model.pt", _torch_save), ("legacy.pt", _pickle_dump),
                                        ("last.ckpt", _torch_save)])
def test_load_torch_file_runs_no_code(tmp_path, name, save):
    # the payload is real: loading a twin file the unsafe way does run it
    twin_marker, twin = tmp_path / "twin_ran", tmp_path / f"twin_{name}"
    save(_malicious(twin_marker), twin)
    if save is _pickle_dump:
        with open(twin, "rb") as f:
            pickle.load(f)
    else:
        torch.load(twin, weights_only=False)
    assert twin_marker.exists()

    marker, path = tmp_path / "code_ran", tmp_path / name
    save(_malicious(marker), path)
    with pytest.raises(WeightsError, match="refused to load") as err:
        load_torch_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists(), "unpickling ran code from the file"


def test_load_torch_file_reads_plain_tensors(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"global_step": 3, "state_dict": {"w": torch.ones(2)}, "name": "x"}, path)
    assert load_torch_file(path)["state_dict"]["w"].tolist() == [1.0, 1.0]


def test_attack_resume_checkpoint_runs_no_code(tmp_path, weights, capsys, monkeypatch):
    """A planted ``checkpoints/last.ckpt`` in a universal run's folder: refused before Lightning
    unpickles it, even where the environment asks torch for unsafe loads."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    out, marker = tmp_path / "run", tmp_path / "code_ran"
    (out / "checkpoints").mkdir(parents=True)
    torch.save(_malicious(marker), out / "checkpoints" / "last.ckpt")
    cfg = compose_attack_cfg(out, [*UNIVERSAL, f"weights.enet={weights}", "attack.steps=2"])
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert f"{out / 'checkpoints' / 'last.ckpt'}: refused to load" in err
    assert not marker.exists() and not (out / "metrics.json").exists()


def test_training_resume_checkpoint_runs_no_code(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker, last = tmp_path / "code_ran", tmp_path / "out" / "checkpoints" / "enet" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save(_malicious(marker), last)
    cfg = compose_train_cfg(tmp_path / "out")
    with pytest.raises(SystemExit) as exit_:
        run_task(train, cfg)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"{last}: refused to load" in err and "\n" not in err
    assert not marker.exists() and not (tmp_path / "out" / "weights").exists()


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def test_no_unsafe_unpickling_in_the_code_base():
    """Every ``torch.load`` passes ``weights_only=True``; every Lightning resume (``ckpt_path=``)
    passes it too (or ``**safe_load_kwargs(...)``); nothing calls ``pickle.load(s)``."""
    files = sorted((ROOT / "src").rglob("*.py")) + [ROOT / "train_models.py", ROOT / "attack.py"]
    problems, torch_loads, resumes = [], 0, 0
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle", "dill"):
                if any(a.name in ("load", "loads") for a in node.names):
                    problems.append(f"{path}:{node.lineno}: imports {node.module}.load")
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            kwargs = {k.arg: k.value for k in node.keywords}
            safe = isinstance(kwargs.get("weights_only"), ast.Constant) and kwargs["weights_only"].value is True
            safe |= any(k.arg is None and isinstance(k.value, ast.Call)
                        and _dotted(k.value.func).endswith("safe_load_kwargs") for k in node.keywords)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name.split(".")[-1] in ("load", "loads") and name.split(".")[0] in ("pickle", "dill", "cPickle"):
                problems.append(f"{where}: {name}")
            if name == "torch.load" or name.endswith("serialization.load"):
                torch_loads += 1
                if not safe:
                    problems.append(f"{where}: torch.load without weights_only=True")
            if "ckpt_path" in kwargs and not (isinstance(kwargs["ckpt_path"], ast.Constant)
                                              and kwargs["ckpt_path"].value is None):
                resumes += 1
                if not safe:
                    problems.append(f"{where}: {name}(ckpt_path=...) without weights_only=True")
    assert not problems, "\n".join(problems)
    assert torch_loads >= 1 and resumes >= 2  # the check saw load_torch_file and both resumes
