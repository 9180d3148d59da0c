"""Outputs are written atomically: a failing writer, a full disk or a SIGKILL keeps the previous file."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from segattack.io import OutputError, atomic_write, write_json, write_text

# --- atomic writes ----------------------------------------------------------------------------

OLD = b'{"old": true}\n'


@pytest.fixture
def old_file(tmp_path) -> Path:
    path = tmp_path / "out" / "metrics.json"
    path.parent.mkdir()
    path.write_bytes(OLD)
    return path


def assert_kept(path: Path):
    assert path.read_bytes() == OLD, "the previous file changed"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a temporary file was left"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failing_writer_keeps_previous_file(old_file, error):
    def writer(tmp: Path):
        with open(tmp, "wb") as f:
            f.write(b'{"new": ')  # half written ...
        raise error  # ... then the writer dies

    with pytest.raises(type(error)):
        atomic_write(old_file, writer)
    assert_kept(old_file)


def test_full_disk_keeps_previous_file(old_file, monkeypatch):
    def full_disk(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[:5])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OutputError) as err:
        write_json(old_file, {"new": 1})
    assert str(old_file) in str(err.value) and "No space left on device" in str(err.value)
    assert "previous file kept" in str(err.value)
    assert_kept(old_file)


def test_full_disk_in_safetensors_is_an_output_error(old_file, monkeypatch):
    """safetensors reports an I/O failure as ``SafetensorError``, not ``OSError``."""
    import segattack.files.tensorfile as tensorfile
    from segattack.files.perturbation import save_perturbation

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(tensorfile, "save_file", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        save_perturbation(old_file, {"w": torch.zeros(1, 3, 4, 4)}, {"method": "tanh"})
    assert_kept(old_file)


def test_file_size_limit_in_real_writers(tmp_path, old_file):
    """A real OS-level write failure (RLIMIT_FSIZE: EFBIG) in safetensors and in plain text."""
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from safetensors.torch import save_file
        from segattack.io import OutputError, atomic_write, write_text
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        for write in (lambda t: save_file({{"w": torch.zeros(10000)}}, str(t)),
                      lambda t: t.write_text("x" * 10000)):
            try:
                atomic_write({str(old_file)!r}, write)
            except OutputError as err:
                print("OutputError:", err)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(f"OutputError: {old_file}: write failed" in ln for ln in lines), lines
    assert "File too large" in lines[0] and "File too large" in lines[1]
    assert_kept(old_file)


def test_missing_output_folder(tmp_path):
    path = tmp_path / "nowhere" / "metrics.json"
    with pytest.raises(OutputError) as err:
        write_text(path, "x")
    assert str(path) in str(err.value) and "does not exist" in str(err.value)
    assert not path.parent.exists()


def test_output_path_is_a_folder(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(OutputError, match="write failed"):
        write_text(tmp_path / "metrics.json", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_unwritable_output_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        try:  # root ignores the mode bits: then there is nothing to test here
            (folder / "probe").write_text("x")
            (folder / "probe").unlink()
            pytest.skip("running as root: chmod 0o500 does not stop writes")
        except PermissionError:
            pass
        with pytest.raises(OutputError) as err:
            write_text(folder / "metrics.json", "x")
        assert str(folder / "metrics.json") in str(err.value) and "cannot write in" in str(err.value)
    finally:
        folder.chmod(0o700)


def test_unwritable_output_folder_simulated(tmp_path, monkeypatch):
    """The same refusal where chmod cannot show it (root): the temporary file cannot be made."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError) as err:
        write_text(tmp_path / "metrics.json", "x")
    assert f"{tmp_path / 'metrics.json'}: cannot write in {tmp_path} (Permission denied)" == str(err.value)


def test_sigkill_during_a_write_keeps_previous_file(old_file):
    """A process killed in the middle of ``atomic_write`` never truncates the target. (Its
    temporary file stays behind: nothing can clean up after SIGKILL; it is a dot-file.)"""
    ready = old_file.parent.parent / "ready"
    script = textwrap.dedent(f"""
        import pathlib, time
        from segattack.io import atomic_write
        def writer(tmp):
            with open(tmp, "w") as f:
                f.write('{{"new": ')
                f.flush()
                pathlib.Path({str(ready)!r}).touch()
                time.sleep(60)
        atomic_write({str(old_file)!r}, writer)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists(), "the writer did not start"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert old_file.read_bytes() == OLD
    assert all(p.name.startswith(".metrics.json.") for p in old_file.parent.iterdir() if p != old_file)
