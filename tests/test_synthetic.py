"""Synthetic street scenes: determinism, class coverage, label/instance conventions, geometric depth,
a photo that is more than a color lookup, the Cityscapes files, the CLI and the shipped examples."""

from __future__ import annotations

import numpy as np
import pytest

from cityserve.data.synthetic import (
    CLASSES_ALWAYS,
    CLASSES_PRESENT,
    INSTANCE_CLASSES,
    SKY_DEPTH,
    Scene,
    generate_scene,
    scene_stem,
    write_scene,
)

N_SEEDS = 30
SIZE = (128, 256)
CITYSCAPES_IDS = set(range(34))
ROAD, SKY, BUILDING, CAR = 7, 23, 11, 26
EXAMPLE_SEEDS = [1, 8, 12, 17]  # examples/street_01..04 (see examples/README.md)


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return [generate_scene(s, *SIZE) for s in range(N_SEEDS)]


def _ground_fit(sc: Scene) -> tuple[float, float]:
    """1/depth = a * row + b on the road: the ground plane seen by a pinhole camera."""
    r, c = np.nonzero(sc.labels == ROAD)
    a, b = np.polyfit(r + 0.5, 1.0 / sc.depth[r, c].astype(np.float64), 1)
    return a, b


def test_every_claimed_class_appears_and_nothing_else(scenes):
    seen: set[int] = set()
    for sc in scenes:
        ids = set(np.unique(sc.labels).tolist())
        assert set(CLASSES_ALWAYS) <= ids, f"seed {sc.seed} lacks {set(CLASSES_ALWAYS) - ids}"
        assert ids <= set(CLASSES_PRESENT), f"seed {sc.seed} draws unclaimed ids {ids - set(CLASSES_PRESENT)}"
        seen |= ids
    assert seen == set(CLASSES_PRESENT), f"claimed but never drawn in {N_SEEDS} seeds: {set(CLASSES_PRESENT) - seen}"
    assert set(CLASSES_PRESENT) <= CITYSCAPES_IDS


def test_arrays_have_the_contract_types(scenes):
    for sc in scenes[:3]:
        H, W = SIZE
        assert sc.labels.shape == (H, W) and sc.labels.dtype == np.uint8
        assert sc.instances.shape == (H, W) and sc.instances.dtype == np.int32
        assert sc.photo.shape == (H, W, 3) and sc.photo.dtype == np.uint8
        assert sc.depth.shape == (H, W) and sc.depth.dtype == np.float32


def test_deterministic_per_seed_and_seeds_differ():
    a, b, c = generate_scene(7, 64, 128), generate_scene(7, 64, 128), generate_scene(8, 64, 128)
    for name in ("labels", "instances", "photo", "depth"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.labels != c.labels).mean() > 0.05
    assert np.abs(a.photo.astype(int) - c.photo.astype(int)).mean() > 5


def test_the_global_numpy_state_is_neither_used_nor_touched():
    np.random.seed(0)
    a = generate_scene(3, 32, 64)
    state = np.random.get_state()[1].copy()
    np.random.seed(12345)
    b = generate_scene(3, 32, 64)
    np.random.seed(0)
    generate_scene(3, 32, 64)
    assert np.array_equal(np.random.get_state()[1], state)
    assert np.array_equal(a.photo, b.photo)


@pytest.mark.parametrize("size", [(64, 128), (100, 300), (256, 512), (90, 60)])
def test_any_resolution(size):
    sc = generate_scene(2, *size)
    assert sc.labels.shape == size and sc.photo.shape == (*size, 3) and sc.depth.shape == size
    assert {ROAD, SKY, BUILDING} <= set(np.unique(sc.labels).tolist())


def test_a_seed_is_the_same_street_at_every_size():
    small, big = generate_scene(4, 64, 128), generate_scene(4, 128, 256)
    # Nearest-neighbour downsample of the big label map lands on the small map's pixel centres.
    agree = (big.labels[1::2, 1::2] == small.labels).mean()
    assert agree > 0.9, agree


