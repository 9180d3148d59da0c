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


def test_bad_label_found_before_any_image_is_attacked(tmp_path, weights, capsys, monkeypatch):
    """The last label of the split is bad: the run stops before the first image is attacked and
    leaves no outputs (adversarial_png/ of the images before it used to stay)."""
    from helpers import SIZE, compose, write_png
    from test_bad_input import outputs

    from segattack.attacks.module import PerturbationModule
    from segattack.attacks.task import run_attack
    from segattack.cli import run_task

    for split in ("train", "val"):
        for i in range(3):
            write_png(tmp_path / "data" / split / f"0001TP_{i:05d}.png", np.full((*SIZE, 3), 100))
            write_png(tmp_path / "data" / f"{split}annot" / f"0001TP_{i:05d}.png",
                      np.full(SIZE, 40 if (split, i) == ("val", 2) else 1))
    monkeypatch.setattr(PerturbationModule, "test_step", lambda *a: pytest.fail("an image was attacked"))
    cfg = compose("attack", tmp_path / "run", [
        "attack=tanh", "source_models=[enet]", "weights.erfnet=null", "logger=none", "torch_threads=1",
        "num_figures=1", "trainer.enable_progress_bar=false", "data=camvid", f"data.root={tmp_path / 'data'}",
                                                f"data.image_size=[{SIZE[0]},{SIZE[1]}]", "data.batch_size=1",
                                                f"weights.enet={weights}", "region=full", "export_png=true"])
    with pytest.raises(SystemExit) as exit_:
        run_task(run_attack, cfg)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'data' / 'valannot' / '0001TP_00002.png'}: label values [40]")
    assert outputs(tmp_path / "run") == []
