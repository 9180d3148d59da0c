"""Datamodules: what each sample looks like, label mappings, augmentation sizes, bad inputs."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_png

from segattack.class_weights import class_weights
from segattack.data import (
    IGNORE_INDEX,
    CamVidDataModule,
    CityscapesDataModule,
    SyntheticDataModule,
)
from segattack.errors import ConfigError, DataError


def check_sample(x, y, size, num_classes):
    """docs/design.md, "Data", for one sample."""
    assert x.dtype == torch.float32 and x.shape == (3, *size)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.dtype == torch.int64 and y.shape == tuple(size)
    values = set(y.unique().tolist())
    assert values <= set(range(num_classes)) | {IGNORE_INDEX}, values


# --- synthetic -----------------------------------------------------------------------------------

def test_synthetic_samples():
    dm = SyntheticDataModule(num_train=4, num_val=2, num_test=2, image_size=(48, 64), seed=1)
    assert dm.num_classes == 5 and len(dm.palette) == 5
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        ds = dm.dataset(split)
        assert len(ds) == n
        for i in range(n):
            check_sample(*ds[i], (48, 64), 5)
    x, y = ds[0]
    assert (y == IGNORE_INDEX).any(), "scenes carry a small void patch"
    assert len(set(y.unique().tolist()) - {IGNORE_INDEX}) >= 3


def test_synthetic_is_deterministic_by_seed_and_split():
    def sample(seed, split, i=0):
        return SyntheticDataModule(image_size=(32, 48), seed=seed).dataset(split)[i]

    a, b = sample(3, "train"), sample(3, "train")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], sample(3, "val")[0])
    assert not torch.equal(a[0], sample(4, "train")[0])
    assert not torch.equal(a[0], sample(3, "train", 1)[0])


@pytest.mark.parametrize("size", [(16, 16), (17, 40), (32, 48), (40, 24)])
def test_synthetic_small_sizes(size):
    ds = SyntheticDataModule(num_train=20, image_size=size).dataset("train")
    for i in range(len(ds)):
        check_sample(*ds[i], size, 5)


def test_synthetic_too_small_raises():
    with pytest.raises(ValueError, match=r"image_size=\[8, 64\]"):
        SyntheticDataModule(image_size=(8, 64))


def test_synthetic_dataloader_batches_and_limit():
    dm = SyntheticDataModule(num_train=10, num_val=3, image_size=(32, 48), batch_size=4, limit=6)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 48) and y.shape == (4, 32, 48) and y.dtype == torch.int64
    assert len(dm.dataset("train")) == 6 and len(dm.dataset("val")) == 3
    with pytest.raises(ValueError, match="nosplit"):
        dm.dataset("nosplit")
    freq = dm.class_frequencies("train")
    assert freq.shape == (5,) and math.isclose(float(freq.sum()), 1.0, rel_tol=1e-5)


# --- CamVid on a tiny tree -----------------------------------------------------------------------

H, W = 48, 64


def camvid_label(seed: int) -> np.ndarray:
    """Class ids 0..10 plus void (11), in blocks so that resizing keeps them."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 12, size=(H // 8, W // 8)).astype(np.uint8)
    label[0, 0] = 11
    return np.kron(label, np.ones((8, 8), dtype=np.uint8))


def make_camvid(root: Path, splits=("train", "val"), n=3) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for i in range(n):
            write_png(root / split / f"img{i:03d}.png", rng.integers(0, 256, (H, W, 3)))
            write_png(root / f"{split}annot" / f"img{i:03d}.png", camvid_label(hash((split, i)) % 1000))
    return root


@pytest.fixture
def camvid(tmp_path) -> Path:
    return make_camvid(tmp_path / "CamVid")


def test_camvid_samples_and_void_mapping(camvid):
    dm = CamVidDataModule(camvid, image_size=(H, W))
    assert dm.num_classes == 11
    for split in ("train", "val"):
        ds = dm.dataset(split, train=False)
        assert len(ds) == 3
        for i in range(3):
            x, y = ds[i]
            check_sample(x, y, (H, W), 11)
            raw = np.array(__import__("PIL.Image").Image.open(ds.pairs[i][1]))
            expected = np.where(raw == 11, IGNORE_INDEX, raw)
            assert np.array_equal(y.numpy(), expected)
            image = np.array(__import__("PIL.Image").Image.open(ds.pairs[i][0]))
            assert torch.allclose(x, torch.from_numpy(image).permute(2, 0, 1).float() / 255)
    assert (dm.dataset("val")[0][1] == IGNORE_INDEX).any()


