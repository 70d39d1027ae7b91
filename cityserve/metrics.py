"""Evaluation metrics: segmentation (confusion-matrix IoU / F1), image similarity (L1, SSIM), and FID / KID.

Segmentation follows cityscapesscripts' pixel-level evaluator: the confusion matrix is over the
evaluated classes (train ids 0..C-1); ground-truth pixels with the ignore label (255) count nowhere;
a class's IoU is tp / (tp + fp + fn) and is NaN (left out of the mean) when the class appears neither
in the ground truth nor in the predictions.

The Fréchet distance (pytorch-fid's math) applies to any features: on Inception's it is FID; on a
segmenter's encoder it is ``segfeat_frechet``, an in-domain stand-in for FID (see
``cityserve.models.encoder_features``) whose numbers are not comparable with FIDs.

FID and KID use Inception features (2048-d pool3) from ``cityserve.inception``'s pytorch-fid variant,
loaded from a weights file the user supplies, so figures computed with pytorch-fid's own
``pt_inception-2015-12-05`` file are comparable to published ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Optional

import numpy as np

IGNORE = 255


# ---- segmentation ------------------------------------------------------------------------------


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = IGNORE) -> np.ndarray:
    """[C, C+1] int64 counts, rows = ground truth, columns = prediction; ignored gt pixels dropped.

    The extra last column counts predictions outside 0..C-1 (e.g. an ignored class predicted): they
    are false negatives of the gt class and nobody's false positive, as in cityscapesscripts.
    """
    pred = np.asarray(pred).astype(np.int64).ravel()
    target = np.asarray(target).astype(np.int64).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"prediction has {pred.size} pixels, ground truth {target.size}")
    keep = target != ignore_index
    if ((target[keep] < 0) | (target[keep] >= num_classes)).any():
        bad = np.unique(target[keep][(target[keep] < 0) | (target[keep] >= num_classes)])
        raise ValueError(
            f"ground truth holds train id(s) {bad[:5].tolist()} outside 0..{num_classes - 1} "
            f"and not the ignore label {ignore_index}"
        )
    t, p = target[keep], pred[keep]
    p = np.where((p < 0) | (p >= num_classes), num_classes, p)
    cm = np.bincount(t * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1))
    return cm.reshape(num_classes, num_classes + 1)


@dataclasses.dataclass
class SegmentationScores:
    iou: list[float]  # per class, NaN where the class is absent from gt and prediction
    f1: list[float]
    miou: float
    mean_f1: float
    pixel_accuracy: float
    class_names: list[str]

    def to_dict(self) -> dict:
        return {
            "miou": self.miou,
            "mean_f1": self.mean_f1,
            "pixel_accuracy": self.pixel_accuracy,
            "per_class": {
                n: {"iou": _nan_to_none(i), "f1": _nan_to_none(f)}
                for n, i, f in zip(self.class_names, self.iou, self.f1)
            },
        }

    def markdown(self, title: str = "segmentation") -> str:
        rows = [f"| {title} | IoU | F1 |", "| --- | ---: | ---: |"]
        for n, i, f in zip(self.class_names, self.iou, self.f1):
            rows.append(f"| {n} | {_fmt(i)} | {_fmt(f)} |")
        rows.append(f"| **mean** | **{_fmt(self.miou)}** | **{_fmt(self.mean_f1)}** |")
        return "\n".join(rows) + "\n"


def scores_from_confusion(cm: np.ndarray, class_names: Optional[Sequence[str]] = None) -> SegmentationScores:
    """Per-class IoU / F1 from a [C, C] or [C, C+1] (extra 'invalid prediction' column) matrix."""
    C = cm.shape[0]
    cm = cm.astype(np.float64)
    tp = np.diag(cm[:, :C])
    fn = cm.sum(axis=1) - tp
    fp = cm[:, :C].sum(axis=0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
    total = cm.sum()
    names = list(class_names) if class_names is not None else [str(i) for i in range(C)]
    return SegmentationScores(
        iou=iou.tolist(),
        f1=f1.tolist(),
        miou=float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        mean_f1=float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan"),
        pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
        class_names=names,
    )


class ConfusionAccumulator:
    """Accumulate a confusion matrix over many images (train ids, ignore = 255)."""

    def __init__(self, num_classes: int, class_names: Optional[Sequence[str]] = None, ignore_index: int = IGNORE):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = class_names
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def scores(self) -> SegmentationScores:
        return scores_from_confusion(self.matrix, self.class_names)


class LabelScores:
    """Accumulate label-id maps of one label set as its train ids (ignored classes dropped, as the
    Cityscapes evaluator does); one image at a time, so a whole val split never sits in memory."""

    def __init__(self, label_set="cityscapes"):
        from .labels import get_label_set

        self.label_set = get_label_set(label_set)
        n = self.label_set.num_train_ids
        names = [self.label_set[int(i)].name for i in self.label_set.from_train_ids(np.arange(n))]
        self.acc = ConfusionAccumulator(n, names)

    def update(self, pred_label_ids: np.ndarray, gt_label_ids: np.ndarray) -> None:
        ls = self.label_set
        self.acc.update(ls.to_train_ids(np.asarray(pred_label_ids)), ls.to_train_ids(np.asarray(gt_label_ids)))

    def scores(self) -> SegmentationScores:
        return self.acc.scores()


def label_set_scores(
    pred_label_ids: Iterable[np.ndarray], gt_label_ids: Iterable[np.ndarray], label_set="cityscapes"
) -> SegmentationScores:
    """mIoU / F1 over a label set's evaluated (train-id) classes, from label-id maps."""
    acc = LabelScores(label_set)
    for pred, gt in zip(pred_label_ids, gt_label_ids):
        acc.update(pred, gt)
    return acc.scores()


