#!/usr/bin/env python
"""Frames sampled per second from a long dashcam-like video: decoding every frame vs seeking.

    python benchmarks/video_sampling.py                  # writes benchmarks/studies/video-sampling.{json,md}
    python benchmarks/video_sampling.py --minutes 0.5    # a quick look

Writes H.264 videos (1280x720, 30 fps, x264 veryfast: CABAC and B-frames; a pan over a synthetic street
with sensor noise) with a keyframe every second (as
dashcams record) and every 250 frames (x264's default), then takes one frame every 1.5 s, as
``train/build_dataset.py`` does, three ways: the builder's former path (OpenCV, grab every frame and
retrieve the wanted ones), PyAV decoding every frame, and PyAV seeking (``cityserve.data.video_reader``,
the builder's default now). All three must return the same frame numbers; the figure is sampled frames
per second of wall time, in one run, one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cityserve.data.synthetic import generate_scene  # noqa: E402
from cityserve.data.video_reader import sample_frames, target_indices  # noqa: E402

FPS, H, W, EVERY = 30, 720, 1280, 1.5


def write(path: Path, frames: int, gop: int) -> None:
    pano = generate_scene(7, H, W * 3).photo
    rng = np.random.default_rng(0)  # sensor noise: real footage costs its decoder far more than a clean pan
    noise = [rng.normal(0, 4, (H, W, 3)) for _ in range(7)]
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=FPS)
        st.height, st.width, st.pix_fmt = H, W, "yuv420p"
        st.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "preset": "veryfast", "crf": "23"}
        for i in range(frames):
            x = int((i * 2) % (2 * W))
            img = np.clip(pano[:, x : x + W] + noise[i % len(noise)], 0, 255).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            for p in st.encode(f):
                c.mux(p)
        for p in st.encode():
            c.mux(p)


def opencv_grab_all(path: Path) -> list[int]:
    """The builder's former sampler: grab() every frame, retrieve() the wanted ones."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    targets = target_indices(fps, EVERY)
    target, index, out = next(targets), -1, []
    while cap.grab():
        index += 1
        if index < target:
            continue
        ok, bgr = cap.retrieve()
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out.append(index)
        while target <= index:
            target = next(targets)
    cap.release()
    return out


def timed(fn) -> tuple[list[int], float]:
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=2.0, help="video length (default 2)")
    p.add_argument("--out", default=str(REPO / "benchmarks/studies/video-sampling.json"))
    args = p.parse_args()
    frames = int(args.minutes * 60 * FPS)
    rows, load0 = [], os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        for gop in (FPS, 250):
            path = Path(d) / f"drive_g{gop}.mp4"
            t = time.perf_counter()
            write(path, frames, gop)
            write_s = time.perf_counter() - t
            runs = {
                "opencv grab every frame (before)": lambda path=path: opencv_grab_all(path),
                "pyav decode every frame": lambda path=path: [
                    f.index for f in sample_frames(path, EVERY, method="decode")
                ],
                "pyav seek (after)": lambda path=path: [f.index for f in sample_frames(path, EVERY, method="seek")],
            }
            results = {name: timed(fn) for name, fn in runs.items()}
            indices = {tuple(r[0]) for r in results.values()}
            assert len(indices) == 1, "the samplers disagree on the frames"
            n = len(results["pyav seek (after)"][0])
            rows.append(
                {
                    "video": f"{args.minutes:g} min, {W}x{H}, {FPS} fps, H.264 keyframe every {gop} frames",
                    "frames_in_video": frames,
                    "frames_sampled": n,
                    "write_s": round(write_s, 1),
                    "methods": {
                        k: {"seconds": round(s, 2), "frames_per_s": round(n / s, 2)} for k, (_, s) in results.items()
                    },
                    "speedup_seek_vs_before": round(
                        results["opencv grab every frame (before)"][1] / results["pyav seek (after)"][1], 2
                    ),
                }
            )
    result = {
        "command": "python benchmarks/video_sampling.py"
        + (f" --minutes {args.minutes:g}" if args.minutes != 2 else ""),
        "date": time.strftime("%Y-%m-%d"),
        "device": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
        "versions": {"pyav": av.__version__, "opencv": cv2.__version__, "python": platform.python_version()},
        "every_s": EVERY,
        "loadavg_start_end": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
        "note": "shared 2-core machine (other engineers' jobs running): compare the methods within a row, as ratios",
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Frames sampled per second, one every {EVERY} s",
        "",
        f"`{result['command']}` · {result['date']} · {result['device']['cpu_count']} CPUs · PyAV {av.__version__}, "
        f"OpenCV {cv2.__version__} · load average {result['loadavg_start_end'][0]} at start, "
        f"{result['loadavg_start_end'][1]} at end (a shared machine: read the ratios)",
        "",
        "| video | sampled | " + " | ".join(rows[0]["methods"]) + " | seek vs before |",
        "| --- | ---: | " + " | ".join("---:" for _ in rows[0]["methods"]) + " | ---: |",
    ]
    for r in rows:
        cells = [f"{m['frames_per_s']:.1f} frames/s ({m['seconds']:.1f} s)" for m in r["methods"].values()]
        lines.append(
            f"| {r['video']} | {r['frames_sampled']} | " + " | ".join(cells) + f" | {r['speedup_seek_vs_before']}x |"
        )
    lines += [
        "",
        "All methods return the same frame numbers (checked by the script). With a keyframe every 30 frames and one",
        "frame wanted every 45, seeking skips the GOPs holding no wanted frame; with 250-frame GOPs there is no",
        "keyframe between two wanted frames, so it decodes on, as reading every frame does.",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
