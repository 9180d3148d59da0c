"""Reliability and security: no code runs from a file, bad files fail with one line that names
them, killed runs lose nothing, the same seed gives the same numbers, NaNs stop a run.

The model weights here are a randomly initialised ENet (saved once per session): these tests
check plumbing, not attack strength, so they need no training run.
"""

from __future__ import annotations

import ast
import errno
import functools
import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT, compose_train_cfg, run_until_file_then_kill
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from segattack.attacks.module import PerturbationModule
from segattack.attacks.regions import BoxRegion, FullRegion
from segattack.attacks.shuffle import EpochShuffle
from segattack.attacks.task import load_perturbation, run_attack
from segattack.cli import run_task
from segattack.errors import ConfigError, WeightsError
from segattack.io import OutputError, atomic_write, write_json, write_text
from segattack.models import NormalizedModel, create_model
from segattack.models.weights import load_torch_file, load_weights, save_weights
from segattack.training.module import SegmentationModule
from segattack.training.task import train

SIZE = (48, 64)  # smallest synthetic size ENet takes (multiples of 8, at least 32)
NUM_CLASSES = 5  # synthetic scenes

# The attack runs of this file: 16 fit images (2 batches), 8 eval images, one figure.
ATTACK = ["data=synthetic", f"data.image_size=[{SIZE[0]},{SIZE[1]}]", "data.num_train=16",
          "data.num_val=8", "data.num_test=4", "source_models=[enet]", "weights.erfnet=null",
          "logger=none", "torch_threads=1", "num_figures=1", "trainer.enable_progress_bar=false",
          "+trainer.enable_model_summary=false"]
UNIVERSAL = ["mode=universal", "region=full"]
PER_IMAGE = ["mode=per_image", "attack=pgd", "attack.steps=3", "region=box",
             "region.size=[24,32]", "region.position=random"]


# --- helpers -----------------------------------------------------------------------------------

class RunsCode:
    """Unpickling this object creates ``marker``: a stand-in for any code a file could run."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class Conv(nn.Module):
    """A 1x1 convolution to ``NUM_CLASSES`` logits that turns to NaN after ``good_calls`` calls."""

    def __init__(self, good_calls: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, NUM_CLASSES, 1)
        self.good_calls, self.calls = good_calls, 0

    def forward(self, x):
        self.calls += 1
        out = self.conv(x)
        if self.good_calls is not None and self.calls > self.good_calls:
            out = out * float("nan")
        return out


def perturbation_module(model: nn.Module, mode: str = "universal", region=None, steps: int = 6,
                        method: str = "tanh") -> PerturbationModule:
    opt = functools.partial(torch.optim.Adam, lr=0.1)
    return PerturbationModule({"m": model}, ["m"], 8 / 255, method, opt, steps, mode,
                              region or FullRegion(), None, SIZE, NUM_CLASSES)


def batch(n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *SIZE, generator=g), torch.randint(0, NUM_CLASSES, (n, *SIZE), generator=g)


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, **kwargs)


def compose_attack_cfg(out_dir: Path, overrides=()):
    """``configs/attack.yaml`` as ``attack.py`` composes it, writing into ``out_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="attack", return_hydra_config=True, overrides=[*ATTACK, *overrides])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
    GlobalHydra.instance().clear()
    return cfg


def attack_cli(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "attack.py"), *ATTACK, f"hydra.run.dir={run_dir}", *overrides]


def run_cli(args, timeout: float = 400, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **env}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def numbers(metrics_json: Path) -> dict:
    """metrics.json without the wall-clock part."""
    metrics = json.loads(metrics_json.read_text())
    metrics.pop("runtime")
    return metrics


