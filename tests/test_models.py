"""Architectures: parameter counts, output shapes, input-size checks, the registry, weight files."""

from __future__ import annotations

import json

import pytest
import torch

from segattack.errors import ConfigError, WeightsError
from segattack.files.weights import load_weights, read_metadata, save_weights
from segattack.models import MODELS, NormalizedModel, create_model

# Published sizes at 11 classes (CamVid): ENet 0.36 M (Paszke et al. 2016), ERFNet 2.1 M.
EXPECTED_PARAMS = {"enet": 0.36e6, "erfnet": 2.1e6}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_count_matches_paper(name):
    count = n_params(create_model(name, 11))
    assert abs(count - EXPECTED_PARAMS[name]) / EXPECTED_PARAMS[name] < 0.05, count


def test_registry_holds_both_baselines():
    assert {"enet", "erfnet"} <= set(MODELS)


@pytest.mark.parametrize("name", ["enet", "erfnet"])
@pytest.mark.parametrize("size", [(360, 480), (64, 96)])
def test_output_shape_equals_input_size(name, size):
    torch.manual_seed(0)
    model = NormalizedModel(create_model(name, 11)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 11, *size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["enet", "erfnet"])
def test_channels_last_gives_the_same_logits_and_gradients(name):
    torch.manual_seed(0)
    plain = NormalizedModel(create_model(name, 11)).eval()
    nhwc = NormalizedModel(create_model(name, 11)).eval()
    nhwc.load_state_dict(plain.state_dict())
    nhwc.use_channels_last(True)
    assert nhwc.net.state_dict()[next(k for k, v in nhwc.net.state_dict().items() if v.dim() == 4)] \
        .is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 64, 96)
    grads = []
    for m in (plain, nhwc):
        xi = x.clone().requires_grad_(True)
        out = m(xi)
        out.sum().backward()
        grads.append((out.detach(), xi.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-4)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-4)


def test_channels_last_auto_follows_the_architecture():
    assert NormalizedModel(create_model("erfnet", 11)).use_channels_last("auto").channels_last
    assert not NormalizedModel(create_model("enet", 11)).use_channels_last("auto").channels_last
    off = NormalizedModel(create_model("erfnet", 11)).use_channels_last(True).use_channels_last(False)
    assert not off.channels_last
    assert next(p for p in off.parameters() if p.dim() == 4).is_contiguous()
    with pytest.raises(ConfigError, match="channels_last='yes'"):
        NormalizedModel(create_model("enet", 11)).use_channels_last("yes")


@pytest.mark.parametrize("name", ["enet", "erfnet"])
def test_size_not_multiple_of_8_raises_naming_the_size(name):
    model = NormalizedModel(create_model(name, 5)).eval()
    with pytest.raises(ValueError, match=r"100x130"), torch.no_grad():
        model(torch.rand(1, 3, 100, 130))


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError) as info:
        create_model("nosuchnet", 11)
    message = str(info.value)
    assert "nosuchnet" in message
    for name in MODELS:
        assert name in message


def test_normalisation_is_inside_the_model():
    """The wrapper feeds ``(x - mean) / std`` to the net: a constant image equal to the mean is zero."""
    seen = {}

    class Probe(torch.nn.Module):
        size_divisor = 1

        def forward(self, x):
            seen["x"] = x
            return x

    mean, std = (0.5, 0.25, 0.75), (0.5, 0.5, 0.25)
    model = NormalizedModel(Probe(), mean, std)
    x = torch.tensor(mean).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()
    model(x)
    assert torch.allclose(seen["x"], torch.zeros_like(x))
    model(x + torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(seen["x"], torch.ones_like(x))


# --- weight files ------------------------------------------------------------------------------

META = {"architecture": "enet", "num_classes": 5, "class_names": ["a", "b", "c", "d", "e"],
        "input_size": [64, 96], "dataset": "synthetic", "val_miou": 0.75, "epoch": 3}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = NormalizedModel(create_model("enet", 5), (0.4, 0.5, 0.6), (0.2, 0.3, 0.4)).eval()
    path = save_weights(model, tmp_path / "enet.safetensors", **META)
    return model, path


def test_weights_round_trip(saved):
    model, path = saved
    loaded, meta = load_weights(path, expect_architecture="enet", expect_num_classes=5)
    assert not loaded.training
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for key, value in META.items():
        assert meta[key] == value
    assert meta["mean"] == pytest.approx([0.4, 0.5, 0.6])
    assert meta["std"] == pytest.approx([0.2, 0.3, 0.4])
    assert read_metadata(path) == meta
    # no temporary file is left next to the output (atomic write)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_save_weights_requires_metadata(tmp_path):
    model = NormalizedModel(create_model("enet", 5))
    with pytest.raises(ValueError, match="class_names"):
        save_weights(model, tmp_path / "w.safetensors", architecture="enet", num_classes=5,
                     input_size=[64, 96])
    assert not (tmp_path / "w.safetensors").exists()


def test_wrong_architecture_raises(saved):
    _, path = saved
    with pytest.raises(WeightsError, match="erfnet") as info:
        load_weights(path, expect_architecture="erfnet")
    assert str(path) in str(info.value)


def test_wrong_class_count_raises(saved):
    _, path = saved
    with pytest.raises(WeightsError, match="11") as info:
        load_weights(path, expect_num_classes=11)
    assert str(path) in str(info.value)


def test_truncated_file_raises_naming_it(saved):
    _, path = saved
    data = path.read_bytes()
    for cut in (len(data) // 2, 100, 4):
        bad = path.with_name(f"cut{cut}.safetensors")
        bad.write_bytes(data[:cut])
        with pytest.raises(WeightsError) as info:
            load_weights(bad)
        assert str(bad) in str(info.value)


def test_missing_file_raises_naming_it(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(WeightsError, match="absent.safetensors"):
        load_weights(path)


def test_tensors_that_do_not_fit_raise(saved, tmp_path):
    """Metadata claiming another class count than the tensors hold is caught at load time."""
    from safetensors.torch import load_file, save_file

    _, path = saved
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata()
    raw["num_classes"] = json.dumps(7)
    raw["class_names"] = json.dumps([f"c{i}" for i in range(7)])
    bad = tmp_path / "lying.safetensors"
    save_file(load_file(str(path)), str(bad), metadata=raw)
    with pytest.raises(WeightsError, match="do not fit") as info:
        load_weights(bad)
    assert str(bad) in str(info.value)


def test_foreign_safetensors_without_metadata_raises(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(WeightsError, match="metadata lacks"):
        load_weights(path)
