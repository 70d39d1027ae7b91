"""Metrics against hand-computed values and against cityscapesscripts' own evaluator."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from cityserve.metrics import (
    ConfusionAccumulator,
    cityscapes_scores,
    confusion_matrix,
    fid_from_features,
    kid_from_features,
    l1,
    scores_from_confusion,
    ssim,
)


def test_iou_f1_by_hand():
    gt = np.array([0, 0, 0, 1, 1, 2, 255, 255])
    pred = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    s = scores_from_confusion(confusion_matrix(pred, gt, 3))
    # class 0: tp 2, fn 1, fp 0 (the prediction on the ignored pixel does not count)
    # class 1: tp 1, fn 1, fp 1; class 2: tp 1, fn 0, fp 1
    assert s.iou == pytest.approx([2 / 3, 1 / 3, 1 / 2])
    assert s.f1 == pytest.approx([4 / 5, 2 / 4, 2 / 3])
    assert s.miou == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert s.pixel_accuracy == pytest.approx(4 / 6)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    gt = np.array([0, 0, 1])
    pred = np.array([0, 0, 1])
    s = scores_from_confusion(confusion_matrix(pred, gt, 4))
    assert s.iou[:2] == [1.0, 1.0] and math.isnan(s.iou[2]) and math.isnan(s.iou[3])
    assert s.miou == 1.0


def test_prediction_outside_classes_is_a_false_negative_only():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 255, 1, 1])  # e.g. a pixel predicted as an ignored class
    s = scores_from_confusion(confusion_matrix(pred, gt, 2))
    assert s.iou == pytest.approx([0.5, 1.0])


def test_gt_outside_classes_rejected():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.zeros(3), np.array([0, 7, 1]), 3)


def test_agrees_with_cityscapesscripts_evaluator(tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev
    from cityscapesscripts.helpers.labels import labels as cs_labels

    rng = np.random.default_rng(0)
    ids = np.array([l.id for l in cs_labels if l.id >= 0])
    args = ev.args
    args.evalInstLevelScore = False
    args.quiet = True
    conf = ev.generateMatrix(args)
    preds, gts = [], []
    for i in range(3):
        gt = rng.choice(ids, size=(24, 40)).astype(np.uint8)
        # predictions agree on ~60% of pixels, otherwise any label id, ignored classes included
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.choice(ids, size=gt.shape)).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"p{i}.png"), pred)
        cv2.imwrite(str(tmp_path / f"g{i}_gtFine_labelIds.png"), gt)
        ev.evaluatePair(
            str(tmp_path / f"p{i}.png"), str(tmp_path / f"g{i}_gtFine_labelIds.png"), conf, {}, {}, args
        )  # adds to conf in place
        preds.append(pred)
        gts.append(gt)
    ours = cityscapes_scores(preds, gts)
    theirs = {ev.id2label[l].name: ev.getIouScoreForLabel(l, conf, args) for l in args.evalLabels}
    theirs = {k: v for k, v in theirs.items() if not math.isnan(v)}
    assert len(theirs) == 19
    for name, iou in zip(ours.class_names, ours.iou):
        assert iou == pytest.approx(theirs[name], abs=1e-12), name
    assert ours.miou == pytest.approx(ev.getScoreAverage(theirs, args), abs=1e-12)


def test_accumulator_equals_one_big_matrix():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 5, (4, 10, 10))
    pred = rng.integers(0, 5, (4, 10, 10))
    acc = ConfusionAccumulator(5)
    for p, g in zip(pred, gt):
        acc.update(p, g)
    assert acc.scores().iou == pytest.approx(scores_from_confusion(confusion_matrix(pred, gt, 5)).iou)


def test_l1_and_ssim():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert l1(img, img) == 0.0
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img.astype(int) + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(img.astype(int) + rng.normal(0, 60, img.shape), 0, 255).astype(np.uint8)
    assert 1.0 > ssim(img, noisy) > ssim(img, noisier)
    assert l1(img, 255 - img) == pytest.approx(np.abs(img.astype(float) - (255 - img)).mean() / 255)


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(400, 8))
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    # shifted means, same covariance: FID = ||shift||^2
    assert fid_from_features(a, a + 2.0) == pytest.approx(4 * 8, rel=1e-6)
    # diagonal covariances: sum((sqrt(s1) - sqrt(s2))^2)
    from cityserve.metrics import frechet_distance

    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx((1 - 3) ** 2 + (2 - 1) ** 2)


def test_fid_and_kid_on_random_inception_grow_with_noise():
    """Real Inception weights are not shipped, so this uses a seeded random one: FID of a set with
    itself is ~0 and grows with added noise."""
    from cityserve.evaluation import inception_features
    from cityserve.models.inception import load_fid_inception

    net = load_fid_inception(None, seed=0, resize_input=False)  # 80x80 in: the smallest Inception input, fast
    rng = np.random.default_rng(4)
    base = [cv2.GaussianBlur(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8), (7, 7), 2) for _ in range(10)]

    def noisy(sigma):
        return [np.clip(b + rng.normal(0, sigma, b.shape), 0, 255).astype(np.uint8) for b in base]

    torch.manual_seed(0)
    f0 = inception_features(net, base)
    fids = [fid_from_features(f0, inception_features(net, noisy(s))) for s in (10, 40, 90)]
    assert fid_from_features(f0, f0) == pytest.approx(0.0, abs=1e-6)
    assert 0 < fids[0] < fids[1] < fids[2]
    kid_same, _ = kid_from_features(f0, f0, subsets=5, subset_size=10)
    kid_far, _ = kid_from_features(f0, inception_features(net, noisy(90)), subsets=5, subset_size=10)
    assert abs(kid_same) < 1e-9 and kid_far > 0
