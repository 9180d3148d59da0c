"""Where each data set comes from: the errors for a data set that is not where it is looked for."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError

CAMVID_HELP = (
    "get CamVid with `python scripts/get_camvid.py` (downloads the SegNet tutorial's 11-class "
    "CamVid, checks it and unpacks it into data/CamVid; --dest DIR for another place), or point "
    "data.root=DIR (or SEGATTACK_DATA=DIR holding CamVid/) at a copy laid out as train/, "
    "trainannot/, val/, valannot/ (test/, testannot/ optional)")
CITYSCAPES_HELP = (
    "Cityscapes needs a free account: download leftImg8bit_trainvaltest.zip and "
    "gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com/downloads/ and unzip both "
    "into one folder, which then holds leftImg8bit/<split>/<city>/*_leftImg8bit.png and "
    "gtFine/<split>/<city>/*_gtFine_labelIds.png; point data.root=DIR (or SEGATTACK_DATA=DIR "
    "holding cityscapes/) at it")


def require_folders(name: str, root: Path, folders: list[Path], how_to_get: str) -> None:
    """Raise one error that names every missing folder and says how to get the data set."""
    missing = [f for f in folders if not f.is_dir()]
    if missing:
        absent = "" if root.is_dir() else f" ({root} does not exist)"
        raise DataError(f"{name}: missing {', '.join(map(str, missing))}{absent}. To fix: {how_to_get}")
