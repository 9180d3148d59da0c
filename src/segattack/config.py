"""Config helpers shared by the entry points and the tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError


def register_resolvers(root: str | Path) -> None:
    """``${root:}``: the project folder (``configs/``, ``weights/``); ``${div:a,b}``: a / b."""
    root = str(Path(root).resolve())
    OmegaConf.register_new_resolver("root", lambda: root, replace=True)
    # ${div:2.5,${attack.steps}}: step sizes relative to the number of steps
    # (a zero b gives inf, so the schema reports the key that is 0, e.g. attack.steps=0)
    OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b) if float(b) else float("inf"),
                                    replace=True)
    # ${console_level:${verbose}}: the console log level of configs/hydra/job_logging/segattack.yaml
    OmegaConf.register_new_resolver("not", lambda value: not value, replace=True)
    OmegaConf.register_new_resolver("console_level", lambda verbose: "INFO" if verbose else "WARNING",
                                    replace=True)
    # ${sweep_subdir:${hydra.job.num},${hydra.job.override_dirname}}: a multirun job's folder
    OmegaConf.register_new_resolver("sweep_subdir", sweep_subdir, replace=True)
    # For the --help pages (configs/hydra/help/): the options of a group, a value as typed
    configs = Path(root) / "configs"
    OmegaConf.register_new_resolver(
        "choices", lambda group: ", ".join(sorted(p.stem for p in (configs / group).glob("*.yaml"))),
        replace=True)
    OmegaConf.register_new_resolver("cli", as_override, replace=True)


def as_override(value) -> str:
    """A config value the way it is typed on the command line: ``[enet,erfnet]``, ``null``, ``true``."""
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(as_override(v) for v in value) + "]"
    if isinstance(value, (dict, DictConfig)):
        return "{" + ",".join(f"{k}:{as_override(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def sweep_subdir(num, override_dirname: str) -> str:
    """A multirun job's folder name: its overrides (``eps=1/255`` -> ``eps=1_255``, since a slash
    would make sub-folders), or its job number when it has none."""
    name = str(override_dirname or "").replace("/", "_")[:200]
    return name or str(num)


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


def compose_config(root: str | Path, config_name: str, overrides=(), output_dir=None) -> DictConfig:
    """Compose ``<root>/configs/<config_name>.yaml`` as ``@hydra.main`` would, outside a Hydra app.

    For the tests, benchmarks and notebooks: ``HydraConfig`` is set (as in
    lightning-hydra-template) so ``${hydra:...}`` interpolations resolve in-process, and
    ``paths.output_dir`` is ``output_dir`` when given.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    register_resolvers(root)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(root).resolve() / "configs"), version_base="1.3"):
            cfg = compose(config_name=config_name, return_hydra_config=True, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
    HydraConfig.instance().set_config(cfg)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg
