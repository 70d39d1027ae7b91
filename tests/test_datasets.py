"""Dataset readers on tiny trees written here in each layout, their up-front errors, and augmentation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cityserve.data.datasets import (
    ADE20KDataset,
    CityscapesDataset,
    CocoStuffDataset,
    PairedFolderDataset,
    SyntheticDataset,
    build_dataset,
)
from cityserve.data.transforms import Augment, apply, parse_size
from cityserve.data.validate import DatasetError, image_size
from cityserve.labels import get_label_set

H, W = 32, 64
CS_IDS = np.array([0, 7, 8, 11, 17, 21, 23, 24, 26, 33])  # valid Cityscapes label ids


def _rng(seed):
    return np.random.default_rng(seed)


def _blocks(rng, values, h=H, w=W, cell=8):
    """An id map of cell x cell blocks drawn from ``values`` (nearest resizing keeps blocks intact)."""
    small = rng.choice(values, size=(h // cell, w // cell))
    return np.kron(small, np.ones((cell, cell), dtype=small.dtype))


def _photo(rng, h=H, w=W):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_raw(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def _sample_to_uint8(img: torch.Tensor) -> np.ndarray:
    return np.round((img.numpy().transpose(1, 2, 0) + 1) * 127.5).astype(np.int64)


# ---- trees -----------------------------------------------------------------------------------------
def make_cityscapes(root: Path, n=3, split="train", city="zurich", seed=0):
    rng = _rng(seed)
    truth = {}
    for i in range(n):
        stem = f"{city}_000000_{i:06d}"
        photo, ids = _photo(rng), _blocks(rng, CS_IDS).astype(np.uint8)
        inst = ids.astype(np.uint16)
        inst[ids == 26] = 26000 + i  # a car instance
        _write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", photo)
        _write_raw(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
        _write_raw(root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png", inst)
        truth[stem] = (photo, ids, inst)
    return truth


def make_ade(root: Path, n=3, split="training", seed=1):
    rng = _rng(seed)
    truth = {}
    for i in range(n):
        stem = f"ADE_{split[:5]}_{i:08d}"
        photo = _photo(rng)
        ann = _blocks(rng, np.array([0, 1, 2, 7, 150])).astype(np.uint8)  # 0 = other, k = class k-1
        base = root / "ADEChallengeData2016"
        _write_rgb(base / "images" / split / f"{stem}.png", photo)  # PNG so pixels compare exactly
        _write_raw(base / "annotations" / split / f"{stem}.png", ann)
        truth[stem] = (photo, ann)
    return truth


def make_coco(root: Path, n=2, split="train", seed=2, with_inst=True):
    rng = _rng(seed)
    truth = {}
    for i in range(n):
        stem = f"{i:012d}"
        photo = _photo(rng)
        lab = _blocks(rng, np.array([0, 1, 91, 181, 255])).astype(np.uint8)  # 255 = unknown
        inst = rng.integers(0, 5, (H, W), dtype=np.uint8)
        _write_rgb(root / f"{split}_img" / f"{stem}.png", photo)
        _write_raw(root / f"{split}_label" / f"{stem}.png", lab)
        if with_inst:
            _write_raw(root / f"{split}_inst" / f"{stem}.png", inst)
        truth[stem] = (photo, lab, inst)
    return truth


# ---- readers ---------------------------------------------------------------------------------------
def test_cityscapes_reader_maps_ids_as_they_are(tmp_path):
    truth = make_cityscapes(tmp_path, n=3)
    make_cityscapes(tmp_path, n=1, split="val", city="lindau", seed=5)
    ds = build_dataset("cityscapes", tmp_path, size=None)
    assert isinstance(ds, CityscapesDataset) and len(ds) == 3
    assert len(build_dataset("cityscapes", tmp_path, split="val", size=None)) == 1
    for s in ds:
        photo, ids, inst = truth[s["name"]]
        assert s["labels"].dtype == torch.int64 and s["labels"].shape == (1, H, W)
        assert s["instances"].dtype == torch.int32 and s["instances"].shape == (1, H, W)
        assert s["image"].dtype == torch.float32 and s["image"].shape == (3, H, W)
        assert -1.0 <= s["image"].min() and s["image"].max() <= 1.0
        np.testing.assert_array_equal(s["labels"][0].numpy(), ids)
        np.testing.assert_array_equal(s["instances"][0].numpy(), inst)  # 16-bit ids survive
        np.testing.assert_array_equal(_sample_to_uint8(s["image"]), photo)  # RGB, not BGR


def test_ade20k_reader_shifts_ids_and_maps_other_to_dontcare(tmp_path):
    truth = make_ade(tmp_path, n=2)
    make_ade(tmp_path, n=1, split="validation")
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):  # either folder works
        ds = build_dataset("ade20k", root, size=None)
        assert isinstance(ds, ADE20KDataset) and len(ds) == 2
    assert len(build_dataset("ade20k", tmp_path, split="val", size=None)) == 1
    s = ds[0]
    photo, ann = truth[s["name"]]
    expected = np.where(ann == 0, 150, ann.astype(np.int64) - 1)  # SPADE: 0 -> dontcare 150, k -> k-1
    np.testing.assert_array_equal(s["labels"][0].numpy(), expected)
    assert set(np.unique(s["labels"]).tolist()) <= {0, 1, 6, 149, 150}
    assert not s["instances"].any()  # no instance maps in ADE20K
    np.testing.assert_array_equal(_sample_to_uint8(s["image"]), photo)


def test_cocostuff_reader_maps_unknown_to_182(tmp_path):
    truth = make_coco(tmp_path)
    ds = build_dataset("coco-stuff", tmp_path, size=None)
    assert isinstance(ds, CocoStuffDataset) and len(ds) == 2
    s = ds[1]
    photo, lab, inst = truth[s["name"]]
    np.testing.assert_array_equal(s["labels"][0].numpy(), np.where(lab == 255, 182, lab))
    np.testing.assert_array_equal(s["instances"][0].numpy(), inst)


def test_paired_folder_reads_color_and_id_labels(tmp_path):
    rng = _rng(3)
    cs = get_label_set("cityscapes")
    ids_a = _blocks(rng, np.array([7, 11, 21, 23, 26]))  # colors of these ids are distinct
    ids_b = _blocks(rng, CS_IDS).astype(np.uint8)
    _write_rgb(tmp_path / "images" / "a.jpg", _photo(rng))
    _write_rgb(tmp_path / "labels" / "a.png", cs.palette[ids_a])  # color PNG
    _write_rgb(tmp_path / "images" / "b.png", _photo(rng))
    _write_raw(tmp_path / "labels" / "b.png", ids_b)  # id PNG
    ds = build_dataset("paired", tmp_path, label_set="cityscapes", size=None, split=None)
    assert isinstance(ds, PairedFolderDataset) and [r.name for r in ds.records] == ["a", "b"]
    np.testing.assert_array_equal(ds[0]["labels"][0].numpy(), ids_a)
    np.testing.assert_array_equal(ds[1]["labels"][0].numpy(), ids_b)
    assert not ds[0]["instances"].any()


def test_synthetic_dataset_generates_valid_samples():
    ds = build_dataset("synthetic", seeds=[3, 4], size=(32, 64))
    assert isinstance(ds, SyntheticDataset) and len(ds) == 2
    s = ds[0]
    assert s["labels"].shape == (1, 32, 64) and s["labels"].dtype == torch.int64
    assert s["image"].shape == (3, 32, 64) and s["instances"].dtype == torch.int32
    assert int(s["labels"].max()) < 34 and s["name"] == "synthetic_000003"
    assert len(np.unique(s["labels"])) >= 3  # a street scene, not one flat class
    np.testing.assert_array_equal(ds[0]["labels"], s["labels"])  # a seed is a scene


# ---- errors before training ------------------------------------------------------------------------
def test_missing_pair_is_named_at_build_time(tmp_path):
    make_cityscapes(tmp_path, n=3)
    gone = tmp_path / "gtFine/train/zurich/zurich_000000_000001_gtFine_labelIds.png"
    gone.unlink()
    (tmp_path / "gtFine/train/zurich/zurich_000000_000002_gtFine_instanceIds.png").unlink()
    with pytest.raises(DatasetError) as e:
        build_dataset("cityscapes", tmp_path)
    msg = str(e.value)
    assert "2 problems" in msg and "\n" not in msg
    assert "zurich_000000_000001_leftImg8bit.png: no label map" in msg and gone.name in msg
    assert "zurich_000000_000002_leftImg8bit.png: no instance map" in msg


def test_wrong_size_and_unknown_ids_are_named(tmp_path):
    make_cityscapes(tmp_path, n=3)
    gt = tmp_path / "gtFine/train/zurich"
    _write_raw(gt / "zurich_000000_000000_gtFine_labelIds.png", np.full((H // 2, W // 2), 7, np.uint8))
    bad = np.full((H, W), 7, np.uint8)
    bad[0, :3] = 40
    bad[1, 0] = 200
    _write_raw(gt / "zurich_000000_000002_gtFine_labelIds.png", bad)
    ds = CityscapesDataset(tmp_path)  # listing alone finds nothing wrong ...
    with pytest.raises(DatasetError) as e:  # ... validate() scans everything before the first sample
        ds.validate()
    msg = str(e.value)
    assert "zurich_000000_000000_gtFine_labelIds.png: label map is 16x32 (HxW) but its photo" in msg
    assert "zurich_000000_000002_gtFine_labelIds.png: unknown label value(s) 40, 200" in msg
    assert "zurich_000000_000001" not in msg
    _write_raw(gt / "zurich_000000_000001_gtFine_instanceIds.png", np.zeros((H, W + 2), np.uint16))
    with pytest.raises(DatasetError, match=r"000001_gtFine_instanceIds\.png: instance map is 32x66"):
        ds.validate()


def test_unknown_ade_and_coco_values_are_named(tmp_path):
    make_ade(tmp_path / "ade", n=2)
    ann = tmp_path / "ade/ADEChallengeData2016/annotations/training/ADE_train_00000001.png"
    _write_raw(ann, np.full((H, W), 151, np.uint8))  # 151 would be class 150: no such class
    with pytest.raises(DatasetError, match=r"ADE_train_00000001\.png: unknown label value\(s\) 151"):
        build_dataset("ade20k", tmp_path / "ade")
    make_coco(tmp_path / "coco", n=2)
    lab = tmp_path / "coco/train_label/000000000000.png"
    _write_raw(lab, np.full((H, W), 200, np.uint8))  # 182..254 mean nothing in COCO-Stuff files
    with pytest.raises(DatasetError, match=r"000000000000\.png: unknown label value\(s\) 200"):
        build_dataset("coco-stuff", tmp_path / "coco")


def test_many_problems_are_counted_not_all_listed(tmp_path):
    rng = _rng(4)
    for i in range(9):
        _write_rgb(tmp_path / "images" / f"img{i}.png", _photo(rng))
    _write_raw(tmp_path / "labels" / "stray.png", np.zeros((H, W), np.uint8))
    with pytest.raises(DatasetError) as e:
        build_dataset("paired", tmp_path, label_set="cityscapes")
    msg = str(e.value)
    assert "10 problems" in msg and "(and 5 more)" in msg and "img0.png: no label map" in msg


def test_bad_roots_are_named(tmp_path):
    with pytest.raises(DatasetError, match="leftImg8bit"):
        build_dataset("cityscapes", tmp_path)
    with pytest.raises(DatasetError, match="not a directory"):
        build_dataset("ade20k", tmp_path / "nope")


def test_image_size_reads_headers(tmp_path):
    _write_rgb(tmp_path / "a.png", np.zeros((37, 51, 3), np.uint8))
    _write_rgb(tmp_path / "a.jpg", np.zeros((29, 45, 3), np.uint8))
    assert image_size(tmp_path / "a.png") == (37, 51)
    assert image_size(tmp_path / "a.jpg") == (29, 45)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="junk.png"):
        image_size(tmp_path / "junk.png")


# ---- augmentation ----------------------------------------------------------------------------------
def _marked_sample(h=48, w=80):
    """A photo whose color encodes its label: color = PALETTE[label]; a one-off marker in one corner."""
    rng = _rng(7)
    ids = _blocks(rng, np.arange(1, 10), h, w, cell=16).astype(np.int64)
    ids[:16, :16] = 0  # the marker: id 0 only in the top-left block
    palette = (np.arange(10)[:, None] * np.array([25, 11, 7])[None] % 256).astype(np.uint8)
    palette[0] = (255, 0, 255)
    inst = (ids * 1000 + 5).astype(np.int32)
    return palette[ids], ids, inst, palette


@pytest.mark.parametrize("size", [(32, 64), (24, 24), (64, 128)])
def test_augmentation_moves_photo_labels_and_instances_together(size):
    photo, ids, inst, palette = _marked_sample()
    aug = Augment(flip=True, brightness=0.0, contrast=0.0, scale=(1.0, 1.5), random_crop=True)
    flips = set()
    for seed in range(24):
        img, lab, ins = apply(photo, ids, inst, size, aug, np.random.default_rng(seed))
        assert img.shape == (3, *size) and lab.shape == size and ins.shape == size
        assert lab.dtype == np.int64 and ins.dtype == np.int32
        np.testing.assert_array_equal(ins, lab * 1000 + 5)  # instances follow labels pixel for pixel
        rgb = np.round((img.transpose(1, 2, 0) + 1) * 127.5)
        # Away from block edges (where bilinear/area blending mixes colors) the photo shows its label.
        pad = np.pad(lab, 2, constant_values=-1)  # (beyond the crop the photo blends unseen pixels)
        interior = np.ones_like(lab, bool)
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                interior &= pad[2 + dy : 2 + dy + size[0], 2 + dx : 2 + dx + size[1]] == lab
        assert interior.mean() > 0.2
        np.testing.assert_allclose(rgb[interior], palette[lab[interior]], atol=1.0)
        if (lab == 0).any():  # the marker stays in a left/right corner: where tells the flip
            xs = np.nonzero((lab == 0).any(0))[0]
            flips.add(bool(xs.mean() > size[1] / 2))
    assert flips == {True, False}  # both flipped and unflipped samples occurred


def test_color_jitter_changes_photo_only():
    photo, ids, inst, _ = _marked_sample()
    plain = apply(photo, ids, inst, (32, 64), None)
    jit = apply(
        photo,
        ids,
        inst,
        (32, 64),
        Augment(flip=False, brightness=0.3, contrast=0.3, random_crop=False),
        np.random.default_rng(0),
    )
    np.testing.assert_array_equal(plain[1], jit[1])
    np.testing.assert_array_equal(plain[2], jit[2])
    assert np.abs(plain[0] - jit[0]).mean() > 0.01
    assert jit[0].min() >= -1.0 and jit[0].max() <= 1.0


def test_resize_keeps_aspect_and_crops_centre():
    # A 4:3 frame to 2:1 loses rows top and bottom: the centre row survives, the top row does not.
    ids = np.repeat(np.arange(60, dtype=np.int64)[:, None], 80, axis=1)  # row index as id
    photo = np.zeros((60, 80, 3), np.uint8)
    _, lab, _ = apply(photo, ids, ids.astype(np.int32), (20, 40), None)
    assert lab.shape == (20, 40)
    rows = lab[:, 0]
    assert rows.min() > 5 and rows.max() < 54 and np.all(np.diff(rows) > 0)  # cropped, in order
    assert abs(rows.mean() - 29.5) < 2  # centred


def test_dataset_size_and_augment_through_build(tmp_path):
    make_cityscapes(tmp_path, n=2)
    ds = build_dataset("cityscapes", tmp_path, size="square@24", augment=True)
    torch.manual_seed(0)
    s = ds[0]
    assert s["image"].shape == (3, 24, 24) and s["labels"].shape == (1, 24, 24)
    assert set(np.unique(s["labels"]).tolist()) <= set(CS_IDS.tolist())
    assert parse_size("2:1@480") == (480, 960) and parse_size("256x512") == (256, 512)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["labels"].shape == (2, 1, 24, 24) and len(batch["name"]) == 2