def cityscapes_scores(pred_label_ids: Iterable[np.ndarray], gt_label_ids: Iterable[np.ndarray]) -> SegmentationScores:
    """mIoU / F1 over the 19 evaluated Cityscapes classes, from label-id maps (as the official
    evaluator takes them): ids are mapped to train ids and ignored classes dropped."""
    return label_set_scores(pred_label_ids, gt_label_ids, "cityscapes")


# ---- image similarity --------------------------------------------------------------------------


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images, in [0, 1] units."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255) of two
    uint8 images, averaged over channels and pixels."""
    import cv2

    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


# ---- depth -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class DepthScores:
    """Stage 1's figures over the valid pixels: abs-rel = mean |p - t| / t, RMSE of log-depth =
    sqrt(mean (ln p - ln t)^2) (Eigen et al. 2014), and how many pixels they cover."""

    abs_rel: float
    rmse_log: float
    pixels: int

    def to_dict(self) -> dict:
        return {"abs_rel": _nan_to_none(self.abs_rel), "rmse_log": _nan_to_none(self.rmse_log), "pixels": self.pixels}


class DepthAccumulator:
    """Depth errors summed over images, so the figures weigh every valid pixel once.

    Pixels whose true depth is not finite, not positive or at or beyond ``max_depth`` (the synthetic
    sky's far cap) are left out: there is no distance to get right there. Predictions are clipped to
    ``[min_depth, max_depth]``, as the KITTI / NYU protocols do.
    """

    def __init__(self, max_depth: float = 1000.0, min_depth: float = 1e-3):
        self.max_depth, self.min_depth = float(max_depth), float(min_depth)
        self.n = 0
        self.abs_rel_sum = 0.0
        self.sq_log_sum = 0.0

    def update(self, pred: np.ndarray, true: np.ndarray) -> None:
        pred = np.asarray(pred, np.float64)
        true = np.asarray(true, np.float64)
        if pred.shape != true.shape:
            raise ValueError(f"predicted depth {pred.shape} and true depth {true.shape} differ in shape")
        valid = np.isfinite(true) & (true > 0) & (true < self.max_depth)
        p = np.clip(np.nan_to_num(pred[valid], nan=self.max_depth), self.min_depth, self.max_depth)
        t = true[valid]
        self.n += int(valid.sum())
        self.abs_rel_sum += float((np.abs(p - t) / t).sum())
        self.sq_log_sum += float(((np.log(p) - np.log(t)) ** 2).sum())

    def scores(self) -> DepthScores:
        if self.n == 0:
            return DepthScores(float("nan"), float("nan"), 0)
        return DepthScores(self.abs_rel_sum / self.n, float(np.sqrt(self.sq_log_sum / self.n)), self.n)


def depth_scores(pred: np.ndarray, true: np.ndarray, max_depth: float = 1000.0) -> DepthScores:
    """``DepthAccumulator`` over one pair of depth maps (metres)."""
    acc = DepthAccumulator(max_depth)
    acc.update(pred, true)
    return acc.scores()


# ---- FID / KID ---------------------------------------------------------------------------------


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), with Tr((S1 S2)^1/2) computed as the trace of
    (S1^1/2 S2 S1^1/2)^1/2, a symmetric PSD matrix (stable without scipy's sqrtm)."""
    diff = mu1 - mu2
    s1h = _sqrt_psd(sigma1)
    middle = s1h @ sigma2 @ s1h
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def frechet_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors [N, D] (mean and
    unbiased covariance, as pytorch-fid's ``calculate_frechet_distance`` takes them)."""
    f1 = np.asarray(f1, np.float64)
    f2 = np.asarray(f2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"need two sets of >= 2 feature vectors of one width, got {f1.shape} and {f2.shape}")
    return frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID: the Fréchet distance of Inception pool3 features."""
    return frechet_from_features(f1, f2)


def kid_from_features(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with the cubic polynomial
    kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets; returns (mean, std)."""
    f1 = np.asarray(f1, np.float64)
    f2 = np.asarray(f2, np.float64)
    d = f1.shape[1]
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError("KID needs at least 2 images in each set")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def _nan_to_none(x: float):
    return None if x != x else float(x)


def _fmt(x: float) -> str:
    return "–" if x != x else f"{x:.3f}"
