"""Attack any segmentation model from Python, with what ``attack.py`` runs (docs/design.md, "API").

    import segattack
    atk = segattack.Attack(model, eps=4/255, steps=10)   # model: [0, 1] images -> logits
    result = atk(images, labels)                         # a batch, or atk(loader)
    result.x_adv, result.metrics["per_model"]["model"]["asr"]

No second implementation: the arguments become the overrides of the composed
``configs/attack.yaml`` (one key each, the same names as on the command line), checked by its
schema and turned into an ``AttackSpec`` by ``build_attack_spec``; a ``PerturbationModule`` crafts
each batch with its own ``test_step`` (loop, losses, regions) and scores it with the
``AttackEvaluation`` that fills ``metrics.json``. A universal perturbation is fitted with
Lightning's ``Trainer.fit``, as the command line fits it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from .config import as_override, compose_config
from .errors import ConfigError
from .models.wrapper import NormalizedModel
from .schema import check_attack_config

ROOT = Path(__file__).resolve().parents[2]  # the project folder: configs/ (a source checkout)
SINGLE = "model"  # the name of a model passed on its own
Batches = Iterable[Sequence[torch.Tensor]]  # (x, y) or (x, y, index) batches, e.g. a DataLoader


@dataclasses.dataclass
class AttackResult:
    """What one call returns.

    Attributes:
        x_adv: (N, 3, H, W) adversarial images in [0, 1], in the order given (on the CPU for a
            loader, on the images' device for one batch); None with ``keep_images=False``.
        metrics: the ``per_model``, ``joint`` and ``perturbation`` blocks of ``metrics.json``
            (and ``steps_per_image`` for a per-image attack), computed by the same code.
        perturbation: universal: ``eps * f(w)``, (1, 3, h, w) (the region's size); else None.
    """

    x_adv: torch.Tensor | None
    metrics: dict
    perturbation: torch.Tensor | None = None

    @property
    def asr(self) -> dict[str, float | None]:
        """The attack success rate per evaluated model (``metrics["per_model"][name]["asr"]``)."""
        return {name: m["asr"] for name, m in self.metrics["per_model"].items()}


class Attack:
    """An attack on one or several models (jointly), per image or universal, in any region.

    Args:
        model: any callable mapping images in [0, 1], (B, 3, H, W), to logits (B, C, H, W), or a
            mapping ``name -> callable`` attacked jointly. Its parameters are frozen and it is put
            in eval mode (the attack trains only the perturbation).
        eps: L-inf bound in [0, 1] pixel units (a number, or ``"4/255"``).
        steps: optimisation steps per batch (per image) or in all (universal).
        method: an option of ``configs/attack/`` (``pgd``, ``tanh``, ``apgd``, ``fgsm`` ...).
        mode: ``per_image`` or ``universal``.
        region: where the perturbation may be non-zero: an option of ``configs/region/``
            (``full``, ``box``, ``class``) or its keys, e.g. ``{"type": "box", "size": [60, 80]}``.
        area: where success counts (same keys as ``region``); None: the region.
        eval_models: ``name -> callable`` also evaluated, not attacked (transfer).
        mean, std: per-channel normalisation applied before every model (None: the models take
            [0, 1] images).
        num_classes: C; None: read from the first batch's logits.
        seed: of the random start and random boxes, as ``seed=`` of ``attack.py``.
        keep_images: return ``x_adv`` (False for a large loader: metrics only).
        overrides: further ``attack.py`` overrides, e.g. ``["attack.optimizer.momentum=0"]``.
        **attack_keys: keys of ``configs/attack_common.yaml``, e.g. ``loss="masked_ce"`` (the
            strongest measured on adversarially trained models; PGD's default is the margin),
            ``targeted=True, target_class=3``, ``schedule="constant"``, ``best=False``.

    Raises:
        ConfigError: a bad argument, one line naming its key (the command line's message).
    """

    def __init__(self, model: Callable | Mapping[str, Callable], eps: float | str = 4 / 255,
                 steps: int = 10, method: str = "pgd", *, mode: str = "per_image",
                 region: str | Mapping[str, Any] = "full", area: Mapping[str, Any] | None = None,
                 eval_models: Mapping[str, Callable] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 num_classes: int | None = None, seed: int = 0, keep_images: bool = True,
                 overrides: Sequence[str] = (), **attack_keys: Any):
        sources = dict(model) if isinstance(model, Mapping) else {SINGLE: model}
        others = {k: v for k, v in (eval_models or {}).items() if k not in sources}
        self.models = {name: as_module(m, mean, std) for name, m in {**sources, **others}.items()}
        self.num_classes, self.keep_images = num_classes, keep_images
        self.cfg = attack_config(list(sources), list(others), eps, steps, method, mode, region, area,
                                 seed, overrides, attack_keys)
        self._specs: dict[tuple, Any] = {}

    def spec(self, image_size: Sequence[int], num_classes: int):
        """The ``AttackSpec`` for images of ``image_size`` and ``num_classes`` classes (cached)."""
        from .attacks.spec import build_attack_spec

        key = (*image_size, num_classes)
        if key not in self._specs:
            self._specs[key] = build_attack_spec(self.cfg, tuple(image_size), num_classes)
        return self._specs[key]

    def module(self, image_size: Sequence[int], num_classes: int, device: torch.device):
        """A fresh ``PerturbationModule`` (its generator seeded anew: every call starts alike)."""
        from .attacks.module import PerturbationModule

        module = PerturbationModule(self.models, self.spec(image_size, num_classes))
        return module if device.type == "cpu" else module.to(device)  # built on the CPU

    def __call__(self, images: torch.Tensor | Batches, labels: torch.Tensor | None = None, *,
                 fit_data: torch.Tensor | Batches | None = None,
                 fit_labels: torch.Tensor | None = None) -> AttackResult:
        """Attack ``images`` (B, 3, H, W) in [0, 1] with ``labels`` (B, H, W) class ids (255:
        ignored), or every batch of a loader of ``(x, y)`` / ``(x, y, index)``.

        Universal mode first fits one perturbation on ``fit_data`` (default: the same data),
        then evaluates it on ``images``.
        """
        batches = as_batches(images, labels)
        first = next(iter(batches), None)
        if first is None:
            raise ConfigError("images: the loader yields no batch")
        device = first[0].device
        num_classes = self.num_classes or self.count_classes(first[0][:1])
        module = self.module(first[0].shape[-2:], num_classes, device)
        if module.universal:
            fit(module, as_batches(fit_data, fit_labels) if fit_data is not None else batches, device)
        kept: list[torch.Tensor] = []
        if self.keep_images:  # a loader's images wait on the CPU, not in the accelerator's memory
            one = isinstance(images, torch.Tensor)
            module.on_adversarial = lambda index, x, x_adv: kept.append(x_adv if one else x_adv.cpu())
        evaluate(module, batches, device)
        x_adv = (kept[0] if len(kept) == 1 else torch.cat(kept)) if kept else None
        return AttackResult(x_adv, module.results(), module.universal_delta() if module.universal else None)

    @torch.no_grad()
    def count_classes(self, x: torch.Tensor) -> int:
        """C of the first model's logits on one image."""
        return int(next(iter(self.models.values()))(x).shape[1])


def as_module(model: Callable, mean, std) -> nn.Module:
    """``model`` as the module the attack holds: normalised inside, as a shipped model is."""
    if isinstance(model, NormalizedModel) and mean is None and std is None:
        return model
    return NormalizedModel(model if isinstance(model, nn.Module) else Wrapped(model), mean, std)


class Wrapped(nn.Module):
    """A plain function as a module (no parameters of its own)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def attack_config(sources, others, eps, steps, method, mode, region, area, seed, overrides,
                  attack_keys) -> DictConfig:
    """The composed ``configs/attack.yaml`` of these arguments, checked by its schema."""
    if not (ROOT / "configs" / "attack.yaml").is_file():
        raise ConfigError(f"segattack.Attack needs the project's configs/ folder (expected {ROOT / 'configs'}): "
                          "install segattack from its source folder (pip install -e .)")
    chosen = [f"attack={method}", f"mode={mode}", f"seed={seed}", "logger=none", "num_figures=0",
              f"source_models={as_override(sources)}", f"eval_models={as_override(others)}",
              f"eps={eps!r}" if isinstance(eps, float) else f"eps={eps}", f"attack.steps={steps}"]
    if isinstance(region, str):
        chosen.append(f"region={region}")
    cfg = compose_config(ROOT, "attack", [*chosen, *overrides])
    with open_dict(cfg):
        if not isinstance(region, str):
            cfg.region = OmegaConf.create(dict(region))
        if area is not None:
            cfg.area = OmegaConf.create(dict(area))
        for key, value in attack_keys.items():
            if key not in cfg.attack:
                raise ConfigError(f"{key}=: not a key of an attack (expected one of {sorted(cfg.attack)})")
            cfg.attack[key] = value
        if cfg.attack.get("loss") == "auto":  # these modules record no adversarial training
            from .attacks.spec import AUTO_LOSS

            cfg.attack.loss = AUTO_LOSS["clean"]
    check_attack_config(cfg)
    return cfg


def as_batches(images, labels) -> Batches:
    """One batch ``[(images, labels)]``, or the loader as it is."""
    if isinstance(images, torch.Tensor):
        if labels is None:
            raise ConfigError("labels: expected (B, H, W) class ids with the images (255: ignored)")
        return [(images, labels)]
    if labels is not None:
        raise ConfigError("labels: give them with a batch of images, not with a loader of (x, y)")
    return list(images) if iter(images) is images else images  # a generator is read once


def moved(batch: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [t.to(device, non_blocking=True) if i < 2 else t for i, t in enumerate(batch)]


def evaluate(module, batches: Batches, device: torch.device) -> None:
    """Craft (per image) and score every batch with the module's own ``test_step``."""
    module.eval()  # the frozen models (and nothing else) stay in eval mode
    module.on_test_start()
    # As Trainer.test(inference_mode=False) runs it: no graph outside the attack's own steps.
    with torch.no_grad(), warnings.catch_warnings():  # test_step logs to a Trainer's bar: none here
        warnings.filterwarnings("ignore", message=r".*self\.log\(\)")
        for i, batch in enumerate(batches):
            module.test_step(moved(batch, device), i)


@contextlib.contextmanager
def quiet_lightning():
    """Lightning's console lines (accelerator found, tips) off for the block."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def fit(module, batches: Batches, device: torch.device) -> None:
    """Fit a universal perturbation as ``attack.py`` does: ``Trainer.fit`` for ``spec.steps``."""
    import lightning as L
    from torch.utils.data import DataLoader

    loader = batches if isinstance(batches, DataLoader) else DataLoader(list(batches), batch_size=None)
    with quiet_lightning():
        trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                            max_steps=module.spec.steps, max_epochs=-1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, inference_mode=False)
    with warnings.catch_warnings(), quiet_lightning():  # its notes are about the Trainer, not the attack
        warnings.filterwarnings("ignore", module=r"lightning\..*")
        trainer.fit(module, train_dataloaders=loader)
    module.trainer = None  # evaluate() runs test_step on its own, outside any Trainer loop
