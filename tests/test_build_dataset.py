"""Dataset building from street video: a video written here from synthetic scenes, with blurred,
captioned and overlaid frames planted, goes through train/build_dataset.py with a real (random-weight)
FCHarDNet segmenter card; the kept/dropped decisions, the report and the Cityscapes tree are checked."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cityserve.cards import ModelCard
from cityserve.checkpoints import save_checkpoint
from cityserve.data.datasets import build_dataset
from cityserve.data.overlays import OverlayParams, caption_glyphs, overlay_box_fraction
from cityserve.data.sharpness import sharpness
from cityserve.data.synthetic import generate_scene
from cityserve.data.video import score_frame
from cityserve.data.video_reader import sample_frames
from cityserve.models.registry import family

REPO = Path(__file__).resolve().parents[1]
FPS, N_FRAMES, EVERY = 4, 20, 0.5  # frames 0, 2, ..., 18 are sampled
VH, VW = 144, 256  # 16:9 video; stored frames are 128x256 (2:1): 8 rows cropped top and bottom
SIZE = (128, 256)
BLUR_RATIO = 0.5  # the default: a frame below half its neighbours' sharpness is blurred
BLURRED = {2, 8, 14, 7}  # 7 is not sampled: it must not appear in the report
CAPTION_BOTTOM, CAPTION_TOP = {4, 5}, {12}  # 5 is not sampled
OVERLAY = {16}
EXPECTED = {
    0: "ok",
    2: "blurred",
    4: "caption",
    6: "ok",
    8: "blurred",
    10: "ok",
    12: "caption",
    14: "blurred",
    16: "overlay",
    18: "ok",
}


def _load_cli():
    spec = importlib.util.spec_from_file_location("train_build_dataset", REPO / "train" / "build_dataset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def motion_blur(rgb: np.ndarray, length: int = 17) -> np.ndarray:
    """A strong horizontal motion-blur kernel, as a car's sideways motion smears a frame."""
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0 / length
    return cv2.filter2D(rgb, -1, k)


def put_caption(rgb: np.ndarray, text: str, y_frac: float) -> np.ndarray:
    """Burned-in subtitle: white text with a black rim, as broadcasters and dashcams draw it."""
    out = rgb.copy()
    h, w = out.shape[:2]
    org, scale = (int(w * 0.06), int(h * y_frac)), h / 300
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def put_banner(rgb: np.ndarray) -> np.ndarray:
    """A flat, saturated channel-logo plate pasted in the top-right corner."""
    out = rgb.copy()
    h, w = out.shape[:2]
    cv2.rectangle(out, (int(w * 0.68), int(h * 0.12)), (int(w * 0.94), int(h * 0.3)), (200, 30, 40), -1)
    return out


