"""``perturbation=PATH``: evaluate a saved perturbation (a universal file or a per-image set)
instead of attacking; how it was made is checked against the run first."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..errors import ConfigError
from ..files.adversarial import load_adversarial_set, read_set_metadata, set_folder
from ..files.perturbation import check_made_for_run, load_universal_w, read_universal_metadata
from .module import PerturbationModule
from .spec import AttackSpec


def perturbation_eps(cfg: DictConfig, spec: AttackSpec) -> tuple[AttackSpec, dict | None]:
    """``perturbation=PATH``: check how the file was made against the run (eps, region, image
    size, source models; one-line errors) and return the spec at the eps it is applied at, with
    what metrics.json records about it. Without a file: ``(spec, None)``."""
    path = cfg.get("perturbation")
    if not path:
        return spec, None
    mode = cfg.get("perturbation_eps", "run")  # run | file (the schema checks)
    folder = set_folder(path)
    if (folder is not None) != (spec.mode == "per_image"):
        want = "per_image" if folder is not None else "universal"
        raise ConfigError(f"perturbation={path}: a {'per-image set' if folder else 'universal perturbation'} "
                          f"is evaluated with mode={want}")
    meta = read_set_metadata(folder) if folder is not None else read_universal_metadata(path)
    run = {"eps": spec.eps, "region": spec.region.describe(), "image_size": list(spec.image_size),
           "source_models": list(spec.source_models)}
    eps = check_made_for_run(path, meta, run, own_eps=mode == "file")
    return dataclasses.replace(spec, eps=eps), {"perturbation_eps": mode, "file_eps": meta.get("eps"),
                                                "run_eps": run["eps"]}


def load_perturbation(path: Path, module: PerturbationModule, num_images: int | None = None) -> None:
    """Put a saved universal ``w`` into ``module`` (shape and method checked), or a per-image
    set's deltas (every image of the evaluated split must be in it)."""
    spec = module.spec
    if set_folder(path) is not None:
        meta, deltas = load_adversarial_set(path)
        if meta.get("method") and meta["method"] != spec.method:
            raise ConfigError(f"attack.method={spec.method!r}: {path} was made with "
                              f"{meta['method']!r}; run with attack={meta['method']}")
        missing = sorted(set(range(num_images or 0)) - set(deltas))
        if missing:
            raise ConfigError(f"perturbation={path}: holds {len(deltas)} images, the evaluated split "
                              f"has {num_images} (missing indices {missing[:5]}...); "
                              f"evaluate it on the split it was made on ({meta.get('split')!r})")
        module.loaded_deltas = deltas
        return
    w = load_universal_w(path, module.w.shape, spec.method,
                         f"region {spec.region.describe()} and image size {list(spec.image_size)}")
    with torch.no_grad():
        module.w.copy_(w)
