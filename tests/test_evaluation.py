"""``cityserve eval`` on synthetic seeds and on dataset folders, and the segmenter-feature Fréchet distance.

The folder tests write held-out synthetic scenes as a Cityscapes tree (``leftImg8bit/val`` +
``gtFine/val``) and check that evaluating the folder gives exactly what evaluating the seeds gives: the
readers, the resizing and the scoring agree with the seeds' protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _helpers_spade import tiny_card, tiny_config
from conftest import REPO

from cityserve.cards import load_card
from cityserve.cli import main
from cityserve.data.synthetic import generate_scene, scene_stem, write_scene
from cityserve.evaluation import Segmenter, evaluate_generator
from cityserve.metrics import frechet_from_features
from cityserve.models.encoder_features import feature_vectors

SEGMENTER = REPO / "models" / "demo" / "segmenter-demo.card.json"
SEEDS = (10000, 10001, 10002)


def test_frechet_on_hand_made_features():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(600, 16)) @ rng.normal(size=(16, 16))  # correlated features
    assert frechet_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    b = rng.normal(size=(600, 16)) @ rng.normal(size=(16, 16))
    shifts = [frechet_from_features(a, a + s) for s in (0.5, 1.0, 2.0)]
    assert shifts == pytest.approx([16 * 0.25, 16 * 1.0, 16 * 4.0], rel=1e-6)  # same covariance: ||shift||^2
    assert frechet_from_features(a, b) > 1.0  # another covariance
    scaled = [frechet_from_features(a, a * s) for s in (1.1, 1.5, 3.0)]
    assert 0 < scaled[0] < scaled[1] < scaled[2]
    with pytest.raises(ValueError, match="feature vectors"):
        frechet_from_features(a[:1], a[:1])


def test_feature_vectors_pool_positions_or_globally():
    fmap = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 4)
    pos = feature_vectors(fmap, "positions")
    assert pos.shape == (16, 3) and pos.dtype == np.float64
    np.testing.assert_array_equal(pos[5], fmap[0, :, 1, 1].numpy())  # image 0, row 1, column 1
    glob = feature_vectors(fmap, "global")
    np.testing.assert_allclose(glob, fmap.double().mean((2, 3)).numpy())


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(load_card(SEGMENTER), native_size=True, features="positions")


def test_segmenter_features_come_from_the_segmenting_pass(segmenter):
    """The hook's features: the same photo twice gives distance 0; blurred or color-shifted photos are far,
    the stronger change farther; the ids are those of a pass without features."""
    import cv2

    photos = np.stack([generate_scene(s, 128, 256).photo for s in SEEDS + (10003,)])
    ids, f = segmenter.segment(photos)
    assert f.shape == (4 * 4 * 8, 224)  # FCHarDNet at 128x256: a 4x8 stride-32 map of 224 channels per photo
    np.testing.assert_array_equal(ids, Segmenter(segmenter.card, native_size=True)(photos))
    _, f_again = segmenter.segment(photos)
    np.testing.assert_array_equal(f, f_again)  # deterministic
    scale = np.trace(np.cov(f, rowvar=False))
    assert abs(frechet_from_features(f, f_again)) < 1e-6 * scale  # 0 up to rounding (rank-deficient covariance)
    blur = [
        frechet_from_features(f, segmenter.segment(np.stack([cv2.GaussianBlur(p, (0, 0), s) for p in photos]))[1])
        for s in (1.0, 3.0)
    ]
    assert 0 < blur[0] < blur[1]
    tinted = np.clip(photos.astype(int) + [60, -30, -30], 0, 255).astype(np.uint8)
    assert frechet_from_features(f, segmenter.segment(tinted)[1]) > blur[0]


@pytest.fixture(scope="module")
def generator_card(tmp_path_factory):
    return tiny_card(tmp_path_factory.mktemp("gen"), tiny_config(crop_size=256, label_nc=34), name="tiny-spade")


@pytest.fixture(scope="module")
def cityscapes_val(tmp_path_factory):
    """Seeds 10000-10002 at 128x256 as a Cityscapes tree (val split, one city)."""
    root = tmp_path_factory.mktemp("cityscapes")
    for seed in SEEDS:
        write_scene(generate_scene(seed, 128, 256), root, scene_stem(seed), layout="cityscapes", split="val")
    return root


def test_eval_generator_reports_segfeat_frechet(generator_card, tmp_path):
    out = tmp_path / "gen.json"
    seeds = f"{SEEDS[0]}-{SEEDS[-1]}"
    args = ["eval", "generator", str(generator_card), "--segmenter", str(SEGMENTER), "--seeds", seeds]
    assert main(args + ["--out", str(out), "--no-progress"]) == 0
    r = json.loads(out.read_text())
    assert r["segfeat_frechet"] > 0 and r["segfeat_frechet_features"]["n_vectors"] == 3 * 32
    assert r["segfeat_frechet_features"]["dims"] == 224 and "not FID" in r["segfeat_frechet_features"]["note"]
    assert "fid" not in r
    md = out.with_suffix(".md").read_text()
    assert f"| {r['segfeat_frechet']:.3f} | 0 |" in md and "stand-in for FID" in md
    assert r["data"] == "synthetic" and r["seeds"] == seeds and r["n_images"] == 3
    # The same evaluation in process: every figure identical (deterministic).
    again = evaluate_generator(load_card(generator_card), load_card(SEGMENTER), list(SEEDS), progress=False)
    assert again.segfeat_frechet == r["segfeat_frechet"] and again.l1 == r["l1"]
    assert again.consistency_real.miou == r["segmentation_consistency"]["miou_real"]


def test_eval_on_a_cityscapes_folder_matches_the_seeds(cityscapes_val, generator_card, tmp_path):
    for what, model in (("segmenter", SEGMENTER), ("generator", generator_card)):
        extra = ["--segmenter", str(SEGMENTER)] if what == "generator" else []
        seeds_out, folder_out = tmp_path / f"{what}_seeds.json", tmp_path / f"{what}_folder.json"
        base = ["eval", what, str(model), *extra, "--no-progress"]
        assert main(base + ["--seeds", "10000-10002", "--out", str(seeds_out)]) == 0
        args = ["--data", "cityscapes", "--root", str(cityscapes_val), "--split", "val", "--out", str(folder_out)]
        assert main(base + args) == 0
        a, b = json.loads(seeds_out.read_text()), json.loads(folder_out.read_text())
        assert b["data"] == "cityscapes" and b["split"] == "val" and b["n_images"] == 3
        if what == "segmenter":
            assert b["miou"] == a["miou"] and b["per_class"] == a["per_class"] and 0 < b["miou"] < 1
            assert set(b["per_class"]) >= {"road", "car", "sky"} and len(b["per_class"]) == 19
        else:
            sa, sb = a["segmentation_consistency"], b["segmentation_consistency"]
            assert sb["miou_generated"] == sa["miou_generated"] and sb["miou_real"] == sa["miou_real"]
            assert b["l1"] == a["l1"] and b["ssim"] == a["ssim"] and b["segfeat_frechet"] == a["segfeat_frechet"]


def test_eval_folder_errors_are_one_line(cityscapes_val, tmp_path, capsys):
    seg = ["eval", "segmenter", str(SEGMENTER), "--no-progress"]
    assert main(seg + ["--data", "cityscapes"]) == 2
    assert "--root" in capsys.readouterr().err
    assert main(seg + ["--data", "cityscapes", "--root", str(cityscapes_val), "--seeds", "1-2"]) == 2
    assert "exclude" in capsys.readouterr().err
    assert main(seg + ["--data", "cityscapes", "--root", str(tmp_path), "--split", "val"]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    ade = tmp_path / "ADEChallengeData2016"
    (ade / "images" / "validation").mkdir(parents=True)
    (ade / "annotations" / "validation").mkdir(parents=True)
    scene = generate_scene(1, 64, 64)
    import cv2

    cv2.imwrite(str(ade / "images" / "validation" / "a.jpg"), scene.photo)
    cv2.imwrite(str(ade / "annotations" / "validation" / "a.png"), np.ones((64, 64), np.uint8))
    assert main(seg + ["--data", "ade20k", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'cityscapes'" in err and "'ade20k'" in err and err.count("\n") == 1
