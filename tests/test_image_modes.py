"""Images of any PNG mode are read as the picture they hold, or refused naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segattack.data.base import read_png
from segattack.errors import DataError

GREY = np.array([[0, 64, 128], [192, 255, 32]], dtype=np.uint8)


def expected_rgb():
    return np.repeat(GREY[..., None], 3, axis=2)


@pytest.mark.parametrize("mode", ["L", "I;16", "P", "RGBA opaque", "LA opaque"])
def test_image_modes_read_as_their_picture(tmp_path, mode):
    path = tmp_path / "image.png"
    if mode == "I;16":  # 16-bit grey: it used to be read as all white
        Image.fromarray(GREY.astype(np.uint16) * 257).save(path)
        assert Image.open(path).mode.startswith("I")
    elif mode == "P":
        Image.fromarray(GREY).convert("P").save(path)
    elif mode == "RGBA opaque":
        Image.fromarray(np.dstack([expected_rgb(), np.full(GREY.shape, 255, np.uint8)])).save(path)
    elif mode == "LA opaque":
        Image.fromarray(GREY).convert("LA").save(path)
    else:
        Image.fromarray(GREY).save(path)
    assert np.array_equal(read_png(path, "RGB"), expected_rgb())


def test_transparent_image_refused_by_name(tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(np.dstack([expected_rgb(), np.full(GREY.shape, 10, np.uint8)])).save(path)
    with pytest.raises(DataError, match="transparent pixels") as err:
        read_png(path, "RGB")
    assert str(err.value).startswith(f"{path}: ")
