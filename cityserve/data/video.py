"""Street video -> Cityscapes-style training set: sample frames, drop the unusable, pseudo-label the rest.

The recipe used for Hong Kong dashcam footage:

1. take one frame every ``every_s`` seconds (default 1.5 s: consecutive frames of a slow car are
   near-duplicates);
2. resize to cover the output frame (default 480x960, 2:1) and crop the centre;
3. drop motion-blurred frames: the variance of the Laplacian of the grey output frame is below
   ``blur_threshold`` (see ``blur_score``);
4. drop frames with burned-in captions or overlays (subtitles, timestamps, channel logos, banners):
   see ``caption_glyphs`` and ``overlay_box_fraction``;
5. label each kept frame with a segmenter (train ids mapped back to label ids by the segmenter graph);
6. write ``leftImg8bit/`` + ``gtFine/`` in the Cityscapes layout, and ``report.json`` / ``report.md``
   listing every sampled frame's time, decision and reason with its scores.

Both detectors work on the frame as it will be stored, so their thresholds do not depend on the
source resolution beyond that.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..labels.labelmap import resize_nearest
from .transforms import resize_crop_photo, resize_photo
from .validate import DatasetError

# A segmenter maps uint8 RGB [B,H,W,3] to uint8 label ids [B,1,H,W].
Segmenter = Callable[[np.ndarray], np.ndarray]


# ---- frame sampling -----------------------------------------------------------------------------
@dataclass
class VideoFrame:
    index: int  # frame number in the video
    time_s: float
    rgb: np.ndarray  # uint8 [H,W,3]


def open_video(path: str | os.PathLike) -> tuple[cv2.VideoCapture, float, int]:
    """(capture, fps, frame count); raises ``DatasetError`` naming the file when OpenCV cannot read it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"video {path} does not exist")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DatasetError(f"OpenCV cannot open video {path} (not a video, or a codec this build lacks)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not math.isfinite(fps) or fps <= 0:
        cap.release()
        raise DatasetError(f"video {path} reports no frame rate; re-mux it (e.g. ffmpeg -i in -c copy out.mp4)")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return cap, fps, max(count, 0)


def sample_frames(
    path: str | os.PathLike, every_s: float = 1.5, start_s: float = 0.0, max_frames: int | None = None
) -> Iterator[VideoFrame]:
    """One frame every ``every_s`` seconds: frames round((start_s + k * every_s) * fps), k = 0, 1, ...

    Frames are grabbed sequentially (decoding only the ones kept), which is exact on every container,
    unlike seeking.
    """
    if every_s <= 0:
        raise ConfigError(f"frame interval must be positive, got {every_s} s")
    cap, fps, _ = open_video(path)
    try:
        k, index, yielded = 0, -1, 0
        target = int(round(start_s * fps))
        while max_frames is None or yielded < max_frames:
            if not cap.grab():
                break
            index += 1
            if index < target:
                continue
            ok, bgr = cap.retrieve()
            if not ok:
                break
            yield VideoFrame(index, index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            yielded += 1
            while target <= index:
                k += 1
                target = int(round((start_s + k * every_s) * fps))
    finally:
        cap.release()


def count_samples(path: str | os.PathLike, every_s: float, start_s: float = 0.0) -> int | None:
    """How many frames ``sample_frames`` will yield, from the container's frame count (for progress bars)."""
    cap, fps, count = open_video(path)
    cap.release()
    if count <= 0:
        return None
    first = int(round(start_s * fps))
    n, k = 0, 0
    while True:
        t = int(round((start_s + k * every_s) * fps))
        if t >= count:
            return n
        if t >= first:
            n += 1
        k += 1


# ---- frame quality ------------------------------------------------------------------------------
def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def blur_score(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey frame: sharp frames have strong, varied second derivatives;
    motion blur smears edges and the variance collapses. Below ~100 at 480x960 is blurred for
    dashcam footage (the usual rule of thumb); scale the threshold for much smaller frames."""
    return float(cv2.Laplacian(grey(rgb), cv2.CV_64F).var())


@dataclass
class OverlayParams:
    """Thresholds of the caption / overlay detector (see ``caption_glyphs``, ``overlay_box_fraction``).

    band: fraction of the height at the top and at the bottom searched for captions. stroke_contrast:
    grey levels by which a text stroke must stand out of its surroundings (white or black top-hat).
    min_glyphs: glyph-like blobs on one line that make a caption. glyph_height: glyph height range as a
    fraction of the frame height. max_fill: glyphs whose top-hat blob fills more of their box than this
    are solid shapes (windows, lamps), not letters. min_width_cv: letters vary in width; a row of
    identical blobs (windows, fence posts) does not. box_min_fraction: a flat, saturated, rectangular
    region at least this fraction of the frame, with a crisp rim, is an overlay (banner, logo plate).
    """

    band: float = 0.3
    stroke_contrast: float = 60.0
    min_glyphs: int = 5
    glyph_height: tuple[float, float] = (0.015, 0.15)
    max_fill: float = 0.85
    min_width_cv: float = 0.12
    box_min_fraction: float = 0.02
    box_max_std: float = 2.0
    box_min_saturation: float = 60.0
    box_min_rectangularity: float = 0.95
    box_min_rim_contrast: float = 25.0


@dataclass
class _Glyph:
    x: int
    y: int
    w: int
    h: int

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def _stroke_masks(g: np.ndarray, contrast: float, stroke_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Thin strokes brighter / darker than their surroundings by ``contrast`` (white / black top-hat).

    The two polarities stay apart: outlined captions (white letters, black rim) would otherwise fuse
    letters into word blobs through their rims.
    """
    k = 2 * max(2, stroke_px) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    white = cv2.morphologyEx(g, cv2.MORPH_TOPHAT, kernel)
    black = cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, kernel)
    return (white >= contrast).astype(np.uint8), (black >= contrast).astype(np.uint8)


def _glyphs(mask: np.ndarray, height: int, p: OverlayParams) -> list[_Glyph]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    lo, hi = max(4, p.glyph_height[0] * height), p.glyph_height[1] * height
    out = []
    for x, y, w, h, area in stats[1:]:
        if not (lo <= h <= hi) or w > 4 * h or w < 1:
            continue
        fill = area / float(w * h)
        if fill > p.max_fill or fill < 0.08:
            continue
        out.append(_Glyph(int(x), int(y), int(w), int(h)))
    return out


def _longest_line(glyphs: list[_Glyph], p: OverlayParams) -> int:
    """Most glyphs chained left-to-right on one text line (aligned centres, similar heights, small gaps)
    whose widths vary like letters do."""
    glyphs = sorted(glyphs, key=lambda g: g.x)
    best = 0
    used = [False] * len(glyphs)
    for i, g0 in enumerate(glyphs):
        if used[i]:
            continue
        line = [g0]
        last = g0
        for j in range(i + 1, len(glyphs)):
            g = glyphs[j]
            hmax = max(g.h, last.h)
            if (
                abs(g.cy - last.cy) <= 0.5 * hmax
                and max(g.h, last.h) <= 2.0 * min(g.h, last.h)
                and g.x - (last.x + last.w) <= 1.5 * hmax
            ):
                line.append(g)
                used[j] = True
                last = g
        if len(line) >= 2:
            widths = np.array([g.w for g in line], np.float64)
            if widths.std() / widths.mean() < p.min_width_cv:
                continue
        best = max(best, len(line))
    return best


def caption_glyphs(rgb: np.ndarray, params: OverlayParams | None = None) -> int:
    """Glyphs on the longest text line in the top or bottom band of the frame (0 for a clean frame).

    Burned-in captions, timestamps and station names are rows of thin, high-contrast strokes (light
    text with a dark outline, or the reverse) near the top or bottom edge. Strokes are found with a
    white and a black morphological top-hat (kernel about 2.5 % of the frame height, so structures
    thinner than that and ``stroke_contrast`` grey levels off their surroundings survive); their
    connected components that are letter-sized and not solid become glyphs; glyphs chained on one line
    with letter-like spacing and varied widths are counted. ``params.min_glyphs`` or more is a caption.
    """
    p = params or OverlayParams()
    g = grey(rgb)
    h = g.shape[0]
    band = max(8, int(round(p.band * h)))
    stroke = max(2, int(round(0.0125 * h)))
    best = 0
    for part in (g[:band], g[h - band :]):
        for mask in _stroke_masks(part, p.stroke_contrast, stroke):
            best = max(best, _longest_line(_glyphs(mask, h, p), p))
    return best


def overlay_box_fraction(rgb: np.ndarray, params: OverlayParams | None = None) -> float:
    """Area fraction (of the frame) of the largest flat, saturated, rectangular region.

    Camera images are never perfectly flat over a large area (sensor noise, shading), and natural
    regions are not axis-aligned rectangles; a banner, logo plate or colored bar pasted on the video
    is both. A pixel is flat when the grey standard deviation of its 5x5 neighbourhood is below
    ``box_max_std``; flat pixels with HSV saturation above ``box_min_saturation`` form components, and a
    component filling at least ``box_min_rectangularity`` of its bounding box, whose surroundings just
    outside each side differ from its color by at least ``box_min_rim_contrast`` in some RGB channel
    (median over each side), counts.
    """
    p = params or OverlayParams()
    g = grey(rgb).astype(np.float32)
    mean = cv2.blur(g, (5, 5))
    var = np.maximum(cv2.blur(g * g, (5, 5)) - mean * mean, 0)
    sat = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    mask = ((var < p.box_max_std**2) & (sat >= p.box_min_saturation)).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    best = 0.0
    total = float(g.shape[0] * g.shape[1])
    for i, (x, y, w, h, area) in enumerate(stats[1:], start=1):
        if area / total < p.box_min_fraction or area < 0.5 * w * h:
            continue
        # The 5x5 window eats ~2 px of each side of a flat box: measure against the shrunk box.
        inner = max(1, (w - 4)) * max(1, (h - 4))
        if area / float(inner) < p.box_min_rectangularity:
            continue
        # A pasted box has a crisp rim on every side: 2-5 px outside it the picture is different. A
        # flat patch of a blurred frame (or of sky) fades into its surroundings on some side.
        if _crisp_sides(rgb, comp == i, (x, y, w, h), p.box_min_rim_contrast):
            best = max(best, area / total)
    return best


def _crisp_sides(rgb: np.ndarray, mask: np.ndarray, box: tuple, contrast: float) -> bool:
    """Whether each side of the flat region ``mask`` (bounding box ``box``) that lies inside the frame
    has a strip 4-7 px outside it whose colors differ from the region's mean by >= ``contrast``
    (median of the largest per-channel difference)."""
    x, y, w, h = (int(v) for v in box)
    H, W = mask.shape
    mean = rgb[mask].astype(np.float32).mean(0)
    strips = [
        rgb[max(0, y - 7) : y - 3, x : x + w],
        rgb[y + h + 3 : y + h + 7, x : x + w],
        rgb[y : y + h, max(0, x - 7) : x - 3],
        rgb[y : y + h, x + w + 3 : x + w + 7],
    ]
    inside = [y - 3 > 0, y + h + 3 < H, x - 3 > 0, x + w + 3 < W]
    seen = 0
    for strip, ok in zip(strips, inside):
        if not ok or strip.size == 0:
            continue
        seen += 1
        diff = np.abs(strip.reshape(-1, 3).astype(np.float32) - mean).max(-1)
        if float(np.median(diff)) < contrast:
            return False
    return seen > 0


@dataclass
class FrameVerdict:
    index: int
    time_s: float
    decision: str  # "kept" | "dropped"
    reason: str  # "ok" | "blurred" | "caption" | "overlay" | joined with "+"
    blur_score: float
    overlay_score: float  # max(caption_glyphs / min_glyphs, box_fraction / box_min_fraction); >= 1 drops
    caption_glyphs: int
    overlay_box_fraction: float
    file: str = ""


def judge_frame(
    rgb: np.ndarray, blur_threshold: float, params: OverlayParams | None = None, index: int = 0, time_s: float = 0.0
) -> FrameVerdict:
    """Scores and keep/drop decision for one (already cropped) frame."""
    p = params or OverlayParams()
    blur = blur_score(rgb)
    glyphs = caption_glyphs(rgb, p)
    box = overlay_box_fraction(rgb, p)
    reasons = []
    if blur < blur_threshold:
        reasons.append("blurred")
    if glyphs >= p.min_glyphs:
        reasons.append("caption")
    if box >= p.box_min_fraction:
        reasons.append("overlay")
    score = max(glyphs / p.min_glyphs, box / p.box_min_fraction)
    return FrameVerdict(
        index,
        round(time_s, 3),
        "dropped" if reasons else "kept",
        "+".join(reasons) or "ok",
        round(blur, 2),
        round(score, 3),
        glyphs,
        round(box, 4),
    )


# ---- segmenters ---------------------------------------------------------------------------------
def segmenter_from_card(card, device: str = "cpu") -> tuple[Segmenter, object]:
    """(callable, label set) of a segmenter card: frames are resized to the card's resolution for the
    network and its label ids resized back (nearest) to the frame's."""
    import torch

    from ..cards import ModelCard, load_card
    from ..labels import get_label_set
    from ..models.segment import segment_graph_from_card

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


# ---- building -----------------------------------------------------------------------------------
@dataclass
class VideoDatasetConfig:
    every_s: float = 1.5
    size: tuple[int, int] = (480, 960)  # (H, W) of the stored frames: 2:1
    blur_threshold: float = 100.0
    overlay: OverlayParams = field(default_factory=OverlayParams)
    split: str = "train"
    start_s: float = 0.0
    max_frames: int | None = None  # per video
    batch_size: int = 4


def city_name(video: Path) -> str:
    """A Cityscapes "city" from the video's file name (no underscores: Cityscapes splits on them)."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", video.stem).strip("-").lower() or "video"


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


def build_video_dataset(
    videos: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    segmenter: Segmenter | None,
    label_set="cityscapes",
    config: VideoDatasetConfig | None = None,
    progress: bool = True,
) -> dict:
    """Sample, filter, pseudo-label and write ``videos`` under ``out``; returns the report (also saved).

    ``segmenter``: uint8 RGB [B,H,W,3] -> uint8 label ids [B,1,H,W] (``segmenter_from_card`` makes one
    from a segmenter card); None (a dry run) only judges the frames and writes the report.
    ``label_set``: the ids' set, for the file values, the ``*_gtFine_color.png`` previews and the id
    range checked. Each video becomes one Cityscapes "city" named after its file.
    """
    from tqdm import tqdm

    from ..labels import LabelSet, get_label_set

    cfg = config or VideoDatasetConfig()
    ls = label_set if isinstance(label_set, LabelSet) else get_label_set(label_set)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = [Path(v) for v in videos]
    for v in videos:  # fail on a bad path before hours of work on the others
        open_video(v)[0].release()
    report: dict = {
        "format": "cityserve-video-dataset/1",
        "settings": {
            "every_s": cfg.every_s,
            "size": list(cfg.size),
            "blur_threshold": cfg.blur_threshold,
            "overlay": asdict(cfg.overlay),
            "split": cfg.split,
            "label_set": ls.name,
            "dry_run": segmenter is None,
        },
        "videos": [],
    }
    total = 0
    for v in videos:
        n = count_samples(v, cfg.every_s, cfg.start_s)
        total = None if n is None or total is None else total + min(n, cfg.max_frames or n)
    bar = tqdm(total=total, desc="frames", unit="frame", disable=not progress)
    try:
        for v in videos:
            cap, fps, count = open_video(v)
            cap.release()
            city = city_name(v)
            taken = {x["city"] for x in report["videos"]}
            city = next(c for c in [city] + [f"{city}-{k}" for k in range(2, len(videos) + 2)] if c not in taken)
            verdicts: list[FrameVerdict] = []
            pending: list[tuple[FrameVerdict, np.ndarray]] = []

            def flush(pending: list = pending, city: str = city) -> None:
                if not pending:
                    return
                batch = np.stack([f for _, f in pending])
                ids = np.asarray(segmenter(batch))
                if ids.shape != (len(pending), 1) + batch.shape[1:3]:
                    raise ConfigError(
                        f"segmenter returned shape {ids.shape}, expected {(len(pending), 1) + batch.shape[1:3]}"
                    )
                if int(ids.max(initial=0)) >= ls.num_ids:
                    raise ConfigError(
                        f"segmenter produced label id {int(ids.max())}, outside label set "
                        f"{ls.name!r} (0..{ls.num_ids - 1})"
                    )
                for (verdict, frame), lab in zip(pending, ids):
                    verdict.file = _write_sample(out, cfg.split, city, verdict.index, frame, lab[0], ls)
                pending.clear()

            for fr in sample_frames(v, cfg.every_s, cfg.start_s, cfg.max_frames):
                frame = resize_crop_photo(fr.rgb, cfg.size)
                verdict = judge_frame(frame, cfg.blur_threshold, cfg.overlay, fr.index, fr.time_s)
                verdicts.append(verdict)
                if verdict.decision == "kept" and segmenter is not None:
                    pending.append((verdict, np.ascontiguousarray(frame)))
                    if len(pending) >= cfg.batch_size:
                        flush()
                bar.update(1)
                bar.set_postfix(kept=sum(x.decision == "kept" for x in verdicts))
            flush()
            summary: dict[str, int] = {"sampled": len(verdicts), "kept": sum(x.decision == "kept" for x in verdicts)}
            for x in verdicts:
                if x.decision == "dropped":
                    summary[f"dropped_{x.reason}"] = summary.get(f"dropped_{x.reason}", 0) + 1
            report["videos"].append(
                {
                    "video": str(v),
                    "city": city,
                    "fps": fps,
                    "frame_count": count,
                    "summary": summary,
                    "frames": [asdict(x) for x in verdicts],
                }
            )
    finally:
        bar.close()
    report["summary"] = {
        "sampled": sum(x["summary"]["sampled"] for x in report["videos"]),
        "kept": sum(x["summary"]["kept"] for x in report["videos"]),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(report))
    return report


def report_markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        "# Video dataset report",
        "",
        f"Every {s['every_s']} s, frames {s['size'][0]}x{s['size'][1]} (HxW), blur threshold "
        f"{s['blur_threshold']} (variance of the Laplacian), caption: >= {s['overlay']['min_glyphs']} glyphs "
        f"on a line, overlay: flat saturated box >= {s['overlay']['box_min_fraction']:.0%} of the frame.",
        "",
        f"Kept {report['summary']['kept']} of {report['summary']['sampled']} sampled frames.",
        "",
    ]
    for v in report["videos"]:
        summ = ", ".join(f"{k} {n}" for k, n in v["summary"].items())
        lines += [
            f"## {v['video']}",
            "",
            summ,
            "",
            "| frame | time (s) | decision | reason | blur score | overlay score | file |",
            "| ---: | ---: | --- | --- | ---: | ---: | --- |",
        ]
        for f in v["frames"]:
            lines.append(
                f"| {f['index']} | {f['time_s']:.2f} | {f['decision']} | {f['reason']} | "
                f"{f['blur_score']:.1f} | {f['overlay_score']:.2f} | {f['file']} |"
            )
        lines.append("")
    return "\n".join(lines)
