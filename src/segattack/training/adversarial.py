"""Adversarial training: the project's own per-image attack as the inner maximiser.

``AdversarialTraining`` crafts adversarial images for a model that is being trained, with the
same ``AttackSpec``, perturbation and loop as ``attack.py`` (``attacks/loop.py``): the training
step replaces a share (``ratio``) of each batch by its adversarial images, and validation also
scores the first ``val_images`` val images under a stronger attack (robust mIoU and pixel
accuracy). While crafting, the network's parameters do not require gradients (only the input's
gradient is computed) and its batch-norm layers are in the mode ``bn_mode`` says:

- ``eval``: the whole network in eval mode (running statistics, no dropout), as it is attacked
  at test time;
- ``train``: batch statistics and dropout as in the training step, running statistics frozen.

The mode used by the shipped robust models was chosen by measurement (docs/results.md,
"Defended models").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..attacks.batch import prepare_batch
from ..attacks.loop import optimise_per_image
from ..attacks.objective import JointObjective
from ..attacks.perturbation import Perturbation
from ..attacks.spec import AttackSpec, build_attack_spec, method_file
from ..errors import ConfigError
from ..schema import check_attack_config

# Keys of a training config that an attack config shares (schema/common.py, ``Run``).
RUN_KEYS = ("seed", "resume", "torch_threads", "channels_last", "verbose", "data", "trainer", "logger", "paths")
BN_MODES = ("eval", "train")


def attack_config(cfg: DictConfig, name: str, block: DictConfig, steps: int | None = None) -> DictConfig:
    """The attack config of ``block`` (``adversarial`` or its ``val`` part) against model ``name``:
    ``configs/attack_common.yaml``, the method's own ``configs/attack/<method>.yaml``, then the
    block's ``loss``/``steps`` and its ``options`` (any other ``attack.*`` key); full frame,
    untargeted, per image."""
    folder = Path(cfg.paths.config_dir)
    if block.method == "ensemble" or not (folder / "attack" / f"{block.method}.yaml").is_file():
        options = sorted(p.stem for p in (folder / "attack").glob("*.yaml") if p.stem != "ensemble")
        raise ConfigError(f"adversarial.method={block.method!r}: expected one of {options}")
    attack = OmegaConf.merge(OmegaConf.load(folder / "attack_common.yaml"),
                             method_file(folder, block.method),
                             {"method": block.method, "loss": block.loss, "steps": steps or block.steps},
                             block.get("options") or {})
    run = {k: cfg[k] for k in RUN_KEYS if k in cfg}
    return OmegaConf.merge(OmegaConf.create(run), {
        "task": "attack", "mode": "per_image", "eps": block.eps, "source_models": [name],
        "eval_models": [], "weights": {}, "area": None, "region": {"type": "full"},
        "fit_split": "train", "eval_split": "val", "checkpoint_every": 50, "num_figures": 0,
        "attack": attack})


def build_spec(cfg: DictConfig, name: str, block: DictConfig, image_size, num_classes: int,
               steps: int | None = None, key: str = "adversarial") -> AttackSpec:
    """``build_attack_spec`` of the block; a bad key is reported under ``key``."""
    try:
        return build_attack_spec(attack_config(cfg, name, block, steps), image_size, num_classes)
    except ConfigError as err:
        raise ConfigError(f"{key}: {err}") from None


def val_block(cfg: DictConfig) -> DictConfig:
    """``adversarial.val``'s attack: its own keys over the training attack's."""
    block = OmegaConf.to_container(cfg.adversarial, resolve=True)
    own = {k: v for k, v in (block.pop("val", None) or {}).items() if v is not None}
    if "options" in own:  # the val attack's options replace the training attack's
        block.pop("options", None)
    return OmegaConf.create({**block, **own})


def check_attacks(cfg: DictConfig) -> None:
    """Both inner attacks through the attack schema (before any data or weights load)."""
    for key, block in (("adversarial", cfg.adversarial), ("adversarial.val", val_block(cfg))):
        try:
            check_attack_config(attack_config(cfg, "model", block))
        except ConfigError as err:
            raise ConfigError(f"{key}: {err}") from None


@contextlib.contextmanager
def crafting(model: nn.Module, bn_mode: str) -> Iterator[None]:
    """The network as the inner attack sees it: parameters without gradients, batch norm in
    ``bn_mode`` (``eval``: running statistics; ``train``: batch statistics, running ones
    frozen by a momentum of 0, their update counters put back); everything restored afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    counts = [m.num_batches_tracked.clone() for m in norms if m.num_batches_tracked is not None]
    for p in params:
        p.requires_grad_(False)
    if bn_mode == "eval":
        model.eval()
    else:
        for m in norms:
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, count in zip([m for m in norms if m.num_batches_tracked is not None], counts):
            m.num_batches_tracked.copy_(count)
        model.train(was_training)


