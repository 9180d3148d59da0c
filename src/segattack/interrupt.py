"""SIGINT and SIGTERM during a run: stop at once, keep only whole files, say how to resume.

``catching_signals()`` turns either signal into ``Interrupted``, raised at the next Python step of
the run (an optimiser step, not the end of a batch or an epoch). It is a ``BaseException``, so no
``except Exception`` swallows it, and not a ``KeyboardInterrupt``, which Lightning turns into exit
status 1 (and SIGTERM, left to Lightning, only ends the epoch early with status 0). The entry points
(``cli.run_task``) then print ``interrupted_line`` and exit with 128 + the signal's number
(130, 143). Every output is written atomically or staged (docs/design.md, "Outputs"), so what
remains is whole: the checkpoints a resume continues from, the weights exported so far.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):  # noqa: N818 - it is a stop, not an error
    """The run received ``signum``; raised from the signal handler."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum, frame):
    for s in SIGNALS:  # a second Ctrl+C does not interrupt the clean-up
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def catching_signals() -> Iterator[None]:
    """SIGINT/SIGTERM raise ``Interrupted`` inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def rerun_command(out: Path) -> str:
    """The command line that runs this run again in its own folder (so it resumes there)."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith(".py") else "attack.py"
    overrides = []
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.run.dir=")]
    except ValueError:  # composed outside a Hydra app (tests): no overrides to repeat
        pass
    return " ".join(["python", script, *map(shlex.quote, overrides), shlex.quote(f"hydra.run.dir={out}")])


def kept_files(out: Path) -> list[str]:
    """What a resume continues from: checkpoints to resume and weights exported so far."""
    found = sorted(out.glob("checkpoints/**/last*.ckpt")) + sorted(out.glob("weights/*.safetensors"))
    return [str(p.relative_to(out)) for p in found]


def interrupted_line(err: Interrupted, out: Path, resumable: bool) -> str:
    """One line: the signal, what was kept in ``out`` and the command that resumes (or reruns) it."""
    name = signal.Signals(err.signum).name
    kept = kept_files(out) if resumable else []
    if kept:
        return f"interrupted by {name}: kept {', '.join(kept)} in {out}; resume with: {rerun_command(out)}"
    why = "" if resumable else " (a per-image attack starts clean)"
    return f"interrupted by {name}: nothing kept{why}; run again with: {rerun_command(out)}"
