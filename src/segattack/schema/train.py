"""The schema of ``configs/train_models.yaml`` (and its groups): ``check_train_config(cfg)``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ..class_weights import CLASS_WEIGHTINGS
from .attack import check_models_known
from .common import Partial, PositiveFloat, Run, Split, exactly, unique
from .validate import KeyLine, as_typed, config_data, validate


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
    mean: exactly(3, float, "[0.485,0.456,0.406] (one value per RGB channel)")
    std: exactly(3, PositiveFloat, "[0.229,0.224,0.225] (one value per RGB channel)")
    optimizer: Partial

    @model_validator(mode="after")
    def _across(self):
        unique("models", self.models)
        if any(not 0 <= m <= 1 for m in self.mean):
            raise KeyLine(f"mean={as_typed(self.mean)}: expected values in [0, 1] (pixel units)")
        return self


def check_train_config(cfg) -> TrainConfig:
    """Validate a composed training config; raises a ``ConfigError`` with one line per bad key."""
    data = config_data(cfg)
    checked = validate(TrainConfig, data)
    config_dir = Path(str(data["paths"]["config_dir"]))
    # training builds each architecture from configs/model/NAME.yaml; evaluating may name weights
    check_models_known(data, ("models",), config_dir, "weights" if checked.task == "evaluate" else None)
    return checked
