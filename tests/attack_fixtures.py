"""Helpers and fixtures shared by the attack tests (test_attacks.py, test_attack_entry.py).

Import the fixtures into a test module (``from attack_fixtures import trained_weights``). The
trained weights are cached per test session in this module, so both test files share one
training run even though each module registers the fixture on its own.
"""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from segattack.attacks.module import PerturbationModule
from segattack.attacks.optim import SignGradient
from segattack.config import register_resolvers
from segattack.data import SyntheticDataModule
from segattack.models import NormalizedModel, create_model

ROOT = Path(__file__).resolve().parents[1]
register_resolvers(ROOT)

# Size of the trained fixture models and of the data the effectiveness tests attack.
TRAIN_SIZE = (48, 64)
NUM_CLASSES = 5  # synthetic scenes

# The two trained models: name -> training seed (the joint test needs two different models).
TRAINED = {"enet": 42, "enet2": 7}


def optimizer_for(method: str, steps: int, lr: float | None = None):
    """The update rule of ``configs/attack/<method>.yaml`` as a partial optimiser."""
    if method in ("tanh", "clip"):
        return functools.partial(torch.optim.Adam, lr=0.1 if lr is None else lr)
    if method == "sigmoid":
        return functools.partial(torch.optim.Adam, lr=0.2 if lr is None else lr)
    if method == "fgsm":
        return functools.partial(SignGradient, lr=1.0 if lr is None else lr)
    return functools.partial(SignGradient, lr=2.5 / steps if lr is None else lr)  # ifgsm, pgd


def tiny_model(seed: int = 0, num_classes: int = NUM_CLASSES) -> NormalizedModel:
    """A randomly initialised ENet behind the normalising wrapper, in eval mode."""
    torch.manual_seed(seed)
    return NormalizedModel(create_model("enet", num_classes)).eval()


def make_module(models: dict, method: str, mode: str, region, eps: float, steps: int,
                image_size, sources=None, area=None, lr=None, optimizer=None,
                num_figures: int = 64, **kwargs) -> PerturbationModule:
    return PerturbationModule(
        models, list(sources or models), eps, method,
        optimizer or optimizer_for(method, steps, lr), steps, mode, region, area,
        image_size, NUM_CLASSES, num_figures=num_figures, **kwargs)


def quiet_trainer(max_steps: int = -1, callbacks=()) -> L.Trainer:
    """A CPU Trainer as ``run_attack`` builds it (no inference mode), without outputs."""
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, max_epochs=-1,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, inference_mode=False, num_sanity_val_steps=0,
                     callbacks=list(callbacks))


def run_module(module: PerturbationModule, dm, fit_split="train", eval_split="val",
               callbacks=()) -> dict:
    """Fit (universal) then evaluate; returns ``module.results()``."""
    if module.mode == "universal":
        quiet_trainer(module.steps, callbacks).fit(
            module, train_dataloaders=dm.dataloader(fit_split, shuffle=True, train=False))
    quiet_trainer(callbacks=callbacks).test(
        module, dataloaders=dm.dataloader(eval_split, train=False), verbose=False)
    return module.results()


def synthetic(image_size=TRAIN_SIZE, num_train=8, num_val=8, batch_size=8, seed=0):
    return SyntheticDataModule(num_train=num_train, num_val=num_val, num_test=4,
                               image_size=image_size, seed=seed, batch_size=batch_size)


# --- trained models (once per session) --------------------------------------------------------
_WEIGHTS: dict[str, Path] = {}


def _train_enet(out_dir: Path, seed: int) -> Path:
    """Train ENet on small synthetic scenes in-process with the real training config."""
    from segattack.training.task import train

    overrides = ["data=synthetic", "logger=none", "models=[enet]", f"seed={seed}",
                 f"data.image_size=[{TRAIN_SIZE[0]},{TRAIN_SIZE[1]}]", "data.num_train=48",
                 "data.num_val=8", "data.num_test=4", "optimizer.lr=5e-3",
                 "trainer.max_epochs=6", "trainer.enable_progress_bar=false",
                 "+trainer.enable_model_summary=false", "torch_threads=1"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name="train_models", return_hydra_config=True,
                          overrides=overrides)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(out_dir)
        threads = torch.get_num_threads()
        try:
            (result,) = train(cfg)
        finally:
            torch.set_num_threads(threads)
    finally:
        GlobalHydra.instance().clear()
    assert result["weights"], f"training wrote no weights: {result}"
    return Path(result["weights"])


@pytest.fixture(scope="session")
def trained_weights(tmp_path_factory) -> dict[str, Path]:
    """Two ENets (different seeds) trained for a few epochs on 48x64 synthetic scenes.

    Returns name -> ``.safetensors`` path (``enet``, ``enet2``); about 10 s per model.
    """
    if not _WEIGHTS:
        root = tmp_path_factory.mktemp("trained")
        for name, seed in TRAINED.items():
            _WEIGHTS[name] = _train_enet(root / name, seed)
    return dict(_WEIGHTS)


@pytest.fixture(scope="session")
def trained_models(trained_weights) -> dict[str, NormalizedModel]:
    """The trained fixture models, loaded (eval mode)."""
    from segattack.models.weights import load_weights

    return {name: load_weights(path, expect_num_classes=NUM_CLASSES)[0]
            for name, path in trained_weights.items()}
