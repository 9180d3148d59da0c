"""Training values that a run used to accept and train nonsense with (or end in a traceback on)
are refused by the schema, one line each, before any data is read."""

from __future__ import annotations

import pytest
from helpers import compose_train_cfg
from test_bad_input import outputs

from segattack.errors import ConfigError
from segattack.schema import check_train_config

SEED_RANGE = "expected an integer in [0, 4294967295] (numpy's seed range)"

CASES = [  # (overrides, synthetic data, the line)
    (["trainer.max_epochs=0"], True, "trainer.max_epochs=0: expected >= 1 (the number of epochs to train)"),
    (["trainer.max_epochs=-1"], True, "trainer.max_epochs=-1: expected >= 1 (the number of epochs to train)"),
    (["optimizer.lr=0"], True, "optimizer.lr=0.0: expected 0 < lr <= 10"),
    (["optimizer.lr=1e12"], True, "optimizer.lr=1000000000000.0: expected 0 < lr <= 10"),
    (["optimizer.lr=-1e-3"], True, "optimizer.lr=-0.001: expected >= 0"),
    (["optimizer.weight_decay=-1"], True, "optimizer.weight_decay=-1: expected a finite number >= 0"),
    (["optimizer.weight_decay=inf"], True, "optimizer.weight_decay=inf: expected a finite number >= 0"),
    (["seed=-1"], True, f"seed=-1: {SEED_RANGE}"),
    (["seed=4294967296"], True, f"seed=4294967296: {SEED_RANGE}"),
    (["std=[inf,0.2,0.2]"], True, "std=[inf,0.2,0.2]: item 0: expected a finite number"),
    (["mean=[nan,0.4,0.4]"], True, "mean=[nan,0.4,0.4]: item 0: expected a finite number"),
    (["data.image_size=[60,96]"], True, "data.image_size=[60,96]: enet takes sizes that are multiples of 8 "
                                        "(e.g. [64,96])"),
    (["data.crop_size=[30,40]"], False, "data.crop_size=[30,40]: enet takes sizes that are multiples of 8 "
                                        "(e.g. [32,40])"),
    (["models=[erfnet]", "data.image_size=[36,64]"], True,
     "data.image_size=[36,64]: erfnet takes sizes that are multiples of 8 (e.g. [32,64])"),
]


@pytest.mark.parametrize("overrides, synthetic, line", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_training_value_refused(tmp_path, overrides, synthetic, line):
    cfg = compose_train_cfg(tmp_path, overrides, synthetic=synthetic)
    with pytest.raises(ConfigError) as err:
        check_train_config(cfg)
    assert str(err.value) == line


@pytest.mark.parametrize("overrides", [["seed=0"], ["seed=4294967295"], ["optimizer.weight_decay=0"],
                                       ["optimizer.lr=10"], ["task=evaluate", "trainer.max_epochs=0"]])
def test_edges_accepted(tmp_path, overrides):
    check_train_config(compose_train_cfg(tmp_path, overrides))


def refused_by_the_entry_point(run_dir, capsys, overrides) -> str:
    """The one line ``train_models.py`` prints for ``overrides``, run in-process through
    ``run_task`` as its ``main`` does (the process-level path: test_bad_input's CLI test)."""
    from hydra.core.global_hydra import GlobalHydra

    from segattack.cli import run_task
    from segattack.training.evaluate import run

    cfg = compose_train_cfg(run_dir, overrides)
    with pytest.raises(SystemExit) as info:
        run_task(run, cfg)
    GlobalHydra.instance().clear()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_zero_epochs_refused_at_the_entry_point(tmp_path, capsys):
    """It used to train nothing, export and exit 0."""
    line = refused_by_the_entry_point(tmp_path / "run", capsys, ["trainer.max_epochs=0"])
    assert line == "error: trainer.max_epochs=0: expected >= 1 (the number of epochs to train)"
    assert outputs(tmp_path / "run") == []


@pytest.mark.parametrize("overrides, line", [
    (["attack.target_class=3"], "attack.target_class=3: an untargeted attack would ignore it; set "
                                "attack.targeted=true, or leave it out"),
    (["perturbation=''"], "perturbation='': expected a non-empty string (or null)"),
])
def test_attack_keys_that_would_be_ignored_refused(tmp_path, overrides, line):
    from helpers import compose

    from segattack.schema import check_attack_config

    with pytest.raises(ConfigError) as err:
        check_attack_config(compose("attack", tmp_path, overrides))
    assert str(err.value) == line


@pytest.mark.parametrize("override, line", [
    ("trainer=gpu", "error: trainer.accelerator=gpu: no CUDA device; use trainer=cpu"),
    ("optimizer._target_=torch.optim.Adamm",
     "error: optimizer._target_='torch.optim.Adamm': no such class or function (check its module path)"),
])
def test_hydra_and_device_failures_in_one_line(tmp_path, capsys, override, line):
    import torch

    if override == "trainer=gpu" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert refused_by_the_entry_point(tmp_path / "run", capsys, [override]) == line