def test_camvid_eval_resizes_to_image_size(camvid):
    dm = CamVidDataModule(camvid, image_size=(24, 32))
    x, y = dm.dataset("val")[0]
    check_sample(x, y, (24, 32), 11)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (3, 3, 24, 32)


def test_camvid_augmentation_gives_crop_size(camvid):
    dm = CamVidDataModule(camvid, image_size=(H, W), crop_size=(32, 40), scale=(0.5, 1.5), jitter=0.3)
    train = dm.dataset("train")
    for _ in range(4):  # random scale below 1 pads with ignore, above 1 crops: same size always
        for i in range(len(train)):
            check_sample(*train[i], (32, 40), 11)
    check_sample(*dm.dataset("val")[0], (H, W), 11)
    no_crop = CamVidDataModule(camvid, image_size=(H, W), scale=(0.5, 0.6), jitter=0).dataset("train")
    x, y = no_crop[0]
    check_sample(x, y, (H, W), 11)
    assert (y == IGNORE_INDEX).float().mean() > 0.3, "shrunk images are padded with ignore"
    # the shrunk image sits in the middle: its border is padding, black with ignore labels
    assert (y[0] == IGNORE_INDEX).all() and (y[:, 0] == IGNORE_INDEX).all()
    assert (x[:, 0] == 0).all() and (x[:, :, 0] == 0).all()


def test_whole_frame_augmentation_keeps_the_model_size(camvid):
    """``whole=True`` (a universal fit with fit_augment): augmented, but no training crop."""
    dm = CamVidDataModule(camvid, image_size=(H, W), crop_size=(32, 40), scale=(0.5, 1.5), jitter=0.3)
    augmented = dm.dataset("train", whole=True)
    plain = dm.dataset("train", train=False)
    changed = 0
    for i in range(len(augmented)):
        x, y = augmented[i]
        check_sample(x, y, (H, W), 11)
        changed += not torch.equal(x, plain[i][0])
    assert changed == len(augmented)


def test_camvid_augmentation_off(camvid):
    dm = CamVidDataModule(camvid, image_size=(H, W), crop_size=(32, 40), augment=False)
    a, b = dm.dataset("train")[0], dm.dataset("train")[0]
    assert a[0].shape == (3, H, W) and torch.equal(a[0], b[0])


def test_camvid_test_split_is_optional(camvid):
    dm = CamVidDataModule(camvid, image_size=(H, W))
    dm.train_dataloader(), dm.val_dataloader()
    with pytest.raises(DataError, match="test"):
        dm.test_dataloader()


def test_camvid_class_frequencies(camvid):
    dm = CamVidDataModule(camvid, image_size=(H, W))
    counts = np.zeros(11)
    for _, label in dm.pairs("train"):
        raw = np.array(__import__("PIL.Image").Image.open(label))
        counts += np.bincount(raw.ravel(), minlength=12)[:11]
    freq = dm.class_frequencies("train")
    assert torch.allclose(freq, torch.from_numpy(counts / counts.sum()).float())


def make_sequences(root: Path) -> Path:
    """A training split of two sequences (seqA: 3 frames, seqB: 2, each frame its own label) and
    no val folder: a held-out sequence must not need one."""
    rng = np.random.default_rng(1)
    names = [f"seqA_{i:05d}.png" for i in range(3)] + [f"seqB_{i:05d}.png" for i in range(2)]
    for seed, name in enumerate(names):
        write_png(root / "train" / name, rng.integers(0, 256, (H, W, 3)))
        write_png(root / "trainannot" / name, camvid_label(100 + seed))
    return root


def test_camvid_holdout_sequence_serves_as_val(tmp_path):
    root = make_sequences(tmp_path / "CamVid")
    dm = CamVidDataModule(root, image_size=(H, W), holdout=["seqB"])
    train, val = dm.pairs("train"), dm.pairs("val")
    assert [p[0].name for p in train] == ["seqA_00000.png", "seqA_00001.png", "seqA_00002.png"]
    assert [p[0].name for p in val] == ["seqB_00000.png", "seqB_00001.png"]
    assert all(p[0].parent == root / "train" for p in val)  # read from train/, not val/
    x, y = dm.dataset("val")[1]  # evaluated as val is: whole frames, no augmentation
    assert x.shape == (3, H, W) and torch.equal(y, CamVidDataModule(root, (H, W)).dataset("train", train=False)[4][1])
    # the class weights come from the frames left in train
    counts = sum(np.bincount(np.array(__import__("PIL.Image").Image.open(label)).ravel(), minlength=12)[:11]
                 for _, label in train)
    assert torch.allclose(dm.class_frequencies("train"), torch.from_numpy(counts / counts.sum()).float())


