"""Atomic file writes: a crash or a full disk never leaves a truncated output (docs/design.md, "Outputs")."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from safetensors import (
    SafetensorError,  # how safetensors reports a full disk (not an OSError)
)

from .errors import SegattackError


class OutputError(SegattackError):
    """An output cannot be written (missing or unwritable folder, full disk)."""


# What a disk or a folder answers to a write it refuses (not a bug): one line, never a traceback.
WRITE_REFUSED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                           errno.EIO})


def refused_write(err: BaseException | None) -> OSError | None:
    """The refused write (``WRITE_REFUSED``) that ``err`` is or was raised from, if any (logging
    reports a log file it cannot open as a ``ValueError`` from the ``OSError``)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in WRITE_REFUSED:
            return err
        err = err.__cause__
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The previous file at ``path``, if any, stays untouched when ``write`` fails.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: output folder {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputError(f"{path}: cannot write in {path.parent} ({err.strerror})") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp, path)
    except (OSError, SafetensorError) as err:
        Path(tmp).unlink(missing_ok=True)
        if not isinstance(err, OSError) and "I/O error" not in str(err):
            raise  # a serialisation bug, not a problem with the output
        reason = getattr(err, "strerror", None) or err
        raise OutputError(f"{path}: write failed ({reason}); previous file kept") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


@contextmanager
def staged(out: str | Path):
    """Stage a run's outputs: yield a hidden folder inside ``out`` to write them into; when the
    block ends without an error they are moved into ``out`` (replacing a previous run's), else the
    folder is removed, so a failed run leaves none of its outputs (docs/design.md, "Outputs")."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    except OSError as err:
        raise OutputError(f"{out}: cannot write in the output folder ({err.strerror})") from None
    try:
        yield stage
    except OutputError as err:  # name the output, not the staging folder that is about to go
        shutil.rmtree(stage, ignore_errors=True)
        raise OutputError(str(err).replace(str(stage), str(out))) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        for item in sorted(stage.iterdir()):
            target = out / item.name
            if item.is_dir() and target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
        stage.rmdir()
    except OSError as err:
        shutil.rmtree(stage, ignore_errors=True)
        raise OutputError(f"{out}: cannot move the outputs into place ({err.strerror})") from None
