"""The schema of ``configs/attack.yaml`` (and its groups): ``check_attack_config(cfg)``.

Types, ranges, choices and the checks across keys of an attack, made right after composition,
before any weights or data load. What needs the data (a box that fits the image, class ids
below the number of classes) stays in ``attacks/spec.py``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from ..losses import LOSSES
from ..noise import NOISE_FUNCTIONS
from ..schedules import SCHEDULES
from .common import (
    REGION,
    NonNegFloat,
    NonNegInt,
    Partial,
    PositiveInt,
    Region,
    Run,
    Split,
    Strict,
    unique,
)
from .validate import KeyLine, as_typed, config_data, validate

EPS_HINT = "pixel units of [0, 1] images, e.g. 8/255"


def parse_eps(value) -> float:
    """``eps`` as a float: a number or ``"k/255"``, in (0, 1]; a ``ValueError`` says what is expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number in (0, 1] ({EPS_HINT})")  # noqa: TRY004 - pydantic reports ValueErrors
    try:
        eps = float(Fraction(value.replace(" ", ""))) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"expected a number in (0, 1] ({EPS_HINT})") from None
    if not 0 < eps <= 1:
        raise ValueError(f"expected 0 < eps <= 1 ({EPS_HINT})")
    return eps


def _a_mapping(value):
    if isinstance(value, str):  # area=box: the region group's option names are not areas
        raise ValueError("expected a mapping with the keys of a region, e.g. "  # noqa: TRY004
                         "area={type:box,size:[60,80]} or area={type:full}")
    return value


Eps = Annotated[float, BeforeValidator(parse_eps)]
ModelNames = Annotated[list[str], Field(min_length=1)]


# The settings of every loss, noise function and schedule (``attack.kappa``, ``attack.ce_max``
# ...), declared by the parts themselves (``segattack.registry``): a new part's setting needs no
# line here.
PartSettings = create_model("PartSettings", __base__=Strict, **{
    key: value for registry in (LOSSES, NOISE_FUNCTIONS, SCHEDULES)
    for key, value in registry.settings().items()})


class Attack(PartSettings):
    """``attack.*``: ``configs/attack_common.yaml`` plus a method's own file."""

    method: str
    noise: Literal[NOISE_FUNCTIONS.choices()]
    init: Literal["zeros", "uniform"]
    max_steps: PositiveInt | None = None
    steps: PositiveInt
    targeted: bool
    target_class: NonNegInt | None = None
    target_map: Annotated[dict[NonNegInt, NonNegInt], Field(min_length=1)] | None = None
    label_source: Literal["gt", "clean"]
    keep_weight: NonNegFloat
    norm_weight: NonNegFloat
    lambdas: dict[str, NonNegFloat] | None = None
    loss: Literal[(*LOSSES.choices(), "auto")]  # auto: attacks/spec.py, AUTO_LOSS
    balance: Literal["sum", "normalized"]
    schedule: Literal[SCHEDULES.choices()]
    best: bool
    early_stop: bool
    members: Annotated[list[dict[str, Any]], Field(min_length=1)] | None = None
    skip_fooled: bool = True
    warm_start: bool = False
    progressive_radius: bool = False
    optimizer: Partial

    @field_validator("method")
    @classmethod
    def _method(cls, value, info: ValidationInfo):
        options = (info.context or {}).get("attack_options")
        if options and value not in options:
            raise ValueError(f"expected one of {options}")
        return value

    @model_validator(mode="after")
    def _across(self, info: ValidationInfo):
        options = [o for o in (info.context or {}).get("attack_options", ()) if o != "ensemble"]
        for m in self.members or ():
            if options and m.get("attack") not in options:
                raise KeyLine(f"members: attack={m.get('attack')!r}: expected one of {options}")
        if self.max_steps is not None and self.steps > self.max_steps:
            raise KeyLine(f"steps={self.steps}: {self.method} takes at most {self.max_steps} step(s)")
        if not self.targeted and (self.target_class is not None or self.target_map):
            key = "target_class" if self.target_class is not None else "target_map"
            raise KeyLine(f"{key}={as_typed(getattr(self, key))}: an untargeted attack would ignore it; "
                          "set attack.targeted=true, or leave it out")
        if self.targeted and (self.target_class is None) == (not self.target_map):
            raise KeyLine("targeted=true needs exactly one of attack.target_class (e.g. 3) or "
                          "attack.target_map (e.g. {9: 3})")
        return self


