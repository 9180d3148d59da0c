"""Shared fixtures: the real Hydra config shrunk to seconds, tiny image trees, a CamVid skip."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from PIL import Image

from segattack.config import register_resolvers

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "CamVid"
# Only the tests (and CI) read the shared data copy; a user's default is data/ in the clone.
os.environ.setdefault("SEGATTACK_DATA", str(CAMVID.parent))

register_resolvers(ROOT)

# Overrides that make the real training config run in seconds on one CPU thread.
SMALL = [
    "logger=none",
    "models=[enet]",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "torch_threads=1",
]
SMALL_SYNTHETIC = [
    "data=synthetic",
    "data.num_train=16",
    "data.num_val=8",
    "data.num_test=8",
    "data.image_size=[64,96]",
    "data.batch_size=8",
]


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests measure behaviour, not speed: one thread keeps them steady on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def compose_train_cfg(output_dir: Path, overrides: list[str] = (), synthetic: bool = True) -> DictConfig:
    """Compose ``configs/train_models.yaml`` as ``@hydra.main`` would, writing into ``output_dir``.

    ``synthetic`` adds the small synthetic data set (leave it out to choose another ``data=``).
    ``HydraConfig`` is set as in lightning-hydra-template, so ``${hydra:...}`` interpolations
    resolve in-process.
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train_models", return_hydra_config=True,
                      overrides=[*SMALL, *(SMALL_SYNTHETIC if synthetic else []), *overrides])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def train_cfg(tmp_path) -> DictConfig:
    """The real training config on small synthetic data, one epoch, no logger, output in tmp_path."""
    cfg = compose_train_cfg(tmp_path)
    yield cfg
    GlobalHydra.instance().clear()


@pytest.fixture
def camvid_root() -> Path:
    """``../shared/data/CamVid``; the test is skipped where it is absent."""
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"real CamVid not found at {CAMVID}")
    return CAMVID


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
