"""Fixtures: one thread per test session, the small training config, a CamVid skip, and two ENets
trained once per session on synthetic scenes. Helper functions live in ``helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import CAMVID, NUM_CLASSES, SIZE, TRAIN_SIZE, compose_train_cfg
from omegaconf import DictConfig

# The two trained models: name -> training seed (the joint test needs two different models).
TRAINED = {"enet": 42, "enet2": 7}


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests measure behaviour, not speed: one thread keeps them steady on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def train_cfg(tmp_path) -> DictConfig:
    """The real training config on small synthetic data, one epoch, no logger, output in tmp_path."""
    return compose_train_cfg(tmp_path)


@pytest.fixture
def camvid_root() -> Path:
    """``$SEGATTACK_DATA/CamVid`` (else ``data/CamVid``); the test is skipped where it is absent."""
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"real CamVid not found at {CAMVID}")
    return CAMVID


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A randomly initialised ENet for synthetic scenes, as ``save_weights`` writes it."""
    from segattack.files.weights import save_weights
    from segattack.models import NormalizedModel, create_model

    torch.manual_seed(0)
    model = NormalizedModel(create_model("enet", NUM_CLASSES))
    path = tmp_path_factory.mktemp("weights") / "enet.safetensors"
    return save_weights(model, path, architecture="enet", num_classes=NUM_CLASSES,
                        class_names=[f"c{i}" for i in range(NUM_CLASSES)], input_size=list(SIZE))


@pytest.fixture(scope="session")
def nan_weights(tmp_path_factory) -> Path:
    """The same architecture with every parameter NaN: the model outputs NaN."""
    from segattack.files.weights import save_weights
    from segattack.models import NormalizedModel, create_model

    model = NormalizedModel(create_model("enet", NUM_CLASSES))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    path = tmp_path_factory.mktemp("nan_weights") / "enet.safetensors"
    return save_weights(model, path, architecture="enet", num_classes=NUM_CLASSES,
                        class_names=[f"c{i}" for i in range(NUM_CLASSES)], input_size=list(SIZE))


def _train_enet(out_dir: Path, seed: int) -> Path:
    """Train ENet on small synthetic scenes in-process with the real training config."""
    from segattack.training.task import train

    cfg = compose_train_cfg(out_dir, [
        f"seed={seed}", f"data.image_size=[{TRAIN_SIZE[0]},{TRAIN_SIZE[1]}]", "data.num_train=48",
        "data.num_val=8", "data.num_test=4", "optimizer.lr=5e-3", "trainer.max_epochs=6"])
    threads = torch.get_num_threads()
    try:
        (result,) = train(cfg)
    finally:
        torch.set_num_threads(threads)
    assert result["weights"], f"training wrote no weights: {result}"
    return Path(result["weights"])


@pytest.fixture(scope="session")
def trained_weights(tmp_path_factory) -> dict[str, Path]:
    """Two ENets (different seeds) trained for a few epochs on 48x64 synthetic scenes.

    Returns name -> ``.safetensors`` path (``enet``, ``enet2``); about 10 s per model.
    """
    root = tmp_path_factory.mktemp("trained")
    return {name: _train_enet(root / name, seed) for name, seed in TRAINED.items()}


@pytest.fixture(scope="session")
def trained_models(trained_weights) -> dict:
    """The trained fixture models, loaded (eval mode)."""
    from segattack.files.weights import load_weights

    return {name: load_weights(path, expect_num_classes=NUM_CLASSES)[0]
            for name, path in trained_weights.items()}