def assert_same_numbers(a: dict, b: dict, tol: float = 1e-5, where: str = ""):
    assert a.keys() == b.keys(), where
    for key in a:
        if isinstance(a[key], dict):
            assert_same_numbers(a[key], b[key], tol, f"{where}.{key}")
        elif isinstance(a[key], float):
            assert a[key] == pytest.approx(b[key], abs=tol), f"{where}.{key}"
        else:
            assert a[key] == b[key], f"{where}.{key}"


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A randomly initialised ENet for synthetic scenes, as ``save_weights`` writes it."""
    torch.manual_seed(0)
    model = NormalizedModel(create_model("enet", NUM_CLASSES))
    path = tmp_path_factory.mktemp("weights") / "enet.safetensors"
    return save_weights(model, path, architecture="enet", num_classes=NUM_CLASSES,
                        class_names=[f"c{i}" for i in range(NUM_CLASSES)], input_size=list(SIZE))


@pytest.fixture(scope="session")
def nan_weights(tmp_path_factory) -> Path:
    """The same architecture with every parameter NaN: the model outputs NaN."""
    model = NormalizedModel(create_model("enet", NUM_CLASSES))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    path = tmp_path_factory.mktemp("nan_weights") / "enet.safetensors"
    return save_weights(model, path, architecture="enet", num_classes=NUM_CLASSES,
                        class_names=[f"c{i}" for i in range(NUM_CLASSES)], input_size=list(SIZE))


# --- 1. no code runs from a file ---------------------------------------------------------------

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
    try:
        with pytest.raises(SystemExit) as exit_:
            run_task(train, cfg)
    finally:
        GlobalHydra.instance().clear()
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


# --- 2. truncated or wrong files ----------------------------------------------------------------

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
    return perturbation_module(Conv(), "universal", FullRegion())  # w: (1, 3, 48, 64)


def _save_perturbation(path: Path, w: torch.Tensor, method: str = "tanh", key: str = "w") -> Path:
    save_file({key: w.contiguous()}, str(path), metadata={"method": json.dumps(method)})
    return path


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
    bad = _save_perturbation(tmp_path / "perturbation.safetensors", torch.zeros(1, 3, 24, 32))
    cfg = compose_attack_cfg(tmp_path / "run", [*UNIVERSAL, f"weights.enet={weights}",
                                                f"perturbation={bad}"])
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"{bad}: perturbation of shape [1, 3, 24, 32] does not fit" in err
    assert "expected [1, 3, 48, 64]" in err and "\n" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()


# --- 3a. atomic writes ----------------------------------------------------------------------------

OLD = b'{"old": true}\n'


@pytest.fixture
def old_file(tmp_path) -> Path:
    path = tmp_path / "out" / "metrics.json"
    path.parent.mkdir()
    path.write_bytes(OLD)
    return path


def assert_kept(path: Path):
    assert path.read_bytes() == OLD, "the previous file changed"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a temporary file was left"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failing_writer_keeps_previous_file(old_file, error):
    def writer(tmp: Path):
        with open(tmp, "wb") as f:
            f.write(b'{"new": ')  # half written ...
        raise error  # ... then the writer dies

    with pytest.raises(type(error)):
        atomic_write(old_file, writer)
    assert_kept(old_file)


def test_full_disk_keeps_previous_file(old_file, monkeypatch):
    def full_disk(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[:5])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OutputError) as err:
        write_json(old_file, {"new": 1})
    assert str(old_file) in str(err.value) and "No space left on device" in str(err.value)
    assert "previous file kept" in str(err.value)
    assert_kept(old_file)


def test_full_disk_in_safetensors_is_an_output_error(old_file, monkeypatch, universal_module):
    """safetensors reports an I/O failure as ``SafetensorError``, not ``OSError``."""
    import segattack.attacks.task as task

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(task, "save_file", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        task.save_perturbation(old_file, universal_module, {"method": "tanh"})
    assert_kept(old_file)


def test_file_size_limit_in_real_writers(tmp_path, old_file):
    """A real OS-level write failure (RLIMIT_FSIZE: EFBIG) in safetensors and in plain text."""
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from safetensors.torch import save_file
        from segattack.io import OutputError, atomic_write, write_text
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        for write in (lambda t: save_file({{"w": torch.zeros(10000)}}, str(t)),
                      lambda t: t.write_text("x" * 10000)):
            try:
                atomic_write({str(old_file)!r}, write)
            except OutputError as err:
                print("OutputError:", err)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(f"OutputError: {old_file}: write failed" in ln for ln in lines), lines
    assert "File too large" in lines[0] and "File too large" in lines[1]
    assert_kept(old_file)


def test_missing_output_folder(tmp_path):
    path = tmp_path / "nowhere" / "metrics.json"
    with pytest.raises(OutputError) as err:
        write_text(path, "x")
    assert str(path) in str(err.value) and "does not exist" in str(err.value)
    assert not path.parent.exists()


def test_output_path_is_a_folder(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(OutputError, match="write failed"):
        write_text(tmp_path / "metrics.json", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_unwritable_output_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        try:  # root ignores the mode bits: then there is nothing to test here
            (folder / "probe").write_text("x")
            (folder / "probe").unlink()
            pytest.skip("running as root: chmod 0o500 does not stop writes")
        except PermissionError:
            pass
        with pytest.raises(OutputError) as err:
            write_text(folder / "metrics.json", "x")
        assert str(folder / "metrics.json") in str(err.value) and "cannot write in" in str(err.value)
    finally:
        folder.chmod(0o700)


def test_unwritable_output_folder_simulated(tmp_path, monkeypatch):
    """The same refusal where chmod cannot show it (root): the temporary file cannot be made."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError) as err:
        write_text(tmp_path / "metrics.json", "x")
    assert f"{tmp_path / 'metrics.json'}: cannot write in {tmp_path} (Permission denied)" == str(err.value)