@pytest.fixture(scope="module")
def street_video(tmp_path_factory) -> Path:
    """20 frames at 4 fps: a slow pan over 4 synthetic streets, with defects planted on known frames."""
    scenes = [generate_scene(seed, height=VH, width=VW + 40).photo for seed in (11, 12, 13, 14)]
    path = tmp_path_factory.mktemp("video") / "Hong Kong_drive 01.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (VW, VH))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG .avi"
    for i in range(N_FRAMES):
        frame = scenes[i // 5][:, (i % 5) * 8 : (i % 5) * 8 + VW]
        if i in BLURRED:
            frame = motion_blur(frame)
        if i in CAPTION_BOTTOM:
            frame = put_caption(frame, "NATHAN RD 08:15:42", 0.84)
        if i in CAPTION_TOP:
            frame = put_caption(frame, "Mong Kok 2024-05-01", 0.2)
        if i in OVERLAY:
            frame = put_banner(frame)
        writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def segmenter_card(tmp_path_factory) -> Path:
    """A real FCHarDNet (hardnet70, 19 Cityscapes train ids) with random weights, as a model card."""
    fam = family("fchardnet")
    cfg = fam.config_cls()
    torch.manual_seed(0)
    net = fam.build(cfg)
    card = ModelCard(
        name="fchardnet-random",
        kind="segmenter",
        arch="fchardnet",
        config=dataclasses.asdict(cfg),
        label_set="cityscapes",
        height=SIZE[0],
        width=SIZE[1],
    )
    return save_checkpoint(card, net.state_dict(), tmp_path_factory.mktemp("seg"), "fchardnet-random")


def test_sampling_takes_one_frame_every_interval(street_video):
    frames = list(sample_frames(street_video, every_s=EVERY))
    assert [f.index for f in frames] == list(range(0, N_FRAMES, 2))
    assert [f.time_s for f in frames] == pytest.approx([i / FPS for i in range(0, N_FRAMES, 2)])
    assert frames[0].rgb.shape == (VH, VW, 3)
    assert [f.index for f in sample_frames(street_video, every_s=1.5, start_s=1.0)] == [4, 10, 16]


def test_build_from_video_keeps_drops_and_labels(street_video, segmenter_card, tmp_path):
    out = tmp_path / "hk"
    cli = _load_cli()
    rc = cli.main(
        [
            str(street_video),
            "--segmenter",
            str(segmenter_card),
            "--out",
            str(out),
            "--every",
            str(EVERY),
            "--size",
            f"{SIZE[0]}x{SIZE[1]}",
            "--no-progress",
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    (video,) = report["videos"]
    frames = {f["index"]: f for f in video["frames"]}
    assert {i: f["reason"] for i, f in frames.items()} == EXPECTED
    assert video["summary"] == {
        "sampled": 10,
        "kept": 4,
        "dropped_blurred": 3,
        "dropped_caption": 2,
        "dropped_overlay": 1,
    }
    for i, f in frames.items():
        assert f["decision"] == ("kept" if EXPECTED[i] == "ok" else "dropped")
        assert f["time_s"] == pytest.approx(i / FPS)
        assert (f["blur_ratio"] < BLUR_RATIO) == (EXPECTED[i] == "blurred")
        assert (f["overlay_score"] >= 1.0) == (EXPECTED[i] in ("caption", "overlay"))
    md = (out / "report.md").read_text()
    assert "Kept 4 of 10" in md and "| 8 | 2.00 | dropped | blurred |" in md

    # The kept frames form a Cityscapes tree that the Cityscapes reader validates and reads.
    city = video["city"]
    assert city == "hong-kong-drive-01"
    ds = build_dataset("cityscapes", out, size=None)
    assert sorted(r.name for r in ds.records) == [f"{city}_000000_{i:06d}" for i in (0, 6, 10, 18)]
    assert frames[6]["file"] == f"leftImg8bit/train/{city}/{city}_000000_000006_leftImg8bit.png"
    s = ds[0]
    assert s["image"].shape == (3, *SIZE) and s["labels"].shape == (1, *SIZE)
    # Pseudo labels are label ids (train ids mapped back): only ids of the 19 evaluated classes.
    train_classes = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    assert set(np.unique(s["labels"]).tolist()) <= train_classes
    np.testing.assert_array_equal(s["instances"].numpy(), s["labels"].numpy())
    # The stored photo is the centre 2:1 crop of the video frame: compare with the sampled frame.
    stored = cv2.cvtColor(cv2.imread(str(out / frames[0]["file"])), cv2.COLOR_BGR2RGB)
    first = next(sample_frames(street_video, EVERY)).rgb
    np.testing.assert_array_equal(stored, first[8:136])


def test_dry_run_reports_without_writing(street_video, tmp_path):
    cli = _load_cli()
    rc = cli.main(
        [
            str(street_video),
            "--dry-run",
            "--out",
            str(tmp_path),
            "--every",
            "1",
            "--size",
            "128x256",
            # one sample per second: every sampled frame here shows another street (a drive's frames 1 s
            # apart share theirs), so the neighbours vary more: a lower ratio
            "--blur-ratio",
            "0.3",
            "--no-progress",
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [f["index"] for f in report["videos"][0]["frames"]] == [0, 4, 8, 12, 16]
    assert [f["reason"] for f in report["videos"][0]["frames"]] == ["ok", "caption", "blurred", "caption", "overlay"]
    assert not (tmp_path / "leftImg8bit").exists()


def test_cli_errors_name_the_input(tmp_path, capsys):
    cli = _load_cli()
    assert cli.main([str(tmp_path / "missing.mp4"), "--dry-run", "--out", str(tmp_path / "o")]) == 2
    assert "missing.mp4" in capsys.readouterr().err
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    assert cli.main([str(tmp_path / "junk.mp4"), "--dry-run", "--out", str(tmp_path / "o")]) == 2
    assert "junk.mp4" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a real run needs a segmenter
        cli.main([str(tmp_path / "junk.mp4"), "--out", str(tmp_path / "o")])


def test_detectors_on_single_frames():
    clean = generate_scene(21, height=128, width=256).photo
    params = OverlayParams()
    assert caption_glyphs(clean) < params.min_glyphs and overlay_box_fraction(clean) == 0.0
    assert caption_glyphs(put_caption(clean, "Tsim Sha Tsui 12:30", 0.92)) >= params.min_glyphs
    assert caption_glyphs(put_caption(clean, "Tsim Sha Tsui 12:30", 0.5)) < params.min_glyphs  # mid-frame: a sign
    assert overlay_box_fraction(put_banner(clean)) >= params.box_min_fraction
    assert sharpness(motion_blur(clean)) < sharpness(clean) / 3
    v = score_frame(put_banner(clean), params)
    assert v.reason == "overlay" and v.overlay_score >= 1
