"""Build a Cityscapes-style training set from street video (dashcam footage), pseudo-labelled.

Thin entry point: argument parsing around ``cityserve.data.video.build_video_dataset``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EPILOG = """\
examples:
  # one frame every 1.5 s, 960x480 (2:1), labelled by a segmenter card
  python -m train.build_dataset hk_drive_01.mp4 hk_drive_02.mp4 --segmenter runs/fchardnet/best.card.json \\
      --out data/hongkong

  # look at the keep/drop decisions first (no segmenter, nothing but the report is written)
  python -m train.build_dataset drive.mp4 --out /tmp/probe --dry-run --blur-ratio 0.4

  # frames that come with ground-truth labels (label PNGs named by frame number): the report gives the
  # pseudo labels' mIoU and per-class IoU against them; an image folder works as a source too
  python -m train.build_dataset drive.mp4 frames_dir/ --segmenter seg.card.json --ground-truth gt/ --out data/hk

what is dropped:
  blurred  sharpness < --blur-ratio x its reference: the smaller of the medians of the --blur-window
           sampled frames before and after it (sharpness: variance of the Laplacian of Gaussian of the grey
           frame resized to 256 rows, so a view scores about the same at any resolution). Judged against
           the video itself, so sharp smooth scenes (open road, sky) are kept, and motion blur and
           defocus (which take most of a frame's sharpness) are dropped. --blur-floor adds an absolute
           minimum, for footage blurred throughout.
  caption  >= --min-glyphs letter-like, high-contrast strokes on one line in the top or bottom
           --band of the frame (subtitles, timestamps, station names)
  overlay  a flat, saturated, rectangular region >= --box-fraction of the frame (banners, logo plates)

sampling: --sampling seek (default) jumps to the keyframe before each wanted frame when one lies after
the frame decoded last, and decodes on otherwise: the same frames as --sampling decode (every frame
decoded), much faster when frames are wanted far apart than keyframes are.

ground truth (--ground-truth DIR): label PNGs (the label set's file values, or palette colors) in DIR or
DIR/<video stem or folder name>/; a video frame's file ends in its frame number (000120.png,
0001TP_006690_L.png), an image's file starts with the image's stem.

output: leftImg8bit/SPLIT/CITY/*_leftImg8bit.png, gtFine/SPLIT/CITY/*_gtFine_{labelIds,instanceIds,color}.png
(CITY is the video's file name), report.json and report.md listing every sampled frame's time,
decision, reason and scores, the rules, the sampling speed, and the pseudo labels' scores against
ground truth. Read it back with cityserve.data.datasets.build_dataset("cityscapes", OUT)
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from cityserve.cliutil import parse_size

    p = argparse.ArgumentParser(
        prog="python -m train.build_dataset",
        description="Turn street videos into a Cityscapes-style dataset: sample frames, drop blurred and "
        "captioned ones, crop to 2:1, label the rest with a segmenter checkpoint, write a report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "videos", nargs="+", help="video files FFmpeg can read (.mp4, .avi, .mov, .mkv, ...) or folders of images"
    )
    p.add_argument("--out", required=True, help="output dataset folder (created)")
    p.add_argument("--segmenter", help="segmenter model card (or its .pt / folder) that labels the frames")
    p.add_argument("--dry-run", action="store_true", help="only judge the frames and write the report")
    p.add_argument("--every", type=float, default=1.5, metavar="SECONDS", help="frame interval (default 1.5)")
    p.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="skip the first seconds")
    p.add_argument("--max-frames", type=int, default=None, help="sample at most this many frames per video")
    p.add_argument(
        "--size",
        type=parse_size,
        default=(480, 960),
        metavar="HxW",
        help="stored frame size, HxW (default 480x960; 2:1, or e.g. 512x512 for square)",
    )
    p.add_argument(
        "--blur-ratio", type=float, default=0.5, help="blurred below this fraction of the reference (default 0.5)"
    )
    p.add_argument(
        "--blur-window", type=int, default=4, help="sampled frames on each side forming the reference (default 4)"
    )
    p.add_argument(
        "--blur-floor", type=float, default=0.0, help="also blurred below this absolute sharpness (default 0: off)"
    )
    p.add_argument(
        "--sampling", choices=("seek", "decode"), default="seek", help="seek to frames or decode all (default seek)"
    )
    p.add_argument("--ground-truth", metavar="DIR", help="label maps of some frames: score the pseudo labels")
    p.add_argument("--min-glyphs", type=int, default=5, help="glyphs on a line that make a caption (default 5)")
    p.add_argument("--band", type=float, default=0.3, help="top/bottom fraction searched for captions (default 0.3)")
    p.add_argument(
        "--box-fraction",
        type=float,
        default=0.02,
        help="flat saturated box area (fraction of the frame) that makes an overlay (default 0.02)",
    )
    p.add_argument("--split", default="train", help="Cityscapes split folder to write (default train)")
    p.add_argument("--label-set", default=None, help="label set of the output (default: the segmenter's)")
    p.add_argument("--batch-size", type=int, default=4, help="frames per segmenter call (default 4)")
    p.add_argument("--device", default="cpu", help="torch device of the segmenter (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not args.dry_run and not args.segmenter:
        p.error("--segmenter CARD is required (or --dry-run to only judge the frames)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from cityserve.errors import run_with_exit_codes

    return run_with_exit_codes(lambda: build(args))


def build(args: argparse.Namespace) -> int:
    from cityserve.data.overlays import OverlayParams
    from cityserve.data.sharpness import RelativeBlurRule
    from cityserve.data.video import VideoDatasetConfig, build_video_dataset, segmenter_from_card

    segmenter, label_set = None, args.label_set or "cityscapes"
    if not args.dry_run:
        segmenter, card_set = segmenter_from_card(args.segmenter, device=args.device)
        label_set = args.label_set or card_set
    cfg = VideoDatasetConfig(
        every_s=args.every,
        size=tuple(args.size),
        blur=RelativeBlurRule(args.blur_ratio, args.blur_window, args.blur_floor),
        overlay=OverlayParams(band=args.band, min_glyphs=args.min_glyphs, box_min_fraction=args.box_fraction),
        split=args.split,
        start_s=args.start,
        max_frames=args.max_frames,
        batch_size=args.batch_size,
        method=args.sampling,
    )
    report = build_video_dataset(
        args.videos, args.out, segmenter, label_set, cfg, progress=not args.no_progress, ground_truth=args.ground_truth
    )
    s = report["summary"]
    print(f"kept {s['kept']} of {s['sampled']} sampled frames -> {args.out} (see report.md)")
    q = report.get("pseudo_label_quality")
    if q:
        miou = "–" if q["miou"] is None else f"{q['miou']:.3f}"
        print(f"pseudo labels vs ground truth on {q['frames']} frames: mIoU {miou}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
