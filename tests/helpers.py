"""Helpers the tests import (fixtures live in conftest.py): composing the real configs, a quiet
Trainer, tiny models and data, building an attack through its spec, and small files."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image
from torch import nn

from segattack.attacks.module import PerturbationModule
from segattack.attacks.spec import AttackSpec, build_attack_spec
from segattack.config import compose_config
from segattack.data import SyntheticDataModule
from segattack.files.weights import save_weights
from segattack.labels import SYNTHETIC_CLASSES
from segattack.models import NormalizedModel, create_model

ROOT = Path(__file__).resolve().parents[1]
# The data folder the entry points read (configs/paths/default.yaml): $SEGATTACK_DATA, else data/.
DATA = Path(os.environ.get("SEGATTACK_DATA") or ROOT / "data")
CAMVID = DATA / "CamVid"
os.environ.setdefault("SEGATTACK_DATA", str(DATA))

# Size of the trained fixture models and of the data the effectiveness tests attack.
TRAIN_SIZE = (48, 64)
NUM_CLASSES = 5  # synthetic scenes

# Overrides that make the real training config run in seconds on one CPU thread.
SMALL = ["logger=none", "models=[enet]", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
         "+trainer.enable_model_summary=false", "torch_threads=1"]
SMALL_SYNTHETIC = ["data=synthetic", "data.num_train=16", "data.num_val=8", "data.num_test=8",
                   "data.image_size=[64,96]", "data.batch_size=8"]


def compose(config_name: str, output_dir=None, overrides=()) -> DictConfig:
    """``configs/<config_name>.yaml`` composed as ``@hydra.main`` would, writing into ``output_dir``."""
    return compose_config(ROOT, config_name, overrides, output_dir)


def compose_train_cfg(output_dir: Path, overrides=(), synthetic: bool = True) -> DictConfig:
    """The training config, small (``SMALL``), on small synthetic data unless ``synthetic=False``."""
    return compose("train_models", output_dir, [*SMALL, *(SMALL_SYNTHETIC if synthetic else []), *overrides])


def quiet_trainer(max_steps: int = -1, callbacks=(), **kwargs) -> L.Trainer:
    """A CPU Trainer as ``run_attack`` builds it (no inference mode), without outputs;
    ``kwargs`` override any setting (e.g. ``max_epochs=1`` for a training run)."""
    settings = dict(accelerator="cpu", devices=1, max_steps=max_steps, max_epochs=-1, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, inference_mode=False, num_sanity_val_steps=0,
                    callbacks=list(callbacks))
    return L.Trainer(**{**settings, **kwargs})


# --- attacks built as attack.py builds them ---------------------------------------------------
def attack_spec(overrides=(), image_size=TRAIN_SIZE, num_classes=NUM_CLASSES, sources=("m",),
                eval_models=()) -> AttackSpec:
    """``build_attack_spec`` of ``configs/attack.yaml`` with ``overrides`` (e.g. ``attack=pgd``)."""
    cfg = compose("attack", None, [f"source_models=[{','.join(sources)}]",
                                   f"eval_models=[{','.join(eval_models)}]", "num_figures=64",
                                   *overrides])
    return build_attack_spec(cfg, image_size, num_classes)


# How the effectiveness tests set their margins. A tiny ENet trained for seconds is a different
# network on another CPU or thread count (its floating-point path differs), so an effect size one
# machine reaches is no test. Each effect was measured on eight trained fixture models (training
# seeds 42, 7, 1, 2, 3 with 1 thread; 42, 7, 1 with 2 threads, which train other networks) and a
# test asserts about half the smallest effect measured; the comment at each assertion gives the
# spread. Uniform noise of the same eps (``NOISE_ONLY``) stays within 0.002 of the clean error
# per image on all eight, so the clean error is the floor a per-image attack is measured from.
# PGD's uniform random start with a negligible step (SignGradient refuses lr 0): noise of the eps.
NOISE_ONLY = ["attack=pgd", "attack.steps=1", "attack.optimizer.lr=1e-9"]


def make_module(models: dict, *overrides: str, image_size=TRAIN_SIZE, sources=None,
                optimizer=None) -> PerturbationModule:
    """A ``PerturbationModule`` on ``models`` (all attacked unless ``sources`` says which).

    ``optimizer`` replaces the config's optimiser factory (to record what it is given).
    """
    sources = list(sources or models)
    spec = attack_spec(overrides, image_size, sources=sources,
                       eval_models=[m for m in models if m not in sources])
    if optimizer is not None:
        spec = dataclasses.replace(spec, optimizer=optimizer)
    return PerturbationModule(models, spec)


def run_module(module: PerturbationModule, dm, fit_split="train", eval_split="val",
               callbacks=()) -> dict:
    """Fit (universal) then evaluate; returns ``module.results()``."""
    if module.universal:
        quiet_trainer(module.spec.steps, callbacks).fit(
            module, train_dataloaders=dm.dataloader(fit_split, shuffle=True, train=False))
    quiet_trainer(callbacks=callbacks).test(
        module, dataloaders=dm.dataloader(eval_split, train=False), verbose=False)
    return module.results()


def tiny_model(seed: int = 0, num_classes: int = NUM_CLASSES) -> NormalizedModel:
    """A randomly initialised ENet behind the normalising wrapper, in eval mode."""
    torch.manual_seed(seed)
    return NormalizedModel(create_model("enet", num_classes)).eval()


def synthetic(image_size=TRAIN_SIZE, num_train=8, num_val=8, batch_size=8, seed=0):
    return SyntheticDataModule(num_train=num_train, num_val=num_val, num_test=4,
                               image_size=image_size, seed=seed, batch_size=batch_size)


# --- files and processes -----------------------------------------------------------------------
def write_png(path: str | Path, array) -> Path:
    """Write a uint8 array (H, W) or (H, W, 3) as PNG, creating the folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def run_until_file_then_kill(args: list[str], path: Path, timeout: float = 300) -> str:
    """Start ``args`` (cwd ROOT, one thread), SIGKILL it once ``path`` exists; return its stderr.

    Lightning writes checkpoints as a temp file then a move, so once ``path`` exists it is whole.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + timeout
    try:
        while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way:\n{stderr[-3000:]}"
    return stderr


# --- small attack runs of the reliability tests -------------------------------------------------
SIZE = (48, 64)  # smallest synthetic size ENet takes (multiples of 8, at least 32)

# 16 fit images (2 batches), 8 eval images, one figure, one random ENet (``weights`` fixture).
SMALL_ATTACK = ["attack=tanh", "data=synthetic", f"data.image_size=[{SIZE[0]},{SIZE[1]}]", "data.num_train=16",
                "data.num_val=8", "data.num_test=4", "source_models=[enet]", "weights.erfnet=null",
                "logger=none", "torch_threads=1", "num_figures=1", "trainer.enable_progress_bar=false",
                "+trainer.enable_model_summary=false"]
UNIVERSAL = ["mode=universal", "region=full"]
PER_IMAGE = ["mode=per_image", "attack=pgd", "attack.steps=3", "region=box",
             "region.size=[24,32]", "region.position=random"]


def compose_attack_cfg(out_dir: Path, overrides=()) -> DictConfig:
    """``SMALL_ATTACK`` with ``overrides``, as ``attack.py`` composes it, writing into ``out_dir``."""
    return compose("attack", out_dir, [*SMALL_ATTACK, *overrides])


def attack_cli(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "attack.py"), *SMALL_ATTACK, f"hydra.run.dir={run_dir}", *overrides]


def run_cli(args, timeout: float = 400, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **env}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def universal_file(path: Path, tensors: dict, **meta) -> Path:
    """A universal perturbation file as a run writes it (every metadata key), ``meta`` overriding
    (an 8/255 full-frame tanh perturbation of ENet on ``SIZE`` synthetic images by default)."""
    from segattack.files.perturbation import save_perturbation

    made = {"method": "tanh", "mode": "universal", "eps": 8 / 255, "region": "full",
            "source_models": ["enet"], "image_size": list(SIZE), "dataset": "synthetic", **meta}
    return save_perturbation(path, tensors, made)


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


def conv_attack(model: nn.Module, mode: str = "universal", *overrides: str, steps: int = 6,
                method: str = "tanh") -> PerturbationModule:
    """An attack at 8/255 on one small model ``m`` over ``SIZE`` images (full image unless
    ``overrides`` say otherwise)."""
    return make_module({"m": model}, f"attack={method}", f"attack.steps={steps}", "eps=8/255",
                       "attack.optimizer.lr=0.1", f"mode={mode}", "region=full", *overrides,
                       image_size=SIZE)


def batch(n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *SIZE, generator=g), torch.randint(0, NUM_CLASSES, (n, *SIZE), generator=g)


def numbers(metrics_json: Path) -> dict:
    """metrics.json without the wall-clock part."""
    metrics = json.loads(metrics_json.read_text())
    metrics.pop("runtime")
    return metrics


def assert_same_numbers(a, b, tol: float = 1e-5, where: str = ""):
    """``a`` and ``b`` (nested dicts and lists) hold the same values, floats within ``tol``."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_numbers(a[key], b[key], tol, f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same_numbers(u, v, tol, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=tol), where
    else:
        assert a == b, where


