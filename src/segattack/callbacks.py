"""Hydra callbacks of the entry points (configured in the ``hydra.callbacks`` section)."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepSummary(Callback):
    """After a multirun (``python attack.py -m eps=1/255,2/255``): one summary of every run,
    written to the sweep folder and printed (see ``segattack.report.sweep``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .report.sweep import summarize_sweep  # only now: plain runs never import matplotlib

        overrides = " ".join(config.hydra.overrides.task)
        script = f"{config.hydra.job.name}.py"
        print(summarize_sweep(config.hydra.sweep.dir, command=f"python {script} -m {overrides}"))
