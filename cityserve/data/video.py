"""Street video -> Cityscapes-style training set: sample frames, drop the unusable, pseudo-label the rest.

The recipe used for Hong Kong dashcam footage:

1. take one frame every ``every_s`` seconds (default 1.5 s: consecutive frames of a slow car are
   near-duplicates), seeking rather than decoding every frame (``video_reader``); a folder of images
   is taken image by image, in file-name order;
2. resize to cover the output frame (default 480x960, 2:1) and crop the centre;
3. drop blurred frames, judged against the video's own neighbouring frames on a resolution-normalised
   image (``sharpness.RelativeBlurRule``), so sharp low-texture scenes (sky, asphalt) are kept;
4. drop frames with burned-in captions or overlays (``overlays``);
5. label each kept frame with a segmenter (train ids mapped back to label ids by the segmenter graph);
6. write ``leftImg8bit/`` + ``gtFine/`` in the Cityscapes layout, and ``report.json`` / ``report.md``
   listing every sampled frame's time, decision and reason with its scores and the rules; when ground
   truth exists for some frames (``ground_truth``), the pseudo labels' mIoU and per-class IoU.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..cards import ModelCard, load_card
from ..errors import ConfigError
from ..labels import LabelSet, get_label_set
from ..labels.labelmap import resize_nearest
from ..metrics import LabelScores
from ..models.segment import segment_graph_from_card
from .ground_truth import GroundTruth, resize_crop_ids
from .overlays import OverlayParams, caption_glyphs, overlay_box_fraction
from .segmentation_dataset import read_photo
from .sharpness import RelativeBlurRule, sharpness
from .transforms import resize_crop_photo, resize_photo
from .validate import DatasetError
from .video_reader import count_samples, probe, sample_frames
from .video_report import report_markdown

# A segmenter maps uint8 RGB [B,H,W,3] to uint8 label ids [B,1,H,W].
Segmenter = Callable[[np.ndarray], np.ndarray]
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class FrameVerdict:
    index: int  # frame number in the video (position in an image folder)
    time_s: float | None  # None for images
    decision: str = "kept"  # "kept" | "dropped"
    reason: str = "ok"  # "ok" | "blurred" | "caption" | "overlay" | joined with "+"
    blur_score: float = 0.0  # sharpness (see cityserve.data.sharpness)
    blur_reference: float | None = None  # the neighbours' reference it is compared with
    blur_ratio: float | None = None  # blur_score / blur_reference
    overlay_score: float = 0.0  # max(caption_glyphs / min_glyphs, box_fraction / box_min_fraction); >= 1 drops
    caption_glyphs: int = 0
    overlay_box_fraction: float = 0.0
    file: str = ""
    source_name: str = ""  # the image's file name (image folders)
    gt_file: str = ""


def score_frame(rgb: np.ndarray, params: OverlayParams, index: int = 0, time_s: float | None = 0.0) -> FrameVerdict:
    """Sharpness and overlay scores of one (already cropped) frame, the overlay decision made; the blur
    decision needs the neighbours (``decide_blur``)."""
    glyphs = caption_glyphs(rgb, params)
    box = overlay_box_fraction(rgb, params)
    v = FrameVerdict(index, None if time_s is None else round(time_s, 3), blur_score=round(sharpness(rgb), 2))
    v.caption_glyphs, v.overlay_box_fraction = glyphs, round(box, 4)
    v.overlay_score = round(max(glyphs / params.min_glyphs, box / params.box_min_fraction), 3)
    v.reason = "+".join(
        r for r, hit in (("caption", glyphs >= params.min_glyphs), ("overlay", box >= params.box_min_fraction)) if hit
    )
    return v


def decide_blur(v: FrameVerdict, rule: RelativeBlurRule, scores: Sequence[float], i: int) -> None:
    d = rule.decide(scores, i)
    v.blur_reference = None if d.reference is None else round(d.reference, 2)
    v.blur_ratio = None if d.ratio is None else round(d.ratio, 3)
    reasons = (["blurred"] if d.blurred else []) + ([v.reason] if v.reason not in ("", "ok") else [])
    v.reason = "+".join(reasons) or "ok"
    v.decision = "dropped" if reasons else "kept"


# ---- segmenters ---------------------------------------------------------------------------------
def segmenter_from_card(card, device: str = "cpu") -> tuple[Segmenter, object]:
    """(callable, label set) of a segmenter card: frames are resized to the card's resolution for the
    network and its label ids resized back (nearest) to the frame's."""
    import torch

    if not isinstance(card, ModelCard):
        card = load_card(card)
    if card.kind != "segmenter":
        raise ConfigError(f"card {card.name!r} is a {card.kind}, not a segmenter")
    graph = segment_graph_from_card(card).to(device).eval()
    size = (int(card.height), int(card.width))

    def run(batch: np.ndarray) -> np.ndarray:
        h, w = batch.shape[1:3]
        x = batch if (h, w) == size else np.stack([resize_photo(f, *size) for f in batch])
        with torch.inference_mode():
            out = graph(torch.from_numpy(np.ascontiguousarray(x)).to(device)).cpu().numpy()
        if out.shape[-2:] != (h, w):
            out = np.stack([resize_nearest(o[0], h, w)[None] for o in out])
        return out.astype(np.uint8)

    return run, get_label_set(card.label_set)


