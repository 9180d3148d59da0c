"""Hydra callbacks of the entry points (configured in the ``hydra.callbacks`` section)."""

from __future__ import annotations

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
