"""Frames from real-looking footage: seeking gives the frames decoding every frame gives; blur is judged
against the video itself (sharp low-texture highway frames kept at every resolution, planted motion blur
and defocus dropped); pseudo labels are scored against ground truth named by frame number or image stem.

Every video is written here with PyAV: H.264 with B-frames and short GOPs (as dashcams record), MJPEG."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from cityserve.data.overlays import OverlayParams
from cityserve.data.sharpness import RelativeBlurRule, sharpness
from cityserve.data.synthetic import generate_scene
from cityserve.data.video import VideoDatasetConfig, build_video_dataset
from cityserve.data.video_reader import probe, sample_frames
from cityserve.labels import get_label_set
from cityserve.metrics import label_set_scores

FPS = 4


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS, codec: str = "libx264", gop: int = 8) -> Path:
    with av.open(str(path), "w") as c:
        st = c.add_stream(codec, rate=fps)
        st.height, st.width = frames[0].shape[:2]
        if codec == "libx264":
            st.pix_fmt = "yuv420p"
            st.options = {"g": str(gop), "keyint_min": str(gop), "bf": "2", "sc_threshold": "0", "crf": "10"}
        else:
            st.pix_fmt = "yuvj420p"
            st.options = {"q:v": "2"}
        for f in frames:
            for p in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return path


# ---- seeking vs decoding every frame ------------------------------------------------------------
@pytest.fixture(scope="module")
def coded_videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("coded")
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (96, 200, 3), dtype=np.uint8), (0, 0), 2)
    frames = []
    for i in range(75):  # every frame differs (a pan plus a frame-number bar), so a wrong frame shows
        f = np.ascontiguousarray(base[:, i % 40 : i % 40 + 160])
        f[:6, : 2 * i] = 255
        frames.append(f)
    return {
        "h264-gop8": write_video(d / "gop8.mp4", frames, fps=25, gop=8),
        "h264-gop50": write_video(d / "gop50.mp4", frames, fps=25, gop=50),
        "mjpeg": write_video(d / "mjpeg.avi", frames, fps=25, codec="mjpeg"),
    }


@pytest.mark.parametrize("name", ["h264-gop8", "h264-gop50", "mjpeg"])
def test_seeking_gives_the_frames_of_decoding_every_frame(coded_videos, name):
    path = coded_videos[name]
    info = probe(path)
    assert info.fps == 25 and info.frame_count == 75 and info.keyframes >= 2
    for every, start in ((0.5, 0.0), (0.12, 0.3), (1.04, 0.07), (0.04, 2.52)):
        seek = list(sample_frames(path, every, start, method="seek"))
        decode = list(sample_frames(path, every, start, method="decode"))
        assert [f.index for f in seek] == [f.index for f in decode] and len(seek) >= 1
        assert [f.index for f in decode][:3] == [round((start + k * every) * 25) for k in range(3)][: len(decode[:3])]
        for a, b in zip(seek, decode):
            np.testing.assert_array_equal(a.rgb, b.rgb)
            assert a.time_s == pytest.approx(a.index / 25)


def test_unreadable_videos_are_named(tmp_path):
    from cityserve.data.validate import DatasetError

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(DatasetError, match="junk.mp4"):
        probe(junk)
    with pytest.raises(DatasetError, match="missing.mp4"):
        list(sample_frames(tmp_path / "missing.mp4"))


# ---- blur judged against the video --------------------------------------------------------------
def highway(h: int, w: int, t: int) -> np.ndarray:
    """A sharp, low-texture highway frame: sky gradient, smooth hills, asphalt, lane dashes, one car."""
    y = np.linspace(0, 1, h)[:, None, None]
    img = (np.array([110, 160, 225]) * (1 - 0.4 * y) + 20 * y).repeat(w, 1)
    horizon = int(0.5 * h)
    hills = (horizon - 0.06 * h * (1 + np.sin(np.linspace(0, 6, w) + t * 0.05))).astype(int)
    for x in range(w):
        img[hills[x] : horizon, x] = (90, 120, 80)
    img[horizon:] = (95, 95, 98)
    for k in range(6):  # lane dashes moving toward the camera
        y0 = horizon + int(((k + (t % 4) / 4) / 6) ** 2 * (h - horizon))
        y1 = min(h, y0 + max(2, h // 40))
        img[y0:y1, w // 2 - w // 200 - 1 : w // 2 + w // 200 + 1] = 235
    x0, y0 = int(w * (0.25 + 0.01 * t)), int(h * 0.6)
    img[y0 : y0 + h // 8, x0 : x0 + w // 7] = (150, 20, 25)  # car body
    img[y0 + h // 40 : y0 + h // 16, x0 + w // 60 : x0 + w // 7 - w // 60] = (40, 50, 60)  # windows
    noise = np.random.default_rng(t).normal(0, 1.0, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


_WIDE: dict = {}


def city(h: int, w: int, t: int) -> np.ndarray:
    """A high-texture city street (a synthetic scene), panned."""
    if (h, w) not in _WIDE:
        _WIDE[h, w] = generate_scene(31, h, int(w * 1.25)).photo
    x = int(t * w * 0.02)
    return np.ascontiguousarray(_WIDE[h, w][:, x : x + w])


def motion_blur(rgb: np.ndarray) -> np.ndarray:
    n = max(5, int(rgb.shape[1] * 0.03)) | 1
    k = np.zeros((n, n), np.float32)
    k[n // 2] = 1.0 / n
    return cv2.filter2D(rgb, -1, k)


def defocus(rgb: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), rgb.shape[0] / 150)


def caption(rgb: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    h, w = out.shape[:2]
    for color, thick in (((0, 0, 0), max(3, h // 90)), ((255, 255, 255), max(1, h // 270))):
        cv2.putText(
            out,
            "A1 HWY 12:30:05",
            (w // 16, int(h * 0.9)),
            cv2.FONT_HERSHEY_SIMPLEX,
            h / 300,
            color,
            thick,
            cv2.LINE_AA,
        )
    return out


PLANTED = {3: ("blurred", motion_blur), 6: ("blurred", defocus), 8: ("caption", caption)}
RESOLUTIONS = ((216, 384), (360, 640), (540, 960))


@pytest.fixture(scope="module")
def drives(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("drives")
    out = {}
    for kind, draw in (("highway", highway), ("city", city)):
        for h, w in RESOLUTIONS:
            frames = []
            for t in range(11):
                f = draw(h, w, t)
                if t in PLANTED:
                    f = PLANTED[t][1](f)
                frames.append(f)
            out[f"{kind}-{h}p"] = write_video(d / f"{kind}-{h}p.mp4", frames)
    return out


def test_sharpness_is_resolution_normalised():
    """One view seen by cameras of 360p, 540p and 720p (area-resized from 1080p): about one score, where
    the raw variance of the Laplacian changes several times over."""
    for draw in (highway, city):
        full = draw(1080, 1920, 2)
        views = [
            cv2.resize(full, (w, h), interpolation=cv2.INTER_AREA) for h, w in ((360, 640), (540, 960), (720, 1280))
        ]
        scores = [sharpness(v) for v in views]
        raw = [cv2.Laplacian(cv2.cvtColor(v, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for v in views]
        assert max(scores) / min(scores) < 1.2, scores
        assert max(raw) / min(raw) > 1.5, raw


def test_blur_judged_against_the_video_on_varied_drives(drives, tmp_path):
    report = build_video_dataset(
        list(drives.values()), tmp_path, None, config=VideoDatasetConfig(every_s=0.25, size=(256, 512)), progress=False
    )
    expected = {t: PLANTED[t][0] if t in PLANTED else "ok" for t in range(11)}
    sharp = {}
    for name, v in zip(drives, report["videos"]):
        assert {f["index"]: f["reason"] for f in v["frames"]} == expected, name
        for f in v["frames"]:
            assert (f["blur_ratio"] < 0.5) == (f["reason"] == "blurred")
        sharp[name] = [f["blur_score"] for f in v["frames"] if f["reason"] != "blurred"]
        blurred = [f["blur_score"] for f in v["frames"] if f["reason"] == "blurred"]
        assert max(blurred) < 0.5 * min(sharp[name])
    # The former rule (variance of the Laplacian of the 480x960 frame < 100) drops every sharp highway frame.
    from cityserve.data.transforms import resize_crop_photo

    for h, w in RESOLUTIONS:
        stored = [cv2.cvtColor(resize_crop_photo(highway(h, w, t), (480, 960)), cv2.COLOR_RGB2GRAY) for t in (0, 5)]
        assert max(cv2.Laplacian(g, cv2.CV_64F).var() for g in stored) < 100
    assert "0.5 x reference" in report["settings"]["blur"]["rule"]
    md = (tmp_path / "report.md").read_text()
    assert "| 3 | 0.75 | dropped | blurred |" in md and "reference" in md
    assert all(v["sampling"]["frames_per_s"] > 0 for v in report["videos"])


def test_blur_rule_keeps_both_sides_of_a_cut():
    rule = RelativeBlurRule()
    scores = [2000, 2100, 1900, 2050, 2000, 200, 210, 190, 205, 60, 200, 195]
    decisions = [d.blurred for d in rule.decide_all(scores)]
    assert decisions == [False] * 9 + [True] + [False] * 2
    assert RelativeBlurRule(floor=250).decide_all(scores)[6].blurred  # the absolute floor on top


# ---- pseudo labels against ground truth ---------------------------------------------------------
def test_pseudo_labels_scored_against_ground_truth(tmp_path):
    ls = get_label_set("cityscapes")
    scenes = [generate_scene(s, 144, 320) for s in (41, 42, 43, 44, 45, 46)]
    video = write_video(tmp_path / "drive.avi", [s.photo for s in scenes], codec="mjpeg")
    gt = tmp_path / "gt" / "drive"
    gt.mkdir(parents=True)
    for i in (1, 3, 4):  # labels for some frames, named by frame number as CamVid does
        cv2.imwrite(str(gt / f"0001TP_{i:06d}_L.png"), ls.ids_to_file(scenes[i].labels))
    folder = tmp_path / "stills"  # and an image folder whose labels are palette colors named by stem
    folder.mkdir()
    for i in (0, 2):
        cv2.imwrite(str(folder / f"still{i}.png"), cv2.cvtColor(scenes[i].photo, cv2.COLOR_RGB2BGR))
    (tmp_path / "gt" / "stills").mkdir()
    cv2.imwrite(
        str(tmp_path / "gt" / "stills" / "still2.png"),
        cv2.cvtColor(ls.ids_to_colors(scenes[2].labels), cv2.COLOR_RGB2BGR),
    )

    def all_road(batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), 1) + batch.shape[1:3], 7, np.uint8)

    size = (128, 256)
    # six different streets in a row, and synthetic solid colors: only ground-truth scoring is tested here
    no_overlays = OverlayParams(min_glyphs=10**6, box_min_fraction=2.0)
    cfg = VideoDatasetConfig(every_s=0.25, size=size, blur=RelativeBlurRule(ratio=0.1), overlay=no_overlays)
    report = build_video_dataset([video, folder], tmp_path / "out", all_road, ls, cfg, False, tmp_path / "gt")
    from cityserve.data.ground_truth import resize_crop_ids

    gts = [resize_crop_ids(scenes[i].labels, size) for i in (1, 3, 4, 2)]
    want = label_set_scores([np.full(size, 7)] * 4, gts, ls)
    q = report["pseudo_label_quality"]
    assert q["frames"] == 4 and q["miou"] == pytest.approx(want.miou) and 0 < q["miou"] < 0.1
    assert q["per_class_iou"]["road"] == pytest.approx(want.iou[0]) and q["per_class_iou"]["car"] == 0
    v_video, v_folder = report["videos"]
    assert v_video["pseudo_label_quality"]["frames"] == 3 and v_folder["pseudo_label_quality"]["frames"] == 1
    rows = {f["index"]: f for f in v_video["frames"]}
    assert rows[3]["gt_file"].endswith("0001TP_000003_L.png") and rows[2]["gt_file"] == ""
    assert [f["time_s"] for f in v_folder["frames"]] == [None, None]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["pseudo_label_quality"]["frames"] == 4
    assert "Pseudo labels vs ground truth (all sources, 4 frames)" in (tmp_path / "out" / "report.md").read_text()