# ---- sources ------------------------------------------------------------------------------------
@dataclass
class Frame:
    index: int
    time_s: float | None
    rgb: np.ndarray
    name: str = ""  # image file name (folders)


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DatasetError(f"image folder {folder} holds no images ({', '.join(IMAGE_EXTS)})")
    return files


def source_frames(src: Path, cfg: VideoDatasetConfig) -> Iterator[Frame]:
    if src.is_dir():
        for i, p in enumerate(image_files(src)[: cfg.max_frames]):
            yield Frame(i, None, read_photo(p), p.name)
        return
    for f in sample_frames(src, cfg.every_s, cfg.start_s, cfg.max_frames, cfg.method):
        yield Frame(f.index, f.time_s, f.rgb)


# ---- building -----------------------------------------------------------------------------------
@dataclass
class VideoDatasetConfig:
    every_s: float = 1.5
    size: tuple[int, int] = (480, 960)  # (H, W) of the stored frames: 2:1
    blur: RelativeBlurRule = field(default_factory=RelativeBlurRule)
    overlay: OverlayParams = field(default_factory=OverlayParams)
    split: str = "train"
    start_s: float = 0.0
    max_frames: int | None = None  # per video
    batch_size: int = 4
    method: str = "seek"  # frame sampling: seek | decode


def city_name(video: Path) -> str:
    """A Cityscapes "city" from the video's file name (no underscores: Cityscapes splits on them)."""
    name = video.name if video.is_dir() else video.stem
    return re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-").lower() or "video"


