"""Hydra callbacks of the entry points (configured in the ``hydra.callbacks`` section)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

EXCLUDE = "hydra.job.config.override_dirname.exclude_keys"


class SweepSummary(Callback):
    """Multirun folders named by what the sweep varies, and one summary at the end.

    ``python attack.py -m eps=1/255,2/255 data=camvid`` runs into ``<sweep>/eps=1_255/`` and
    ``<sweep>/eps=2_255/`` (``data=camvid`` is the same for every run, so it is left out of the
    names), then writes ``<sweep>/summary.md`` (and a plot) and prints it
    (``segattack.report.sweep``).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        hydra_overrides = list(config.hydra.overrides.hydra)
        if any(o.split("=")[0].lstrip("+~") == EXCLUDE for o in hydra_overrides):
            return  # the user chose the folder names
        task = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        fixed = sorted({o.key_or_group for o in task if not o.is_sweep_override()})
        if fixed:
            # Each job is composed again from these overrides (Hydra's load_sweep_config), so the
            # exclusion reaches every job's ${hydra.job.override_dirname}.
            with open_dict(config):
                config.hydra.overrides.hydra.append(f"{EXCLUDE}=[{','.join(fixed)}]")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .report.sweep import (
            summarize_sweep,  # only now: plain runs never import matplotlib
        )

        overrides = " ".join(config.hydra.overrides.task)
        script = f"{config.hydra.job.name}.py"
        print(summarize_sweep(config.hydra.sweep.dir, command=f"python {script} -m {overrides}"))


class SweepCheck(Callback):
    """Every job of a sweep checked by ``check`` (the entry point's schema) before the first starts.

    ``python attack.py -m eps=2/255,4/255,2`` stops at once with one line per problem, naming the
    job: ``sweep job 3 of 3 (eps=2): eps=2: expected ...``, exit status 2, nothing written; a
    problem every job shares is printed once, as a single run prints it. Each job is composed as
    the launcher will compose it (``sweep_jobs``, ``job_config``). Sweepers other than Hydra's
    basic one choose their jobs as they go: their jobs are checked as they start.
    """

    def __init__(self, check: Callable) -> None:
        self.check = check

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from .cli import fail, hydra_message
        from .errors import SegattackError

        if not str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
            return
        loader = GlobalHydra.instance().config_loader()
        jobs = sweep_jobs(config, loader)
        swept = [i for i in range(len(jobs[0])) if len({job[i] for job in jobs}) > 1]
        problems: dict[str, list[str]] = {}  # line -> the jobs that have it
        master = HydraConfig.instance().cfg
        try:
            for num, overrides in enumerate(jobs):
                name = f"{num + 1} of {len(jobs)} ({' '.join(overrides[i] for i in swept)})"
                try:
                    self.check(job_config(config, loader, overrides, num))
                except SegattackError as err:
                    lines = str(err).splitlines()
                except (HydraException, OmegaConfBaseException) as err:
                    lines = [hydra_message(err)]
                else:
                    continue
                for line in lines:
                    problems.setdefault(line, []).append(name)
        finally:
            HydraConfig.instance().cfg = master
        if problems:  # a line every job has is the command's own mistake: said once, as a run says it
            fail("\n".join(line if len(names) == len(jobs) else f"sweep job {'; '.join(names)}: {line}"
                           for line, names in problems.items()))


def sweep_jobs(config: DictConfig, loader) -> list[list[str]]:
    """The overrides of each job of a multirun, in launch order, as Hydra's basic sweeper makes them
    (``hydra.sweeper.params``, then the command line's overrides)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(
        [*params, *config.hydra.overrides.task])
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def job_config(config: DictConfig, loader, overrides: list[str], num: int) -> DictConfig:
    """Job ``num``'s config as the launcher composes it, its run folder set (not made), and made
    the current Hydra config so that ``${hydra:...}`` resolves as in the job."""
    import os

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, read_write

    cfg = loader.load_sweep_config(config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = cfg.hydra.job.num = num
    HydraConfig.instance().set_config(cfg)
    out = os.path.join(str(OmegaConf.select(cfg, "hydra.sweep.dir")), str(OmegaConf.select(cfg, "hydra.sweep.subdir")))
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = os.path.abspath(out)
    HydraConfig.instance().set_config(cfg)
    return cfg
