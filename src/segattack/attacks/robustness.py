"""``run_robustness(cfg)``: the worst-case evaluation protocol (``task=robustness``).

At each eps of ``robustness.eps`` on the same images, one per-image run of the configured
ensemble (``experiment=robustness``: APGD, PGD, projected Adam and SegPGD with their losses):
per image the worst case over the attacks is kept, and each eps's run folder holds its
``metrics.json`` (with every attack's own accuracy and the images it won). The protocol's folder
holds ``robustness.json``, ``robustness.md`` and ``robustness.png`` (robust pixel accuracy and
mIoU against eps for each model).
"""

from __future__ import annotations

import copy

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..report import robustness as report
from ..schema.attack import parse_eps


def eps_values(cfg: DictConfig) -> list[float]:
    values = list((cfg.get("robustness") or {}).get("eps") or [])
    if not values:
        raise ConfigError("robustness.eps: expected a list of eps, e.g. [2/255,4/255,8/255]")
    try:
        return sorted({parse_eps(v) for v in values})
    except ValueError as err:
        raise ConfigError(f"robustness.eps={values}: {err}") from None


def run_robustness(cfg: DictConfig) -> dict:
    """Every eps of ``robustness.eps``, then the summary of all of them."""
    from pathlib import Path

    from .task import run_attack

    if cfg.mode != "per_image" or cfg.get("targeted") or cfg.attack.get("targeted"):
        raise ConfigError("task=robustness: an untargeted per-image attack (mode=per_image)")
    out = Path(cfg.paths.output_dir)
    runs = []
    for eps in eps_values(cfg):
        sub = copy.deepcopy(cfg)
        OmegaConf.update(sub, "task", "attack")
        OmegaConf.update(sub, "eps", eps)
        OmegaConf.update(sub, "paths.output_dir", str(out / f"eps={report.eps_label(eps).replace('/', '_')}"))
        runs.append((eps, run_attack(sub)))
    summary = report.summarise(runs)
    report.write(out, summary)
    return summary
