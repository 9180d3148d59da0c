"""What the entry points share: one-line errors for user mistakes, non-zero exit.

``run_app(main)`` runs a ``@hydra.main`` function so that Hydra's own errors (an unknown option
of a config group, a bad override, a run folder or log that cannot be written) also end in one line and
exit status 2; ``run_task(task, cfg)`` does the same for the task's own user-facing errors (the
tasks check their config against its schema first, ``segattack.schema``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf.errors import OmegaConfBaseException

from .errors import SegattackError

EXIT_USER_ERROR = 2
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def fail(message: str) -> None:
    """Print ``message`` as ``error: ...`` lines on stderr (never on a progress bar's line, never
    with terminal codes) and exit with status 2."""
    end_progress_lines()
    for line in ANSI.sub("", str(message)).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def run_task(task: Callable, cfg):
    """Run ``task(cfg)``; a user-facing error (a write the disk refuses included) prints one line
    per problem and exits with status 2, SIGINT/SIGTERM one line (what was kept, how to resume) and
    status 130/143
    (``segattack.interrupt``). Either way the run's unstaged outputs go (``discard_partial``).

    Under DDP, a child rank ends here once the task is done (``finish_distributed``).
    """
    from hydra.errors import HydraException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from .interrupt import Interrupted, catching_signals, interrupted_line
    from .io import refused_write

    out = _output_dir(cfg)
    before = _entries(out)
    try:
        with catching_signals():
            result = task(cfg)
    except Interrupted as err:
        discard_partial(out, before)
        end_progress_lines()
        print(interrupted_line(err, out or Path.cwd(), resumes(cfg)), file=sys.stderr)
        sys.exit(err.exit_code)
    except Exception as err:
        # a write outside io.py (a checkpoint, the log file) that the disk refused, maybe wrapped
        # (by hydra.utils.instantiate, when a Trainer logs as it is made)
        refused = refused_write(err)
        if refused is None and not isinstance(err, (SegattackError, OmegaConfBaseException, FloatingPointError,
                                                    HydraException, MisconfigurationException)):
            raise
        discard_partial(out, before)
        if refused is not None:
            fail(write_failure(refused, out or Path.cwd()))
        fail(hydra_message(err) if isinstance(err, HydraException) else str(err))
    finish_distributed()
    return result


def resumes(cfg) -> bool:
    """Whether re-running this run in its folder continues it: training, universal fits."""
    if cfg.get("task", "train") == "train" and "models" in cfg:
        return True
    return cfg.get("mode") == "universal" and not cfg.get("perturbation")


# Outputs written while a run goes (not staged): a failed or interrupted run must not leave them.
STREAMED = ("adversarial", "adversarial_png")


def _output_dir(cfg) -> Path | None:
    try:
        out = (cfg.get("paths") or {}).get("output_dir")
    except OmegaConfBaseException:
        return None
    return Path(out) if out else None


def _entries(out: Path | None) -> set[str]:
    return {p.name for p in out.iterdir()} if out is not None and out.is_dir() else set()


def write_failure(err: OSError, where: Path | str) -> str:
    """One line for a write that failed: the file (else ``where``, the run folder) and the reason."""
    return f"{err.filename or where}: cannot write ({err.strerror})"


def discard_partial(out: Path | None, before: set[str]) -> None:
    """Remove the streamed outputs this run began (``STREAMED``), so a failed run leaves none."""
    import shutil

    for name in STREAMED:
        if out is not None and name not in before and (out / name).exists():
            shutil.rmtree(out / name, ignore_errors=True)


def end_progress_lines() -> None:
    """End an open progress-bar line, so a message never starts on it."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    sys.stderr.flush()


def finish_distributed() -> None:
    """DDP: wait for every rank, end the process group, and end child ranks at once.

    A child rank left to a normal interpreter exit can abort in C++ teardown ("terminate called
    without an active exception"), and Lightning's launcher then SIGKILLs the main process
    before it has written the outputs (seen once in CI, ``test_universal_attack_under_ddp_syncs_metrics``,
    return code -9). Child ranks write nothing (rank 0 writes every output), so after flushing
    their logs they leave with ``os._exit(0)``, skipping that teardown.
    """
    import logging

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    rank = dist.get_rank()
    dist.barrier()  # no rank tears down while another is still in a collective
    dist.destroy_process_group()
    if rank != 0:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def hydra_message(err: Exception) -> str:
    """One line for an error Hydra raised before the task ran (composition, overrides, run dir)."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.options is not None and err.missing_cfg_file:
        group, _, name = str(err.missing_cfg_file).rpartition("/")
        if group:
            return f"{group}={name}: no such option; expected one of {err.options}"
    if isinstance(err, OSError):
        return f"{err.filename or 'hydra.run.dir'}: cannot write the run folder ({err.strerror})"
    target = re.match(r"Error locating target '([^']*)'", str(err))
    if target:
        key = re.search(r"full_key: (\S+)", str(err))
        where = f"{key.group(1)}._target_" if key else "_target_"
        return f"{where}={target.group(1)!r}: no such class or function (check its module path)"
    lines = [str(err)]
    if isinstance(err.__cause__, OmegaConfBaseException):
        lines.append(str(err.__cause__))
    kept = []
    for text in lines:
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith(("full_key:", "object_type", "See https", "Config search path",
                                             "provider=", "Available options")):
                kept.append(line)
    return " ".join(kept)


def run_app(main: Callable) -> None:
    """Run a ``@hydra.main`` entry point; Hydra's errors become one line and exit status 2.

    ``HYDRA_FULL_ERROR=1`` makes Hydra re-raise its errors instead of printing them with a
    several-line hint; they are caught here. Errors of the task itself are handled by
    ``run_task``; anything else (a bug) keeps its traceback.
    """
    from hydra.errors import HydraException

    from .io import refused_write

    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        fail(hydra_message(err))
    except (OSError, ValueError) as err:  # the run folder or its log file cannot be made
        cause = err if isinstance(err, OSError) else refused_write(err)
        if cause is None or not _raised_in_hydra(err):
            raise
        fail(hydra_message(cause))


def _raised_in_hydra(err: BaseException) -> bool:
    """Whether Hydra raised ``err`` (making the run folder) rather than the task it ran: no frame
    of the traceback is in this package (apart from this module)."""
    import traceback
    from pathlib import Path

    package = str(Path(__file__).resolve().parent)
    return not any(f.filename.startswith(package) and not f.filename.endswith("cli.py")
                   for f in traceback.extract_tb(err.__traceback__))