@pytest.mark.parametrize("holdout, message", [
    (["seqC"], ("data.holdout=['seqC']: ['seqC'] not among the training sequences of {train} "
                "(found: seqA (3 frames), seqB (2 frames))")),
    (["seqA", "seqB"], "data.holdout=['seqA', 'seqB']: holds out every training sequence"),
])
def test_camvid_bad_holdout_names_the_sequences(tmp_path, holdout, message):
    root = make_sequences(tmp_path / "CamVid")
    with pytest.raises(DataError) as info:
        CamVidDataModule(root, holdout=holdout).dataset("train")
    assert message.format(train=root / "train") in str(info.value)


# --- Cityscapes on a tiny official-layout tree ---------------------------------------------------

CS_NAMES = {"train": [("aachen", "aachen_000000_000019"), ("bochum", "bochum_000000_000313")],
            "val": [("frankfurt", "frankfurt_000000_000294")]}


def make_cityscapes(root: Path, label: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    for split, items in CS_NAMES.items():
        for city, stem in items:
            write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                      rng.integers(0, 256, (*label.shape, 3)))
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label)
            # the other gtFine files of the official layout must be ignored
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_color.png",
                      rng.integers(0, 256, (*label.shape, 3)))
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png", label)
    return root


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    ids = np.array([[7, 26, 0, 1], [8, 33, 23, 255], [6, 24, 11, 4]], dtype=np.uint8)
    label = np.kron(ids, np.ones((8, 8), dtype=np.uint8))  # 24x32
    root = make_cityscapes(tmp_path / "cityscapes", label)
    dm = CityscapesDataModule(root, image_size=(24, 32))
    assert dm.num_classes == 19
    train = dm.dataset("train", train=False)
    assert len(train) == 2 and len(dm.dataset("val")) == 1
    assert train.pairs[0][0].name == "aachen_000000_000019_leftImg8bit.png"
    assert train.pairs[0][1].name == "aachen_000000_000019_gtFine_labelIds.png"
    x, y = train[0]
    check_sample(x, y, (24, 32), 19)
    expected = np.array([[0, 13, 255, 255], [1, 18, 10, 255], [255, 11, 2, 255]])
    assert np.array_equal(y[::8, ::8].numpy(), expected)
    assert np.array_equal(y.numpy(), np.kron(expected, np.ones((8, 8), dtype=np.int64)))


def test_cityscapes_unknown_label_id_raises(tmp_path):
    root = make_cityscapes(tmp_path / "cityscapes", np.full((16, 32), 40, dtype=np.uint8))
    ds = CityscapesDataModule(root, image_size=(16, 32)).dataset("val")
    with pytest.raises(DataError, match=r"frankfurt_000000_000294_gtFine_labelIds\.png.*\[40\]"):
        ds[0]


def test_cityscapes_missing_split_names_folder(tmp_path):
    root = make_cityscapes(tmp_path / "cityscapes", np.zeros((16, 32), dtype=np.uint8))
    with pytest.raises(DataError, match=r"leftImg8bit/test"):
        CityscapesDataModule(root).dataset("test")


# --- bad inputs: each a DataError naming the file or folder ---------------------------------------

def test_missing_root_names_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nowhere" / "train")):
        CamVidDataModule(tmp_path / "nowhere").train_dataloader()


def test_missing_split_folder(camvid):
    shutil.rmtree(camvid / "valannot")
    with pytest.raises(DataError, match=str(camvid / "valannot")):
        CamVidDataModule(camvid).val_dataloader()


def test_image_without_label(camvid):
    (camvid / "trainannot" / "img001.png").unlink()
    with pytest.raises(DataError, match="img001.png.*no label") as info:
        CamVidDataModule(camvid).dataset("train")
    assert str(camvid / "train" / "img001.png") in str(info.value)


def test_image_label_size_mismatch(camvid):
    write_png(camvid / "valannot" / "img002.png", np.zeros((H, W - 8), dtype=np.uint8))
    ds = CamVidDataModule(camvid, image_size=(H, W)).dataset("val")
    ds[0]
    with pytest.raises(DataError, match="does not match") as info:
        ds[2]
    assert str(camvid / "valannot" / "img002.png") in str(info.value)


def test_label_values_outside_classes(camvid):
    label = camvid_label(0)
    label[5, 5] = 200
    write_png(camvid / "trainannot" / "img000.png", label)
    dm = CamVidDataModule(camvid, image_size=(H, W))
    pattern = rf"{camvid / 'trainannot' / 'img000.png'}.*\[200\]"
    with pytest.raises(DataError, match=pattern):
        dm.dataset("train")[0]
    with pytest.raises(DataError, match=pattern):  # also caught before training starts
        dm.class_frequencies("train")


