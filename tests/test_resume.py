"""A killed universal attack resumes its perturbation exactly; the same seed gives the same numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import (
    PER_IMAGE,
    UNIVERSAL,
    Conv,
    assert_same_numbers,
    attack_cli,
    compose_attack_cfg,
    conv_attack,
    numbers,
    run_cli,
    run_until_file_then_kill,
)
from safetensors.torch import load_file

from segattack.attacks.module import PerturbationModule
from segattack.attacks.shuffle import EpochShuffle
from segattack.attacks.task import run_attack
from segattack.run import load_torch_file

# --- a killed universal attack resumes its perturbation ---------------------------------------

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
    module = conv_attack(Conv(), "universal", "region=box", "region.size=[8,8]",
                         "region.position=random", "seed=1")
    region = module.spec.region
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    expected = region.place(4)
    region.place(4)  # ... the run goes on, then is killed; a new process resumes:
    module.on_load_checkpoint(checkpoint)
    assert torch.equal(region.place(4), expected)


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


# --- determinism --------------------------------------------------------------------------------

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
