"""The attack spec: everything one attack needs, checked once and built one way from the config.

``build_attack_spec(cfg, image_size, num_classes)`` reads the composed Hydra config (the
``attack/`` group, ``eps``, ``mode``, ``region``, ``area``, the models), checked by its schema
(``segattack.schema``: types, ranges, choices), then what needs the data (a box that fits the
image, class ids below the number of classes); a bad value raises a ``ConfigError`` naming the
key, before any weights or data load. A method is
defined in one place only: its file ``configs/attack/<name>.yaml`` (noise function, start, step
limit, optimiser); the spec carries what that file says.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from ..errors import ConfigError
from ..losses import LOSSES, Loss
from ..models.loading import trained_against
from ..noise import NOISE_FUNCTIONS, NoiseFunction
from ..regions import Region
from ..schedules import SCHEDULES, Schedule
from ..schema import check_attack_config
from .regions import build_region

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttackSpec:
    """One attack, validated.

    Args:
        method: the ``attack/`` option's name (e.g. ``tanh``, ``pgd``).
        noise: the noise function (``delta = eps * f(w)``, ``segattack.noise``); ``init``:
            ``zeros`` or ``uniform``.
        optimizer: partial optimiser for ``w`` (Adam for tanh, ``SignGradient`` for the FGSM family).
        eps: L-inf bound in pixel units of [0, 1] images. steps: per batch (per_image) or in total
            (universal: the Trainer's ``max_steps``).
        mode: ``per_image`` or ``universal``. region: where delta may be non-zero (R); area: where success
            counts (A), None = R.
        source_models: attacked jointly; eval_models: every model evaluated (sources first).
        goal_map: (256,) label -> goal class look-up for targeted attacks, else None.
        label_source: ``gt`` or ``clean`` (the clean prediction stands in for the label).
        loss: the loss object with its own settings (``segattack.losses``, e.g. ``Margin(kappa=1.0)``;
            ``loss.name`` is the config's name).
        keep_weight, norm_weight, lambdas, balance: how the models' losses are joined
            (``attacks/objective.py``).
        schedule: step-size schedule over ``steps`` (``segattack.schedules``), both modes.
        best: report each image's best iterate (else the last). early_stop: stop a batch once
            every valid pixel of the area is fooled on every attacked model.
        members: an ensemble's attacks, run one after the other per image (the worst case is
            kept); skip_fooled: a member leaves out the images already wholly fooled;
            warm_start: a member starts from the worst case so far (not the first member).
        progressive_radius: per image, SEA's radius reduction (``attacks/loop.py``, ``RADII``).
        label: how reports name the attack (an ensemble member's ``name``, else method:loss).
    """

    method: str
    noise: NoiseFunction
    init: str
    optimizer: Callable[..., torch.optim.Optimizer]
    eps: float
    steps: int
    mode: str
    region: Region
    area: Region | None
    image_size: tuple[int, int]
    num_classes: int
    source_models: tuple[str, ...]
    eval_models: tuple[str, ...]
    goal_map: torch.Tensor | None = None
    label_source: str = "gt"
    keep_weight: float = 0.0
    norm_weight: float = 0.0
    lambdas: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    num_figures: int = 4
    loss: Loss = field(default_factory=LOSSES["ce"])
    balance: str = "sum"
    schedule: Schedule = field(default_factory=SCHEDULES["constant"])
    best: bool = True
    early_stop: bool = True
    members: tuple[AttackSpec, ...] = ()
    skip_fooled: bool = True
    warm_start: bool = False
    progressive_radius: bool = False
    label: str = ""

    @property
    def targeted(self) -> bool:
        return self.goal_map is not None



def goal_map(a, num_classes: int) -> torch.Tensor | None:
    """Look-up label -> goal class for targeted attacks (``target_class`` or ``target_map``)."""
    if not a.targeted:
        return None
    tc, tmap = a.target_class, a.target_map  # exactly one of them (the schema checks)
    lut = torch.arange(256)
    pairs = {c: tc for c in range(num_classes)} if tc is not None else dict(tmap)
    for src, dst in pairs.items():
        for key, v in (("target_class" if tc is not None else "target_map", dst),
                       ("target_map", src)):
            if not 0 <= int(v) < num_classes:
                raise ConfigError(f"attack.{key}: class {v} out of range, expected 0..{num_classes - 1}")
        lut[int(src)] = int(dst)
    return lut


# What a method's own file defines; every other attack key is shared by an ensemble's members.
METHOD_KEYS = ("method", "noise", "init", "max_steps", "optimizer", "members")


def method_file(config_dir, name: str):
    """``configs/attack/<name>.yaml`` without its ``defaults`` line: the method's own keys."""
    own = OmegaConf.load(Path(config_dir) / "attack" / f"{name}.yaml")
    own.pop("defaults", None)
    return own


def member_config(cfg, member) -> object:
    """The config of one ensemble member: the ensemble's shared attack keys (targets, loss
    settings, best iterate ...), then ``configs/attack/<member.attack>.yaml``, the ensemble's
    step count and the member's own overrides."""
    member = dict(member)
    member.pop("name", None)  # the member's label (member_label), not an attack key
    name = member.pop("attack", None)
    folder = Path(cfg.paths.config_dir) / "attack"  # name: an option of it (the schema checks)
    own = method_file(cfg.paths.config_dir, name)
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        shared = OmegaConf.masked_copy(cfg.attack, [k for k in cfg.attack if k not in METHOD_KEYS])
        sub.attack = OmegaConf.merge(OmegaConf.load(folder.parent / "attack_common.yaml"), shared, own,
                                     {"method": name, "steps": cfg.attack.steps}, member)
    return sub


def member_label(spec: AttackSpec, member) -> AttackSpec:
    """An ensemble member named by its ``name`` key, else ``attack:loss`` (``apgd:masked_ce``)."""
    return dataclasses.replace(spec, label=member.get("name") or f"{spec.method}:{spec.loss.name}")


# attack.loss=auto (PGD's default): the strongest loss measured on each kind of model
# (docs/performance.md): the margin on clean models, the masked CE on adversarially trained ones.
AUTO_LOSS = {"clean": "margin", "defended": "masked_ce"}


def chosen_loss(cfg, sources) -> str:
    """``attack.loss``, with ``auto`` resolved: the defended loss as soon as one source model's
    weights record adversarial training (``trained_against``), else the clean one."""
    if cfg.attack.loss != "auto":
        return cfg.attack.loss
    defended = [name for name in sources if trained_against(cfg, name)]
    if defended:
        log.info("attack.loss=auto: %s, as %s was adversarially trained", AUTO_LOSS["defended"], defended[0])
    return AUTO_LOSS["defended" if defended else "clean"]


def build_attack_spec(cfg, image_size, num_classes: int) -> AttackSpec:
    """The ``AttackSpec`` of a composed attack config; every check of its keys happens here."""
    checked = check_attack_config(cfg)  # types, ranges, choices, checks across keys
    a = cfg.attack
    if a.get("members"):
        members = tuple(member_label(build_attack_spec(member_config(cfg, m), image_size, num_classes), m)
                        for m in a.members)
        return dataclasses.replace(members[0], method=a.method, members=members,
                                   steps=sum(m.steps for m in members),
                                   skip_fooled=bool(a.get("skip_fooled", True)),
                                   warm_start=bool(a.get("warm_start", False)), label=a.method)
    optimizer = instantiate(a.optimizer)
    if cfg.mode == "universal" and getattr(getattr(optimizer, "func", None), "wants_progress", False):
        raise ConfigError(f"attack={a.method} runs per image (its steps follow each image's progress): "
                          "set mode=per_image")
    if cfg.mode == "universal" and a.get("progressive_radius"):
        raise ConfigError("attack.progressive_radius=true: a per-image option (one radius per image's "
                          "stages); set it false for mode=universal")
    sources = tuple(checked.source_models)
    evaluated = sources + tuple(m for m in checked.eval_models if m not in sources)
    region = build_region(cfg.region, image_size, num_classes, cfg.seed, "region")
    area = build_region(cfg.area, image_size, num_classes, cfg.seed, "area") if cfg.area else None
    loss = chosen_loss(cfg, sources)
    return AttackSpec(
        method=a.method, noise=NOISE_FUNCTIONS.build(a.noise, checked.attack), init=a.init, optimizer=optimizer, eps=checked.eps,
        steps=a.steps, mode=cfg.mode, region=region, area=area,
        image_size=tuple(int(v) for v in image_size), num_classes=num_classes,
        source_models=sources, eval_models=evaluated, goal_map=goal_map(a, num_classes),
        label_source=a.label_source, keep_weight=float(a.keep_weight),
        norm_weight=float(a.norm_weight),
        lambdas={k: float((a.lambdas or {}).get(k, 1.0)) for k in sources},
        seed=cfg.seed, num_figures=cfg.num_figures, loss=LOSSES.build(loss, checked.attack),
        balance=a.balance, schedule=SCHEDULES.build(a.schedule, checked.attack), best=a.best,
        early_stop=a.early_stop, progressive_radius=bool(a.get("progressive_radius", False)),
        label=f"{a.method}:{loss}")
