"""A model of one's own: built by a factory named by import path, with its own weights file.

``own_models.NAME`` (``configs/attack.yaml``, ``configs/train_models.yaml``) names a factory
(``package.module:callable`` or ``package.module.callable``) and its ``kwargs``; ``weights.NAME``
names its weights: a safetensors state dict or a ``torch.save`` checkpoint, read with
``weights_only=True`` (a state dict, or a dict holding one under ``state_dict``). The class count,
mean/std (default: none, the net takes [0, 1] images) and input size are keys of the entry or
entries of the file (safetensors metadata, checkpoint entries). The net is wrapped in
``NormalizedModel`` like a shipped one, so every caller treats both the same way.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import ConfigError, WeightsError
from .wrapper import NormalizedModel

FILE_KEYS = ("num_classes", "mean", "std", "input_size")  # read from the file when not keys


def resolve_factory(path: str, key: str) -> Callable:
    """The callable at ``module:attr`` (or ``module.attr``); the working folder is importable."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{key}={path!r}: expected an import path, e.g. mypackage.nets:make_unet")
    added = os.getcwd() not in sys.path
    if added:  # ``python attack.py`` puts the script's folder on the path, not the working one
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{key}={path!r}: cannot import {module_name!r} ({err})") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}={path!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}={path!r}: {attr!r} is not callable")
    return obj


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state dict, file entries among FILE_KEYS)`` of a safetensors or ``torch.save`` file."""
    from ..files.tensorfile import read_tensors
    from ..run import load_torch_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None
        return read_tensors(path), {k: _decoded(raw[k]) for k in FILE_KEYS if k in raw}
    ckpt = load_torch_file(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), or a dict holding one "
                           "under state_dict")
    return state, {k: ckpt[k] for k in FILE_KEYS if k in ckpt and state is not ckpt}


def _decoded(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def probe(model: NormalizedModel, image_size, key: str) -> int:
    """The class count of ``model``'s logits on one black image; one line where it fails."""
    h, w = image_size
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, h, w))
    except Exception as err:  # noqa: BLE001 - the user's code: any failure is one line
        raise ConfigError(f"data.image_size={[h, w]}: {key} fails on a {h}x{w} image "
                          f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or tuple(out.shape[-2:]) != (h, w):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{key}: the model returns {got} for a (1, 3, {h}, {w}) image; expected "
                          f"logits (1, C, {h}, {w})")
    return int(out.shape[1])


def load_own_model(name: str, entry: Mapping, weights: str | Path | None, num_classes: int,
                   image_size) -> tuple[NormalizedModel, dict]:
    """Build ``own_models.<name>`` (``entry``), load ``weights`` into it, check it against the data.

    Returns ``(model in eval mode, metadata)``. A factory that cannot be imported, a state dict
    that does not fit, or a class count or input size other than the data's raises one line
    naming the key.
    """
    from ..files.weights import check_tensors

    key = f"own_models.{name}"
    factory = resolve_factory(entry["factory"], f"{key}.factory")
    state, found = read_state(weights) if weights else ({}, {})
    meta = {**found, **{k: entry[k] for k in FILE_KEYS if entry.get(k) is not None}}
    where = {k: f"{key}.{k}" if entry.get(k) is not None else f"weights.{name} ({weights})" for k in meta}
    if meta.get("num_classes") is not None and int(meta["num_classes"]) != num_classes:
        raise ConfigError(f"{where['num_classes']}: the model has {meta['num_classes']} classes, "
                          f"the data has {num_classes}")
    if meta.get("input_size") is not None and list(meta["input_size"]) != list(image_size):
        raise ConfigError(f"data.image_size={list(image_size)}: {name} takes "
                          f"{list(meta['input_size'])} images ({where['input_size']})")
    try:
        net = factory(**dict(entry.get("kwargs") or {}))
    except Exception as err:  # noqa: BLE001 - the user's code: any failure is one line
        raise ConfigError(f"{key}.kwargs: {entry['factory']} failed ({type(err).__name__}: {err})") from None
    if not isinstance(net, torch.nn.Module):
        raise ConfigError(f"{key}.factory={entry['factory']!r}: returned a {type(net).__name__}, "
                          "expected a torch.nn.Module")
    if weights:
        try:
            check_tensors(weights, state, net, f"{entry['factory']} model")
        except WeightsError as err:
            raise WeightsError(f"weights.{name}: {err}") from None
        net.load_state_dict(state)
    model = NormalizedModel(net, meta.get("mean"), meta.get("std")).eval()
    classes = probe(model, image_size, key)
    if classes != num_classes:
        raise ConfigError(f"{key}: the model outputs {classes} classes, the data has {num_classes}")
    return model, {**meta, "num_classes": classes, "factory": entry["factory"],
                   "weights": str(weights) if weights else None}
