"""Config helpers shared by the entry points and the tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError


def register_resolvers(root: str | Path) -> None:
    """``${root:}``: the project folder (``configs/``, ``weights/``); ``${div:a,b}``: a / b."""
    root = str(Path(root).resolve())
    OmegaConf.register_new_resolver("root", lambda: root, replace=True)
    # ${div:2.5,${attack.steps}}: step sizes relative to the number of steps
    OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b), replace=True)


def load_group_option(cfg: DictConfig, group: str, name: str) -> DictConfig:
    """Load ``configs/<group>/<name>.yaml`` (e.g. a model's config when training several)."""
    folder = Path(cfg.paths.config_dir) / group
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"{group}={name!r}: no {path}; expected one of {known}")
    # Interpolations such as ${paths.root_dir} resolve against the running config's paths.
    paths = OmegaConf.create({"paths": OmegaConf.to_container(cfg.paths, resolve=False)})
    return OmegaConf.merge(paths, OmegaConf.load(path))