def test_colour_label_is_rejected(camvid):
    write_png(camvid / "valannot" / "img000.png", np.zeros((H, W, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"valannot/img000\.png.*one channel"):
        CamVidDataModule(camvid).dataset("val")[0]


@pytest.mark.parametrize("which", ["val", "valannot"])
def test_unreadable_png(camvid, which):
    path = camvid / which / "img001.png"
    path.write_bytes(b"this is not a PNG file\x00\x01\x02" * 10)
    with pytest.raises(DataError, match="cannot read") as info:
        CamVidDataModule(camvid).dataset("val")[1]
    assert str(path) in str(info.value)


def test_truncated_png(camvid):
    path = camvid / "val" / "img000.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="cannot read") as info:
        CamVidDataModule(camvid).dataset("val")[0]
    assert str(path) in str(info.value)


def test_empty_split(tmp_path):
    root = make_camvid(tmp_path / "CamVid", splits=("train",))
    (root / "val").mkdir()
    (root / "valannot").mkdir()
    with pytest.raises(DataError, match=rf"{root / 'val'}.*empty"):
        CamVidDataModule(root).val_dataloader()


# --- class weights ------------------------------------------------------------------------------

FREQ = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])


def test_class_weights_enet():
    w = class_weights(FREQ, "enet")
    expected = [1 / math.log(1.02 + p) for p in FREQ.tolist()]
    assert w.dtype == torch.float32
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    # 1/ln(1.02) ~ 50.5 bounds the weight of the rarest class
    assert class_weights(torch.tensor([1.0, 0.0]), "enet")[1] == pytest.approx(1 / math.log(1.02))


def test_class_weights_median():
    w = class_weights(FREQ, "median")
    assert w.tolist() == pytest.approx([0.15 / p for p in FREQ.tolist()], rel=1e-6)
    assert w[2] == pytest.approx(1.0)


def test_class_weights_absent_class_gets_zero():
    w = class_weights(torch.tensor([0.6, 0.3, 0.1, 0.0, 0.0]), "median")
    assert torch.isfinite(w).all() and w[3] == 0 and w[4] == 0


@pytest.mark.parametrize("method", [None, "none"])
def test_class_weights_none(method):
    assert class_weights(FREQ, method) is None


def test_class_weights_unknown_method():
    with pytest.raises(ConfigError, match="class_weighting=.inverse.*enet.*median.*none"):
        class_weights(FREQ, "inverse")


# --- the real CamVid, where present ---------------------------------------------------------------

@pytest.mark.camvid
def test_real_camvid(camvid_root):
    dm = CamVidDataModule(camvid_root)
    assert len(dm.pairs("train")) == 367 and len(dm.pairs("val")) == 101
    x, y = dm.dataset("val")[0]
    check_sample(x, y, (360, 480), 11)
    assert (y == IGNORE_INDEX).any() or len(y.unique()) > 5


def test_camvid_augmentation_follows_the_seed(camvid):
    """albumentations 2 seeds its own generator from the OS; the dataset reseeds it from torch's,
    so the run's seed fixes the augmentation (docs/design.md, "Resuming")."""

    def samples(seed):
        torch.manual_seed(seed)
        train = CamVidDataModule(camvid, image_size=(H, W), crop_size=(32, 40)).dataset("train")
        return torch.stack([train[i % 3][0] for i in range(6)])

    a = samples(0)
    assert torch.equal(a, samples(0))
    assert not torch.equal(a, samples(1))
    assert not torch.equal(a[:3], a[3:]), "each draw differs (not one fixed augmentation)"


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_camvid_augmentation_in_workers(camvid):
    """Two DataLoader workers augment the same image differently (forked copies of one generator
    would repeat each other), and the same seed repeats the whole epoch."""
    from torch.utils.data import DataLoader

    def epoch(seed):
        torch.manual_seed(seed)
        ds = CamVidDataModule(camvid, image_size=(H, W), crop_size=(32, 40)).dataset("train")
        ds.pairs = [ds.pairs[0]] * 4  # worker 0 gets samples 0 and 2, worker 1 gets 1 and 3
        return torch.cat([x for x, _ in DataLoader(ds, batch_size=1, num_workers=2)])

    a = epoch(0)
    assert torch.equal(a, epoch(0))
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[2], a[3])
    assert not torch.equal(a[0], a[2])