class Robustness(Strict):
    """``robustness``: the eps values ``task=robustness`` runs its attack at, on the same images."""

    eps: Annotated[list[Eps], Field(min_length=1)]

    @model_validator(mode="after")
    def _distinct(self):
        if len(set(self.eps)) < len(self.eps):
            typed = ",".join(f"{e * 255:.4g}/255" for e in self.eps)
            raise KeyLine(f"eps=[{typed}]: a value is listed twice (expected distinct eps, e.g. "
                          "[2/255,4/255,8/255])")
        return self


class AttackConfig(Run):
    """``configs/attack.yaml`` after composition."""

    task: Literal["attack", "transfer", "robustness"]
    mode: Literal["per_image", "universal"]
    eps: Eps
    source_models: ModelNames
    eval_models: list[str]
    weights: dict[str, str | None]
    area: Annotated[Region | None, BeforeValidator(_a_mapping)] = None
    region: Region
    fit_split: Split
    fit_augment: bool = False
    eval_split: Split
    perturbation: Annotated[str, Field(min_length=1)] | None = None  # a universal file or a per-image set
    perturbation_eps: Literal["run", "file"] = "run"
    save_adversarial: Literal["none", "all"] = "none"
    adversarial_dtype: Literal["fp16", "fp32"] = "fp16"
    export_png: bool = False
    checkpoint_every: PositiveInt
    num_figures: NonNegInt
    name: str | None = None
    robustness: Robustness | None = None
    attack: Attack

    @model_validator(mode="after")
    def _across(self):
        unique("source_models", self.source_models)
        unique("eval_models", self.eval_models)
        a = self.attack
        if a.lambdas is not None:
            extra = sorted(set(a.lambdas) - set(self.source_models))
            if extra:
                raise KeyLine(f"attack.lambdas={as_typed(a.lambdas)}: {extra[0]!r} is not in "
                              f"source_models {as_typed(self.source_models)}")
            if not any(a.lambdas.get(m, 1.0) > 0 for m in self.source_models):
                raise KeyLine(f"attack.lambdas={as_typed(a.lambdas)}: every weight is 0, so the "
                              "attack optimises nothing; expected at least one > 0")
        if a.members and self.mode != "per_image":
            raise KeyLine(f"mode={self.mode!r}: attack=ensemble runs per image: set mode=per_image")
        if self.task == "robustness" and self.robustness is None:
            raise KeyLine("robustness=null: task=robustness needs robustness.eps=[...], e.g. [4/255,8/255]")
        if self.task == "robustness" and self.mode != "per_image":
            raise KeyLine(f"mode={self.mode!r}: task=robustness attacks each image: set mode=per_image")
        if self.task == "robustness" and a.targeted:
            raise KeyLine("attack.targeted=true: task=robustness measures untargeted robustness: "
                          "set attack.targeted=false")
        if self.task == "transfer" and len(self.source_models) < 2:
            raise KeyLine(f"source_models={as_typed(self.source_models)}: task=transfer needs at "
                          "least two, e.g. source_models=[enet,erfnet]")
        return self


def _options(folder: Path, leave_out=()) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem not in leave_out)


def check_models_known(data: dict, key_names, config_dir: Path, weights_key: str | None = "weights") -> None:
    """Every model named under ``key_names`` has a ``configs/model/NAME.yaml``, a weights path or
    an ``own_models.NAME`` entry (``weights_key=None``: only the first, e.g. to train)."""
    from ..errors import ConfigError

    options = _options(config_dir / "model")
    given = {k for k, v in (data.get(weights_key) or {}).items() if v} if weights_key else set()
    given |= set(data.get("own_models") or {}) if weights_key else set()
    for key in key_names:
        for name in data.get(key) or ():
            if name not in options and name not in given:
                hint = f" or give {weights_key}.{name}=PATH or own_models.{name}" if weights_key else ""
                raise ConfigError(f"{key}={as_typed(data[key])}: unknown model {name!r}; expected one "
                                  f"of {options}{hint}")


def check_attack_config(cfg, models_known: bool = False) -> AttackConfig:
    """Validate a composed attack config; raises a ``ConfigError`` with one line per bad key.

    ``models_known``: also require every model name to have a ``configs/model/NAME.yaml`` or a
    ``weights.NAME`` path (the entry point's run; in-process callers may pass their own models).
    """
    data = config_data(cfg)
    config_dir = Path(str((data.get("paths") or {}).get("config_dir", "configs")))
    context = {"attack_options": _options(config_dir / "attack")}
    checked = validate(AttackConfig, data, context)
    if models_known:
        check_models_known(data, ("source_models", "eval_models"), config_dir)
    return checked


def check_region(cfg, key: str = "region"):
    """A region's keys (``region`` or ``area``) on their own, e.g. for ``build_region``."""
    return validate(REGION, dict(cfg), prefix=key)