def _write_sample(out: Path, split: str, city: str, index: int, rgb: np.ndarray, ids: np.ndarray, label_set) -> str:
    stem = f"{city}_000000_{index:06d}"
    img_dir = out / "leftImg8bit" / split / city
    gt_dir = out / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)

    def write(path: Path, arr: np.ndarray) -> None:
        if not cv2.imwrite(str(path), arr):
            raise DatasetError(f"cannot write {path}")

    write(img_dir / f"{stem}_leftImg8bit.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    # Files hold the label set's file values (Cityscapes: the ids themselves), so the set's reader
    # maps them back to the same ids.
    write(gt_dir / f"{stem}_gtFine_labelIds.png", label_set.ids_to_file(ids))
    # No instances from a semantic segmenter: Cityscapes stores the label id for pixels without one.
    write(gt_dir / f"{stem}_gtFine_instanceIds.png", ids.astype(np.uint16))
    color = label_set.ids_to_colors(ids)
    write(gt_dir / f"{stem}_gtFine_color.png", cv2.cvtColor(color.astype(np.uint8), cv2.COLOR_RGB2BGR))
    return f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png"


class _Labeller:
    """Batches kept frames through the segmenter, writes them, and scores them against ground truth."""

    def __init__(self, out: Path, cfg: VideoDatasetConfig, segmenter, ls, gt: GroundTruth | None):
        self.out, self.cfg, self.segmenter, self.ls, self.gt = out, cfg, segmenter, ls, gt
        self.pending: list[tuple[FrameVerdict, np.ndarray, np.ndarray | None]] = []
        self.total = LabelScores(ls) if gt is not None else None
        self.city, self.video_scores, self.scored, self.total_scored = "", None, 0, 0

    def add(self, verdict: FrameVerdict, frame: np.ndarray, gt_ids: np.ndarray | None) -> None:
        self.pending.append((verdict, np.ascontiguousarray(frame), gt_ids))
        if len(self.pending) >= self.cfg.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch = np.stack([f for _, f, _ in self.pending])
        ids = np.asarray(self.segmenter(batch))
        if ids.shape != (len(self.pending), 1) + batch.shape[1:3]:
            raise ConfigError(
                f"segmenter returned shape {ids.shape}, expected {(len(self.pending), 1) + batch.shape[1:3]}"
            )
        if int(ids.max(initial=0)) >= self.ls.num_ids:
            raise ConfigError(
                f"segmenter produced label id {int(ids.max())}, outside label set {self.ls.name!r} (0..{self.ls.num_ids - 1})"
            )
        for (verdict, frame, gt_ids), lab in zip(self.pending, ids):
            verdict.file = _write_sample(self.out, self.cfg.split, self.city, verdict.index, frame, lab[0], self.ls)
            if gt_ids is not None:
                self.total.update(lab[0], gt_ids)
                self.video_scores.update(lab[0], gt_ids)
                self.scored += 1
                self.total_scored += 1
        self.pending.clear()


def _quality(acc: LabelScores, frames: int) -> dict:
    if frames == 0:
        return {"frames": 0, "miou": None, "mean_f1": None, "pixel_accuracy": None, "per_class_iou": {}}
    d = acc.scores().to_dict()
    return {
        "frames": frames,
        "miou": d["miou"],
        "mean_f1": d["mean_f1"],
        "pixel_accuracy": d["pixel_accuracy"],
        "per_class_iou": {n: v["iou"] for n, v in d["per_class"].items()},
    }


def build_video_dataset(
    videos: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    segmenter: Segmenter | None,
    label_set="cityscapes",
    config: VideoDatasetConfig | None = None,
    progress: bool = True,
    ground_truth: str | os.PathLike | None = None,
) -> dict:
    """Sample, filter, pseudo-label and write ``videos`` (video files or image folders) under ``out``;
    returns the report (also saved).

    ``segmenter``: uint8 RGB [B,H,W,3] -> uint8 label ids [B,1,H,W] (``segmenter_from_card`` makes one
    from a segmenter card); None (a dry run) only judges the frames and writes the report.
    ``label_set``: the ids' set, for the file values, the ``*_gtFine_color.png`` previews and the id
    range checked. Each source becomes one Cityscapes "city" named after it. ``ground_truth``: a folder of
    label maps for some frames (see ``cityserve.data.ground_truth``): kept frames that have one are scored.
    """

    cfg = config or VideoDatasetConfig()
    ls = label_set if isinstance(label_set, LabelSet) else get_label_set(label_set)
    out = Path(out)
    sources = [Path(v) for v in videos]
    for v in sources:  # fail on a bad path before hours of work on the others
        image_files(v) if v.is_dir() else probe(v)
    gt = GroundTruth(ground_truth, ls) if ground_truth is not None else None
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "format": "cityserve-video-dataset/2",
        "settings": {
            "every_s": cfg.every_s,
            "size": list(cfg.size),
            "sampling": cfg.method,
            "blur": {**asdict(cfg.blur), "rule": cfg.blur.describe()},
            "overlay": asdict(cfg.overlay),
            "split": cfg.split,
            "label_set": ls.name,
            "dry_run": segmenter is None,
            "ground_truth": str(ground_truth) if ground_truth is not None else None,
        },
        "videos": [],
    }
    total = 0
    for v in sources:
        n = len(image_files(v)) if v.is_dir() else count_samples(v, cfg.every_s, cfg.start_s)
        total = None if n is None or total is None else total + min(n, cfg.max_frames or n)
    labeller = _Labeller(out, cfg, segmenter, ls, gt) if segmenter is not None else None
    bar = tqdm(total=total, desc="frames", unit="frame", disable=not progress)
    try:
        for v in sources:
            report["videos"].append(_build_one(v, out, cfg, labeller, gt, report, bar))
    finally:
        bar.close()
    report["summary"] = {
        "sampled": sum(x["summary"]["sampled"] for x in report["videos"]),
        "kept": sum(x["summary"]["kept"] for x in report["videos"]),
    }
    if labeller is not None and labeller.total is not None:
        report["pseudo_label_quality"] = _quality(labeller.total, labeller.total_scored)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(report))
    return report


