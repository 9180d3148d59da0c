"""The schema of ``configs/train_models.yaml`` (and its groups): ``check_train_config(cfg)``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ..class_weights import CLASS_WEIGHTINGS
from ..keytypes import FiniteFloat
from .attack import Eps, check_models_known
from .common import NonNegInt, Partial, PositiveInt, Run, Split, Strict, exactly, unique
from .validate import KeyLine, as_typed, config_data, validate

# --- training values a run would accept and then train nonsense with (kept apart from the keys
# above so that new training keys merge without touching them) ------------------------------------
LR_MAX = 10.0  # far above any useful rate (Adam 5e-4 here): a larger one is a typo, not a recipe
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def check_training_values(cfg: TrainConfig) -> None:
    """Epochs, learning rate and weight decay that train something (``task=train`` only)."""
    if cfg.task != "train":
        return
    epochs = cfg.trainer.max_epochs
    if epochs is not None and epochs < 1:
        raise KeyLine(f"trainer.max_epochs={epochs}: expected >= 1 (the number of epochs to train)")
    opt = cfg.optimizer.model_extra or {}
    lr = cfg.optimizer.lr
    if lr is not None and not (0 < lr <= LR_MAX and math.isfinite(lr)):
        raise KeyLine(f"optimizer.lr={as_typed(lr)}: expected 0 < lr <= {LR_MAX:g}")
    decay = opt.get("weight_decay")
    if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float))
                              or not 0 <= decay < math.inf):
        raise KeyLine(f"optimizer.weight_decay={as_typed(decay)}: expected a finite number >= 0")


def check_sizes_fit_networks(data: dict, config_dir: Path) -> None:
    """``data.image_size`` and ``data.crop_size`` are sizes every trained or evaluated network
    takes (multiples of its ``size_divisor``), named with the multiple it needs."""
    from omegaconf import OmegaConf

    from ..errors import ConfigError
    from ..models.registry import MODELS

    for name in data.get("models") or ():
        option = config_dir / "model" / f"{name}.yaml"
        arch = OmegaConf.load(option).get("name") if option.is_file() else None
        divisor = getattr(MODELS.get(arch), "size_divisor", 1)
        for key in ("image_size", "crop_size"):
            size = (data.get("data") or {}).get(key)
            if size and any(v % divisor for v in size):
                fit = [max(divisor, round(v / divisor) * divisor) for v in size]
                raise ConfigError(f"data.{key}={as_typed(size)}: {name} takes sizes that are multiples "
                                  f"of {divisor} (e.g. {as_typed(fit)})")


class InnerAttack(Strict):
    """An attack of adversarial training; unset keys of ``adversarial.val`` follow the training one."""

    method: str | None = None
    eps: Eps | None = None
    steps: PositiveInt | None = None
    loss: str | None = None
    options: dict[str, Any] | None = None


class Adversarial(InnerAttack):
    """``adversarial``: the inner maximiser (any attack option, its keys checked by the attack
    schema), the share of each batch it replaces, and the robust validation."""

    method: str
    eps: Eps
    steps: PositiveInt
    loss: str
    ratio: Annotated[float, Field(gt=0, le=1)]
    bn_mode: Literal["eval", "train"] = "eval"
    val_images: NonNegInt = 0
    val: InnerAttack | None = None


class TrainConfig(Run):
    """``configs/train_models.yaml`` after composition."""

    task: Literal["train", "evaluate"] = "train"
    models: Annotated[list[str], Field(min_length=1)]
    eval_split: Split | None = None
    export: Literal["best", "last"] = "best"
    weights: dict[str, str | None] = Field(default_factory=dict)
    ckpt_weights: Literal["validated", "raw"] = "validated"
    keep_every: Annotated[int, Field(ge=1)] | None = None
    class_weighting: Literal[CLASS_WEIGHTINGS.choices()] | None
    schedule: Literal["poly", "cosine"] | None
    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None = None
    init_weights: dict[str, str | None] | None = None
    mean: exactly(3, FiniteFloat, "[0.485,0.456,0.406] (one value per RGB channel)")
    std: exactly(3, PositiveFinite, "[0.229,0.224,0.225] (one value per RGB channel)")
    optimizer: Partial
    adversarial: Adversarial | None = None

    @model_validator(mode="after")
    def _across(self):
        unique("models", self.models)
        if any(not 0 <= m <= 1 for m in self.mean):
            raise KeyLine(f"mean={as_typed(self.mean)}: expected values in [0, 1] (pixel units)")
        return self

    @model_validator(mode="after")
    def _training_values(self):
        check_training_values(self)
        return self


def check_train_config(cfg) -> TrainConfig:
    """Validate a composed training config; raises a ``ConfigError`` with one line per bad key."""
    data = config_data(cfg)
    checked = validate(TrainConfig, data)
    config_dir = Path(str(data["paths"]["config_dir"]))
    # training builds each architecture from configs/model/NAME.yaml; evaluating may name weights
    check_models_known(data, ("models",), config_dir, "weights" if checked.task == "evaluate" else None)
    check_sizes_fit_networks(data, config_dir)
    return checked
