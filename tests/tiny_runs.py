"""Tiny end-to-end runs of the entry points for the console, sweep and W&B tests: untrained
5-class ENets (the runs need models, not good ones) and overrides that take seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from segattack.data.classes import SYNTHETIC_CLASSES
from segattack.models import NormalizedModel, create_model
from segattack.models.weights import save_weights

ROOT = Path(__file__).resolve().parents[1]
SIZE = (32, 48)
TINY = ["data=synthetic", f"data.image_size=[{SIZE[0]},{SIZE[1]}]", "data.num_train=4",
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
                            input_size=list(SIZE))
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