# --- tiny end-to-end runs of the entry points (console, sweep, help, W&B tests) -----------------
# Untrained 5-class ENets (the runs need models, not good ones) and overrides that take seconds.
TINY_SIZE = (32, 48)
# (every step, last iterate: an untrained model is wrong everywhere, early stop would end at once)
TINY = ["attack=tanh", "attack.early_stop=false", "attack.best=false", "data=synthetic", f"data.image_size=[{TINY_SIZE[0]},{TINY_SIZE[1]}]", "data.num_train=4",
        "data.num_val=2", "data.batch_size=2", "torch_threads=1",
        "+trainer.enable_model_summary=false", "attack.steps=2"]


def random_weights(out: Path, names=("enet", "enet2")) -> list[str]:
    """Untrained ENets for synthetic scenes, as ``weights.NAME=PATH`` overrides."""
    out.mkdir(parents=True, exist_ok=True)
    overrides = []
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        model = NormalizedModel(create_model("enet", len(SYNTHETIC_CLASSES)))
        path = save_weights(model, out / f"{name}.safetensors", architecture="enet",
                            num_classes=len(SYNTHETIC_CLASSES), class_names=list(SYNTHETIC_CLASSES),
                            input_size=list(TINY_SIZE))
        overrides.append(f"{'' if name in ('enet', 'erfnet') else '+'}weights.{name}={path}")
    return overrides


def run_entry(script: str, *args: str, check: bool = True, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    """``python <script> ARGS`` in the project folder, one thread, output captured."""
    proc = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
