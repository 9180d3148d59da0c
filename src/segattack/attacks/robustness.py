"""``run_robustness(cfg)``: the worst-case evaluation protocol (``task=robustness``).

One per-image run of the configured attack (``experiment=robustness``: an ensemble of APGD,
PGD, projected Adam and SegPGD with their losses, the worst case kept per image) at each eps of
``robustness.eps``, on the same images; each eps's folder holds that run's outputs
(``metrics.json`` with every member's share of images won, ``per_image.csv`` with the winner of
each image). The protocol's folder holds ``robustness.json``, ``robustness.md`` and
``robustness.png`` (robust pixel accuracy and mIoU against eps for each model).
"""

from __future__ import annotations

import copy
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..report import robustness as report
from ..schema import check_attack_config
from .task import run_attack


def run_robustness(cfg: DictConfig) -> dict:
    """Every eps of ``robustness.eps`` (smallest first), then the summary of all of them."""
    checked = check_attack_config(cfg, models_known=True)  # robustness.eps parsed and checked
    out = Path(cfg.paths.output_dir)
    runs = []
    for eps in sorted(checked.robustness.eps):
        sub = copy.deepcopy(cfg)
        OmegaConf.update(sub, "task", "attack")
        OmegaConf.update(sub, "eps", eps)
        OmegaConf.update(sub, "paths.output_dir", str(out / report.eps_folder(eps)))
        runs.append((eps, run_attack(sub)))
    summary = report.summarise(runs)
    report.write(out, summary)
    return summary
