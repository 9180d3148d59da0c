"""NaNs stop a run at the step where they appear, and a NaN model writes no results."""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import (
    NUM_CLASSES,
    UNIVERSAL,
    Conv,
    batch,
    compose_attack_cfg,
    conv_attack,
    quiet_trainer,
)

from segattack.attacks.batch import AttackBatch
from segattack.attacks.loop import optimise_per_image
from segattack.attacks.task import run_attack
from segattack.cli import run_task
from segattack.training.module import SegmentationModule

# --- numerical faults ------------------------------------------------------------------------

def test_nan_in_per_image_attack_names_the_step():
    module = conv_attack(Conv(good_calls=3), "per_image", steps=6)
    x, y = batch()
    mask = torch.ones_like(y, dtype=torch.bool)
    with pytest.raises(FloatingPointError, match="non-finite at step 3 of a per-image attack"):
        optimise_per_image(module.spec, module.objective, module.perturbation,
                           AttackBatch(x, y, mask, None, mask), module.generator)


def test_nan_in_universal_attack_names_the_step():
    module = conv_attack(Conv(good_calls=3), "universal", steps=6)
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
    with pytest.raises(SystemExit) as stop:  # one line naming the file, exit status 2
        run_task(run_attack, compose_attack_cfg(out, overrides))
    assert stop.value.code == 2
    assert f"{nan_weights}: 340 tensor(s) hold NaN or infinite values" in capsys.readouterr().err
    written = {p.name for p in out.iterdir()}
    assert not written & {"metrics.json", "perturbation.safetensors", "report.md", "figures"}, written
