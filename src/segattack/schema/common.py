"""Schema parts both entry points share: counts, sizes, regions, data, trainer, logger, paths.

Every model forbids keys it does not declare, so a new config key is guarded by declaring it
here (docs/design.md, "Config schema").
"""

from __future__ import annotations

import inspect
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

from ..keytypes import (
    KeyLine,
    NonNegFloat,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    Size,
    Strict,
    Seed,
    as_typed,
    exactly,
)
from ..regions import REGIONS

Split = Literal["train", "val", "test"]


def _channels_last(value):
    if value != "auto" and not isinstance(value, bool):
        raise ValueError("expected auto, true or false")
    return value


ChannelsLast = Annotated[Literal["auto"] | bool, BeforeValidator(_channels_last)]


# A region's keys are declared by its class (``segattack/regions.py``); ``type`` picks the class.
Region = Annotated[Union[tuple(r.Keys for r in REGIONS.values())], Field(discriminator="type")]  # noqa: UP007
REGION = TypeAdapter(Region)


class Data(Strict):
    """Every datamodule's keys (``configs/data/``); those a data set does not use stay unset."""

    target: str = Field(alias="_target_")
    image_size: Size
    batch_size: PositiveInt
    num_workers: NonNegInt = 0
    limit: PositiveInt | None = None  # the first N samples of each split; null = all
    root: str | None = None
    crop_size: Size | None = None
    scale: exactly(2, PositiveFloat, "[0.75,1.5]") | None = None
    jitter: NonNegFloat | None = None
    augment: bool | None = None
    holdout: list[str] | None = None  # CamVid: training sequences that serve as val instead
    num_train: PositiveInt | None = None
    num_val: PositiveInt | None = None
    num_test: PositiveInt | None = None
    seed: int | None = None  # (the run's seed by default, checked there)

    @model_validator(mode="after")
    def _scale(self):
        if self.scale is not None and self.scale[0] > self.scale[1]:
            raise KeyLine(f"scale={as_typed(self.scale)}: expected [low,high] with low <= high")
        return self


def _trainer_keys() -> frozenset[str]:
    import lightning as L

    return frozenset(inspect.signature(L.Trainer.__init__).parameters) - {"self"}


# Lightning's precision settings (``lightning.fabric.connector._PRECISION_INPUT``).
Precision = Literal["32-true", "32", 32, "16-mixed", "16", 16, "bf16-mixed", "bf16", "bf16-true",
                    "16-true", "64-true", "64", 64, "transformer-engine",
                    "transformer-engine-float16"]


class Trainer(BaseModel):
    """``lightning.Trainer`` arguments: the common ones typed, any other must be one of its
    parameters."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    target: Literal["lightning.Trainer", "lightning.pytorch.Trainer"] = Field(alias="_target_")
    accelerator: Literal["cpu", "gpu", "cuda", "mps", "tpu", "auto"] = "auto"
    devices: PositiveInt | Literal["auto"] | Annotated[list[NonNegInt], Field(min_length=1)] | str = "auto"
    num_nodes: PositiveInt = 1
    precision: Precision = "32-true"
    max_epochs: Annotated[int, Field(strict=True, ge=-1)] | None = None
    max_steps: Annotated[int, Field(strict=True, ge=-1)] = -1
    log_every_n_steps: PositiveInt | None = None
    check_val_every_n_epoch: PositiveInt | None = None
    num_sanity_val_steps: Annotated[int, Field(strict=True, ge=-1)] | None = None
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    sync_batchnorm: bool = False
    strategy: str = "auto"
    default_root_dir: str | None = None

    @model_validator(mode="after")
    def _known(self):
        unknown = sorted(set(self.model_extra or ()) - _trainer_keys())
        if unknown:
            raise KeyLine(f"{unknown[0]}={as_typed(self.model_extra[unknown[0]])}: not an argument "
                          "of lightning.Trainer")
        return self


class Logger(BaseModel):
    """A Lightning logger (``configs/logger/``); its other keys go to the logger class."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    target: Literal["lightning.pytorch.loggers.CSVLogger", "lightning.pytorch.loggers.WandbLogger",
                    "segattack.loggers.WandbLogger", "lightning.pytorch.loggers.TensorBoardLogger"
                    ] = Field(alias="_target_")
    save_dir: str | None = None  # null where the config was composed without a run folder


class Paths(Strict):
    root_dir: str
    config_dir: str
    data_dir: str
    output_dir: str | None  # null where the config was composed without a run folder (tests)
    weights_dir: str | None


class Partial(BaseModel):
    """A ``_partial_`` factory such as an optimiser: ``_target_`` plus its arguments."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    target: str = Field(alias="_target_")
    partial: Literal[True] = Field(True, alias="_partial_")
    lr: NonNegFloat | None = None


def _import_path(value):
    if isinstance(value, str) and not re.fullmatch(r"[A-Za-z_][\w.]*[:.][A-Za-z_][\w.]*", value):
        raise ValueError("expected an import path, e.g. mypackage.nets:make_unet")
    return value


class OwnModel(Strict):
    """``own_models.NAME``: a model of one's own, built by ``factory(**kwargs)`` (``models/own.py``);
    the other keys, where not given, are read from ``weights.NAME``."""

    factory: Annotated[str, BeforeValidator(_import_path)]
    kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: PositiveInt | None = None
    mean: exactly(3, float, "[0.485,0.456,0.406] (one value per RGB channel)") | None = None
    std: exactly(3, PositiveFloat, "[0.229,0.224,0.225] (one value per RGB channel)") | None = None
    input_size: Size | None = None


class Run(Strict):
    """Keys of every run: seed, threads, layout, logger, trainer, data, paths, own models."""

    seed: Seed
    resume: bool = True
    torch_threads: PositiveInt | None = None
    channels_last: ChannelsLast = "auto"
    verbose: bool = False
    data: Data
    trainer: Trainer
    logger: Logger | None = None
    paths: Paths
    own_models: dict[str, OwnModel] = Field(default_factory=dict)


def unique(key: str, names) -> None:
    """Refuse a list that names something twice (e.g. a model counted twice in a joint loss)."""
    twice = sorted({n for n in names if list(names).count(n) > 1})
    if twice:
        raise KeyLine(f"{key}={as_typed(list(names))}: {twice[0]!r} is listed twice")
