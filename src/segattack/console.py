"""A quiet console for the entry points: one line per event, the full log in the run's folder.

Hydra's ``job_logging`` (configs/hydra/job_logging/segattack.yaml) sends INFO and up to
``<run>/<job>.log`` and only warnings to the console; ``quiet_console`` removes what would still
be printed twice or is noise from third-party code, each by its exact message or source. With
``verbose=true`` nothing is filtered.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings

# Lightning's advert for its own logging product, logged at INFO on every Trainer.
LITLOGGER_TIP = "try installing [litlogger]"


class _DropMessage(logging.Filter):
    """Drops the records of one logger whose message contains ``text``."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class RunLogHandler(logging.FileHandler):
    """The run folder's log file. A write the disk refuses (full, read-only) ends the run with one
    line naming the file (``cli.run_task``), instead of logging's traceback at every later record."""

    def handleError(self, record: logging.LogRecord) -> None:
        from .io import refused_write

        err = refused_write(sys.exc_info()[1])
        if err is None or threading.current_thread() is not threading.main_thread():
            return super().handleError(record)  # (a thread cannot end the run)
        raise OSError(err.errno, err.strerror, self.baseFilename) from None


def quiet_console(verbose: bool = False) -> None:
    """Set up the console of an entry point (call it inside ``@hydra.main``, before any Trainer)."""
    import lightning  # noqa: F401  (its import adds the handler removed below)

    if logging.getLogger().handlers:
        # `import lightning` gives the "lightning" logger its own console handler, so with Hydra's
        # handlers on the root every Lightning line was printed twice. The root's handlers
        # (console and log file) are enough: Lightning's records propagate to them.
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            lg = logging.getLogger(name)
            for handler in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
                lg.removeHandler(handler)
            lg.propagate = True
    # Warnings go through logging too: same console format, and a copy in the run's log file.
    logging.captureWarnings(True)
    if verbose:
        return
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessage) for f in rank_zero.filters):  # once per process (multirun)
        rank_zero.addFilter(_DropMessage(LITLOGGER_TIP))
    # Raised inside Lightning's own pytree helper by torch >= 2.10; nothing a user can change.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")
    # num_workers=0 is this project's default on CPU (workers only add start-up time here).
    warnings.filterwarnings("ignore", message=r"The '\w+_dataloader' does not have many workers")
