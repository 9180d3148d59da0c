"""Models by name, the one way both entry points load them (``attack.py``, ``train_models.py``).

A name is one of three kinds (docs/design.md, "Models"):
- an option of ``configs/model/`` (its architecture; its weights unless ``weights.NAME`` is given);
- any other name with ``weights.NAME``: a segattack weights file names its own architecture;
- ``own_models.NAME``: a factory named by import path and its weights (``models/own.py``).
Every model comes back wrapped in ``NormalizedModel``, in eval mode, checked against the data's
class count and image size, with one-line errors that name the key to change.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..config import load_group_option
from ..errors import ConfigError, WeightsError
from ..files.checkpoint import is_checkpoint, load_checkpoint_model
from ..files.weights import load_weights, read_metadata
from .own import load_own_model
from .wrapper import NormalizedModel

log = logging.getLogger(__name__)


def own_entry(cfg: DictConfig, name: str):
    """``own_models.<name>`` of the config, None for a shipped or file-named model."""
    return (cfg.get("own_models") or {}).get(name)


def weights_path(cfg: DictConfig, name: str) -> Path | None:
    """``weights.<name>`` if given, else the ``weights`` entry of ``configs/model/<name>.yaml``
    (None for an own model given without weights: its factory builds it whole)."""
    explicit = (cfg.get("weights") or {}).get(name)
    if explicit:
        return Path(explicit)
    if own_entry(cfg, name) is not None:
        return None
    try:
        model_cfg = load_group_option(cfg, "model", name)
    except ConfigError:
        raise ConfigError(f"unknown model {name!r}; give weights.{name}=PATH, own_models.{name}, "
                          f"or add configs/model/{name}.yaml") from None
    if not model_cfg.get("weights"):
        raise ConfigError(f"weights.{name}: configs/model/{name}.yaml names no weights; give weights.{name}=PATH")
    return Path(model_cfg.weights)


def trained_against(cfg: DictConfig, name: str) -> dict | None:
    """The threat model the weights file of ``name`` says it was adversarially trained against
    (its ``adversarial`` metadata, ``train_models.py``); None for a clean model and for one whose
    weights are not a readable segattack weights file (a checkpoint, an own model's file: the
    loader reports a broken file when it loads it)."""
    try:
        path = weights_path(cfg, name)
    except ConfigError:  # a model the config does not name (the Python API's own modules)
        return None
    if path is None or own_entry(cfg, name) is not None or is_checkpoint(path) or not path.is_file():
        return None
    try:
        return read_metadata(path).get("adversarial")
    except WeightsError:
        return None


def architecture_of(cfg: DictConfig, name: str) -> str | None:
    """The architecture of ``configs/model/<name>.yaml``; None for a name only a weights file defines."""
    try:
        return load_group_option(cfg, "model", name).name
    except ConfigError:
        return None


def load_file_model(path: str | Path, num_classes: int, image_size, architecture: str | None = None,
                    ckpt_weights: str = "validated", channels_last="auto") -> tuple[NormalizedModel, dict]:
    """A segattack weights file (or a training checkpoint of ``architecture``) as a model checked
    against the data: ``(model in eval mode, metadata)``."""
    if is_checkpoint(path):
        if architecture is None:
            raise WeightsError(f"{path}: a checkpoint names no architecture; evaluate it under a model "
                               f"name of configs/model/ (e.g. models=[erfnet] weights.erfnet=...)")
        model, meta = load_checkpoint_model(path, architecture, num_classes, ckpt_weights)
    else:
        model, meta = load_weights(path, expect_architecture=architecture, expect_num_classes=num_classes)
    try:
        model.check_input_size(*image_size)
    except ValueError as err:
        raise ConfigError(f"data.image_size={list(image_size)}: {err}") from None
    return model.use_channels_last(channels_last), meta


def load_model(cfg: DictConfig, name: str, num_classes: int, image_size,
               path: str | Path | None = None) -> tuple[NormalizedModel, dict]:
    """The model ``name`` of the config (``path``: its weights instead of the configured ones)."""
    entry = own_entry(cfg, name)
    weights = path or weights_path(cfg, name)
    channels_last = cfg.get("channels_last", "auto")
    if entry is not None:
        model, meta = load_own_model(name, entry, weights, num_classes, image_size)
        return model.use_channels_last(channels_last), meta
    arch = architecture_of(cfg, name)  # a model config's name fixes the architecture
    try:
        model, meta = load_file_model(weights, num_classes, image_size, arch,
                                      cfg.get("ckpt_weights", "validated"), channels_last)
    except WeightsError as err:  # name the key to change, not only the file
        raise WeightsError(f"weights.{name}: {err}") from None
    if arch is None:
        log.info("%s: architecture %s, as its weights file says", name, meta["architecture"])
    return model, meta


def load_models(cfg: DictConfig, names, num_classes: int, image_size) -> dict[str, NormalizedModel]:
    """``name -> model`` for every name (``load_model``)."""
    return {name: load_model(cfg, name, num_classes, image_size)[0] for name in names}