def test_instances_follow_the_cityscapes_convention(scenes):
    for sc in scenes:
        inst, lab = sc.instances, sc.labels
        things = np.isin(lab, INSTANCE_CLASSES)
        assert (inst[things] >= 1000).all() and (inst[things] // 1000 == lab[things]).all()
        assert (inst[~things] == lab[~things]).all()
    # Several cars in a scene are separate instances numbered from 0.
    ks = sorted({int(i) % 1000 for sc in scenes for i in np.unique(sc.instances[sc.labels == CAR])})
    assert ks[0] == 0 and len(ks) > 3


def test_depth_is_the_geometry(scenes):
    for sc in scenes:
        d = sc.depth
        assert np.isfinite(d).all() and (d > 0).all()
        sky = sc.labels == SKY
        assert (d[sky] == SKY_DEPTH).all() and (d[~sky] < SKY_DEPTH).all()
        # Road depth grows towards the vanishing point, in every column.
        road = sc.labels == ROAD
        for c in range(0, SIZE[1], 8):
            rows = np.nonzero(road[:, c])[0]
            assert (np.diff(d[rows, c]) < 0).all(), (sc.seed, c)
        # Road pixels lie exactly on one ground plane: 1/Z is affine in the row, the same in every column.
        a, b = _ground_fit(sc)
        r, c = np.nonzero(road)
        pred = 1.0 / (a * (r + 0.5) + b)
        assert np.allclose(d[r, c], pred, rtol=1e-3), sc.seed
        # Nothing visible below the horizon is behind the ground plane (things stand on it).
        rows = np.arange(SIZE[0])[:, None] + 0.5
        ground = np.where(a * rows + b > 0, 1.0 / np.maximum(a * rows + b, 1e-9), np.inf)
        assert (d <= ground * 1.001 + 1e-3).all(), sc.seed


def test_road_depth_is_camera_height_times_focal_over_row_offset():
    sc = generate_scene(11, 96, 192)
    cam = sc.camera
    r, c = np.nonzero(sc.labels == ROAD)
    expected = cam.height * cam.f / (r + 0.5 - cam.cy)
    assert np.allclose(sc.depth[r, c], expected, rtol=1e-5)


def test_cars_are_in_front_of_the_road_behind_them(scenes):
    checked = 0
    for sc in scenes:
        for i in np.unique(sc.instances[sc.labels == CAR]):
            r, c = np.nonzero(sc.instances == i)
            for col in np.unique(c):
                top = r[c == col].min()
                # The pixel just above the car's top edge, where that is road, is road behind the car.
                if top > 0 and sc.labels[top - 1, col] == ROAD:
                    assert sc.depth[top - 1, col] > sc.depth[top, col], (sc.seed, int(i), int(col))
                    checked += 1
    assert checked > 50


def test_photo_is_textured_lit_and_varies_per_scene(scenes):
    road_means, lane_contrast = [], []
    for sc in scenes:
        gray = sc.photo.astype(np.float64).mean(2)
        road = sc.labels == ROAD
        assert gray[road].std() > 3, "road is a flat color"
        assert gray[sc.labels == BUILDING].std() > 8, "buildings lack windows / texture"
        road_means.append(sc.photo[road].mean(0))
        lane_contrast.append(np.percentile(gray[road], 99.5) - np.median(gray[road]))
    # Per-scene materials and light: the same class looks different across scenes.
    assert np.std(np.array(road_means), axis=0).max() > 5
    # Lane markings are painted on road pixels (still labelled road) in nearly every scene.
    assert np.median(lane_contrast) > 40
    # Sky is brighter than road on average (a sanity check on lighting).
    sc = scenes[0]
    assert sc.photo[sc.labels == SKY].mean() > sc.photo[sc.labels == ROAD].mean()


def test_generate_scene_rejects_tiny_sizes():
    from cityserve.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 8x8"):
        generate_scene(0, 4, 64)


def test_write_scene_round_trips(tmp_path):
    import cv2

    from cityserve.labels import read_instance_png, read_label_png

    sc = generate_scene(5, 64, 128, ego_vehicle=False)
    paths = write_scene(sc, tmp_path, scene_stem(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"synthetic_000005_000019_{k}"
        for k in ("leftImg8bit.png", "gtFine_labelIds.png", "gtFine_instanceIds.png", "gtFine_color.png", "depth.npy")
    )
    assert np.array_equal(cv2.imread(str(paths["photo"]))[..., ::-1], sc.photo)
    assert np.array_equal(cv2.imread(str(paths["labels"]), cv2.IMREAD_UNCHANGED), sc.labels)
    inst = cv2.imread(str(paths["instances"]), cv2.IMREAD_UNCHANGED)
    assert inst.dtype == np.uint16 and np.array_equal(inst, sc.instances)
    assert np.array_equal(read_instance_png(str(paths["instances"])), sc.instances)
    assert np.array_equal(read_label_png(str(paths["color"]), "cityscapes"), sc.labels)
    assert np.array_equal(np.load(paths["depth"]), sc.depth)


def test_cityscapes_layout_is_read_by_the_cityscapes_dataset(tmp_path):
    from cityserve.data.datasets import CityscapesDataset

    for s in (0, 1):
        write_scene(generate_scene(s, 32, 64), tmp_path, scene_stem(s), layout="cityscapes", split="val")
    assert (tmp_path / "gtFine" / "val" / "synthetic" / "synthetic_000001_000019_gtFine_labelIds.png").is_file()
    ds = CityscapesDataset(tmp_path, split="val")
    assert len(ds) == 2
    sample = ds[1]
    ref = generate_scene(1, 32, 64)
    assert np.array_equal(sample["labels"][0].numpy(), ref.labels)
    assert np.array_equal(sample["instances"][0].numpy(), ref.instances)


def test_synth_cli_writes_scenes(tmp_path, capsys):
    from cityserve.cli import main

    assert main(["synth", "--seeds", "0-1,5", "--size", "32x64", "--layout", "flat", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.glob("*_gtFine_labelIds.png"))
    assert written == [f"{scene_stem(s)}_gtFine_labelIds.png" for s in (0, 1, 5)]
    with pytest.raises(SystemExit) as e:
        main(["synth", "--seeds", "9-3", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "seeds must look like" in capsys.readouterr().err


def test_shipped_examples_are_what_the_documented_command_makes(repo_root):
    from cityserve.labels import read_instance_png, read_label_png

    for i, seed in enumerate(EXAMPLE_SEEDS, 1):
        png = repo_root / "examples" / f"street_{i:02d}.png"
        sc = generate_scene(seed, 256, 512, ego_vehicle=False)
        assert np.array_equal(read_label_png(str(png), "cityscapes"), sc.labels), png
        assert np.array_equal(read_instance_png(str(png.with_name(f"street_{i:02d}_instanceIds.png"))), sc.instances)
    readme = (repo_root / "examples" / "README.md").read_text()
    assert "cityserve synth --seeds 1,8,12,17 --size 256x512 --layout demo --out examples" in readme