class InnerAttack:
    """One attack spec against one network: ``craft(model, x, y)`` returns ``x_adv``.

    Args:
        spec: the attack (full frame, untargeted, per image; ``build_spec``).
        name: the model's name in the spec (``source_models``).
        bn_mode: batch-norm mode while crafting (``crafting``).
        seed: of the random starts (checkpointed with the training state).
    """

    def __init__(self, spec: AttackSpec, name: str, bn_mode: str, seed: int):
        if bn_mode not in BN_MODES:
            raise ConfigError(f"adversarial.bn_mode={bn_mode!r}: expected one of {list(BN_MODES)}")
        self.spec, self.name, self.bn_mode = spec, name, bn_mode
        self.perturbation = Perturbation.of(spec)
        self.generator = torch.Generator().manual_seed(seed)

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        objective = JointObjective({self.name: model}, self.spec)
        with crafting(model, self.bn_mode):
            batch = prepare_batch(self.spec, objective, x, y)
            result = optimise_per_image(self.spec, objective, self.perturbation, batch, self.generator)
        return result.x_adv.detach()

    def describe(self) -> dict:
        """The threat model, as exported weights record it."""
        s = self.spec
        return {"method": s.method, "eps": s.eps, "steps": s.steps, "loss": s.loss.name}


class AdversarialTraining:
    """The ``adversarial`` block of a training config, built for one model.

    ``train_attack`` crafts the training share (``ratio`` of each batch); ``val_attack`` the
    robust validation on the first ``val_images`` val images (0 = none).
    """

    def __init__(self, cfg: DictConfig, name: str, image_size, num_classes: int):
        block = cfg.adversarial
        self.ratio = float(block.ratio)
        self.val_images = int(block.val_images)
        self.train_attack = InnerAttack(build_spec(cfg, name, block, image_size, num_classes),
                                        name, block.bn_mode, cfg.seed)
        val = val_block(cfg)
        self.val_attack = InnerAttack(
            build_spec(cfg, name, val, image_size, num_classes, key="adversarial.val"), name, "eval",
            cfg.seed + 1)

    def mix(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch with its first ``round(ratio * B)`` images replaced by adversarial ones."""
        n = round(self.ratio * x.shape[0])
        if n == 0:
            return x
        x_adv = self.train_attack.craft(model, x[:n], y[:n])
        return torch.cat([x_adv, x[n:]]) if n < x.shape[0] else x_adv

    def metadata(self) -> dict:
        """What exported weights record: the threat model they were trained against."""
        return {"adversarial": {**self.train_attack.describe(), "ratio": self.ratio,
                                "bn_mode": self.train_attack.bn_mode}}

    def generator_states(self) -> list[torch.Tensor]:
        return [self.train_attack.generator.get_state(), self.val_attack.generator.get_state()]

    def set_generator_states(self, states) -> None:
        for attack, state in zip((self.train_attack, self.val_attack), states):
            attack.generator.set_state(state)