def _build_one(v: Path, out: Path, cfg: VideoDatasetConfig, labeller, gt, report: dict, bar) -> dict:
    """One source: frames scored as they come, each decided once ``window`` later frames are scored."""
    city = city_name(v)
    taken = {x["city"] for x in report["videos"]}
    city = next(c for c in [city] + [f"{city}-{k}" for k in range(2, len(taken) + 3)] if c not in taken)
    info = None if v.is_dir() else probe(v)
    gt_name = v.name if v.is_dir() else v.stem
    verdicts: list[FrameVerdict] = []
    scores: list[float] = []
    frames: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}  # position -> (cropped frame, source HxW)
    if labeller is not None:
        labeller.city, labeller.scored = city, 0
        labeller.video_scores = LabelScores(labeller.ls) if gt is not None else None

    def decide(i: int) -> None:
        verdict = verdicts[i]
        decide_blur(verdict, cfg.blur, scores, i)
        frame, src_hw = frames.pop(i)
        if verdict.decision != "kept" or labeller is None:
            return
        gt_ids = None
        if gt is not None:
            path = (
                gt.find(gt_name, stem=Path(verdict.source_name).stem)
                if verdict.source_name
                else gt.find(gt_name, frame=verdict.index)
            )
            if path is not None:
                ids = gt.read(path)
                if ids.shape != src_hw:
                    raise DatasetError(
                        f"ground-truth label map {path} is {ids.shape[0]}x{ids.shape[1]} but its frame is {src_hw[0]}x{src_hw[1]}"
                    )
                gt_ids, verdict.gt_file = resize_crop_ids(ids, cfg.size), str(path)
        labeller.add(verdict, frame, gt_ids)

    sampling_s, t0 = 0.0, time.perf_counter()
    for fr in source_frames(v, cfg):
        sampling_s += time.perf_counter() - t0
        frame = resize_crop_photo(fr.rgb, cfg.size)
        verdict = score_frame(frame, cfg.overlay, fr.index, fr.time_s)
        verdict.source_name = fr.name
        verdicts.append(verdict)
        scores.append(verdict.blur_score)
        frames[len(verdicts) - 1] = (frame, fr.rgb.shape[:2])
        if len(verdicts) > cfg.blur.window:
            decide(len(verdicts) - 1 - cfg.blur.window)
        bar.update(1)
        t0 = time.perf_counter()
    sampling_s += time.perf_counter() - t0
    for i in range(max(0, len(verdicts) - cfg.blur.window), len(verdicts)):
        decide(i)
    if labeller is not None:
        labeller.flush()
    summary: dict[str, int] = {"sampled": len(verdicts), "kept": sum(x.decision == "kept" for x in verdicts)}
    for x in verdicts:
        if x.decision == "dropped":
            summary[f"dropped_{x.reason}"] = summary.get(f"dropped_{x.reason}", 0) + 1
    entry = {
        "video": str(v),
        "city": city,
        "fps": info.fps if info else None,
        "frame_count": info.frame_count if info else len(verdicts),
        "codec": info.codec if info else None,
        "sampling": {
            "method": "images" if info is None else cfg.method,
            "seconds": round(sampling_s, 3),
            "frames_per_s": round(len(verdicts) / sampling_s, 2) if sampling_s > 0 else None,
        },
        "summary": summary,
        "frames": [asdict(x) for x in verdicts],
    }
    if labeller is not None and labeller.video_scores is not None:
        entry["pseudo_label_quality"] = _quality(labeller.video_scores, labeller.scored)
    return entry