def test_sigkill_during_a_write_keeps_previous_file(old_file):
    """A process killed in the middle of ``atomic_write`` never truncates the target. (Its
    temporary file stays behind: nothing can clean up after SIGKILL; it is a dot-file.)"""
    ready = old_file.parent.parent / "ready"
    script = textwrap.dedent(f"""
        import pathlib, time
        from segattack.io import atomic_write
        def writer(tmp):
            with open(tmp, "w") as f:
                f.write('{{"new": ')
                f.flush()
                pathlib.Path({str(ready)!r}).touch()
                time.sleep(60)
        atomic_write({str(old_file)!r}, writer)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists(), "the writer did not start"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert old_file.read_bytes() == OLD
    assert all(p.name.startswith(".metrics.json.") for p in old_file.parent.iterdir() if p != old_file)


# --- 3b. a killed universal attack resumes its perturbation ---------------------------------------

def test_epoch_shuffle_depends_on_seed_and_epoch_only():
    a, b = EpochShuffle(10, seed=3), EpochShuffle(10, seed=3)
    a.set_epoch(2)
    torch.manual_seed(0)
    first = list(a)
    torch.rand(100)  # the global RNG plays no part
    b.set_epoch(2)
    assert list(b) == first and sorted(first) == list(range(10))
    b.set_epoch(3)
    assert list(b) != first
    b.resume_at(2, 4)  # the next pass over epoch 2 leaves out what was already used
    assert list(b) == first[4:]
    assert list(b) == first  # ... once only
    b.resume_at(2, 4)
    b.set_epoch(3)  # the checkpoint ended its epoch: the next one starts whole
    assert len(list(b)) == 10


def test_checkpoint_keeps_random_box_draws():
    module = perturbation_module(Conv(), "universal", BoxRegion((8, 8), SIZE, "random", seed=1))
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    expected = module.region.origins(4)
    module.region.origins(4)  # ... the run goes on, then is killed; a new process resumes:
    module.on_load_checkpoint(checkpoint)
    assert torch.equal(module.region.origins(4), expected)


def _load_w(run: Path) -> torch.Tensor:
    return load_file(str(run / "perturbation.safetensors"))["w"]


@pytest.mark.parametrize("checkpoint_every", [5, 4])  # 2 batches per epoch: mid-epoch, at its end
def test_crashed_universal_attack_resumes_exactly(tmp_path, weights, monkeypatch, checkpoint_every):
    """In-process: a crash at step 7 after the checkpoint of step 5 (or 4); the rerun resumes from
    it and ends exactly where an uninterrupted run ends."""
    overrides = [*UNIVERSAL, f"weights.enet={weights}", "attack.steps=12",
                 f"checkpoint_every={checkpoint_every}"]
    crashed, fresh = tmp_path / "crashed", tmp_path / "fresh"
    real_step = PerturbationModule.training_step

    def crash_at_7(self, batch, batch_idx):
        if self.global_step == 7:
            raise RuntimeError("simulated crash")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(PerturbationModule, "training_step", crash_at_7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_attack(compose_attack_cfg(crashed, overrides))
    monkeypatch.undo()
    last = crashed / "checkpoints" / "last.ckpt"
    assert load_torch_file(last)["global_step"] == checkpoint_every
    assert not (crashed / "metrics.json").exists()

    steps_run = []
    monkeypatch.setattr(PerturbationModule, "training_step",
                        lambda self, b, i: steps_run.append(self.global_step) or real_step(self, b, i))
    resumed = run_attack(compose_attack_cfg(crashed, overrides))
    monkeypatch.undo()
    assert steps_run == list(range(checkpoint_every, 12)), "it did not resume from the checkpoint"

    uninterrupted = run_attack(compose_attack_cfg(fresh, overrides))
    assert torch.equal(_load_w(crashed), _load_w(fresh))
    for m in (resumed, uninterrupted):
        m.pop("runtime")
    assert_same_numbers(resumed, uninterrupted, tol=1e-5)
    assert_same_numbers(numbers(crashed / "metrics.json"), numbers(fresh / "metrics.json"), tol=1e-5)


@pytest.mark.slow
def test_sigkilled_universal_attack_resumes_exactly(tmp_path, weights):
    """``attack.py`` killed with SIGKILL once ``checkpoints/last.ckpt`` exists; the same command
    again resumes from it, and its numbers equal an uninterrupted run's (the shuffle order is a
    function of (seed, epoch) and the checkpoint records the batches done, so this is exact)."""
    overrides = [*UNIVERSAL, f"weights.enet={weights}", "attack.steps=40", "checkpoint_every=5"]
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    last = killed / "checkpoints" / "last.ckpt"
    run_until_file_then_kill(attack_cli(killed, *overrides), last)
    assert not (killed / "metrics.json").exists()
    at_kill = load_torch_file(last)["global_step"]
    assert 5 <= at_kill < 40

    resumed = run_cli(attack_cli(killed, *overrides))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Lightning's INFO lines are in the run's full log (the console shows warnings only)
    assert f"Restored all states from the checkpoint at {last}" in (killed / "attack.log").read_text()
    uninterrupted = run_cli(attack_cli(fresh, *overrides))
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    assert load_torch_file(last)["global_step"] == 40
    assert torch.equal(_load_w(killed), _load_w(fresh))
    assert_same_numbers(numbers(killed / "metrics.json"), numbers(fresh / "metrics.json"), tol=1e-5)


# --- 4. determinism --------------------------------------------------------------------------------

def test_same_seed_same_numbers(tmp_path, weights):
    """The same per-image command (PGD's random start, random boxes) in a new process, with
    another hash seed, and in this process: the same numbers, the same perturbations."""
    overrides = [*PER_IMAGE, f"weights.enet={weights}", "seed=3"]
    proc = run_cli(attack_cli(tmp_path / "cli", *overrides), PYTHONHASHSEED="123")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_attack(compose_attack_cfg(tmp_path / "inproc", overrides))
    a, b = numbers(tmp_path / "cli" / "metrics.json"), numbers(tmp_path / "inproc" / "metrics.json")
    assert a == b
    assert a["perturbation"]["linf"] > 0
    deltas = [load_file(str(tmp_path / d / "perturbation.safetensors"))["delta"] for d in ("cli", "inproc")]
    assert torch.equal(*deltas)


# --- 5. numerical faults ------------------------------------------------------------------------

def test_nan_in_per_image_attack_names_the_step():
    module = perturbation_module(Conv(good_calls=3), "per_image", steps=6)
    x, y = batch()
    with pytest.raises(FloatingPointError, match="non-finite at step 3 of a per-image attack"):
        module.optimise(x, y, clean={})


def test_nan_in_universal_attack_names_the_step():
    module = perturbation_module(Conv(good_calls=3), "universal", steps=6)
    x, y = batch(8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    with pytest.raises(FloatingPointError, match="attack loss is nan at step 3"):
        quiet_trainer(max_steps=6, max_epochs=-1, inference_mode=False).fit(module, loader)


def test_nan_in_training_names_the_step():
    names = [f"c{i}" for i in range(NUM_CLASSES)]
    opt = functools.partial(torch.optim.Adam, lr=1e-3)
    module = SegmentationModule(Conv(good_calls=0), names, opt, schedule=None)
    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 0, step 0"):
        module.training_step(batch(2), 0)

    module = SegmentationModule(Conv(good_calls=2), names, opt, schedule=None)
    x, y = batch(8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 0, step 2"):
        quiet_trainer(max_epochs=1, limit_val_batches=0).fit(module, loader)


@pytest.mark.parametrize("mode", ["per_image", "universal"])
def test_nan_model_writes_no_results(tmp_path, nan_weights, mode, capsys):
    overrides = [f"weights.enet={nan_weights}", "attack.steps=2", "checkpoint_every=1",
                 *(UNIVERSAL if mode == "universal" else ["mode=per_image", "region=full"])]
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:  # one line naming the step, exit status 2
        run_task(run_attack, compose_attack_cfg(out, overrides))
    assert stop.value.code == 2
    assert "step 0" in capsys.readouterr().err
    written = {p.name for p in out.iterdir()}
    assert not written & {"metrics.json", "perturbation.safetensors", "report.md", "figures"}, written
