"""cityserve.labels: the built-in tables against their sources, conversions, files, and the errors."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch

from cityserve.errors import LabelError
from cityserve.labels import (
    LabelSet,
    get_label_set,
    instance_edges_np,
    read_instance_png,
    read_label_png,
    write_color_png,
    write_id_png,
)
from cityserve.labels.builtin import bit_interleave_color

BUILTINS = ["cityscapes", "ade20k", "coco-stuff"]


def voronoi_ids(label_set: LabelSet, h: int = 128, w: int = 256, regions: int = 16, seed: int = 0) -> np.ndarray:
    """A label map of ``regions`` convex regions with natural (non block-aligned) boundaries, each a
    class with its own color (so colors -> ids is unambiguous)."""
    rng = np.random.default_rng(seed)
    distinct = sorted(set(label_set.color_to_id().values()))
    seeds = rng.integers(0, [h, w], size=(regions, 2))
    classes = rng.choice(distinct, size=regions, replace=False)
    yy, xx = np.mgrid[:h, :w]
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    return classes[d.argmin(-1)].astype(label_set.id_dtype)


# ---------------------------------------------------------------- Cityscapes
def test_cityscapes_matches_cityscapesscripts_table():
    from cityscapesscripts.helpers.labels import id2label, labels, trainId2label

    cs = get_label_set("cityscapes")
    assert cs.num_ids == 34 and cs.dontcare_id is None and cs.num_train_ids == 19
    for lid in range(34):
        ref, c = id2label[lid], cs[lid]
        assert (c.id, c.name, c.color, c.train_id, c.ignore_in_eval, c.category, c.has_instances) == (
            ref.id,
            ref.name,
            tuple(ref.color),
            ref.trainId,
            ref.ignoreInEval,
            ref.category,
            ref.hasInstances,
        )
        assert tuple(cs.palette[lid]) == tuple(ref.color)
    assert "license plate" not in cs.names and len(labels) == 35
    # train ids -> ids exactly as cityscapesscripts' trainId2label (255 -> 0 'unlabeled')
    train = np.array([t for t in trainId2label if t >= 0])
    assert cs.from_train_ids(train).tolist() == [trainId2label[t].id for t in train.tolist()]


def test_cityscapes_train_id_round_trip():
    cs = get_label_set("cityscapes")
    all_ids = np.arange(34)
    train = cs.to_train_ids(all_ids)
    assert train.dtype == np.uint8
    assert train[7] == 0 and train[26] == 13 and train[33] == 18 and train[0] == 255 and train[18] == 255
    kept = all_ids[train != 255]
    assert len(kept) == 19
    assert np.array_equal(cs.from_train_ids(cs.to_train_ids(kept)), kept)
    assert np.array_equal(cs.to_train_ids(cs.from_train_ids(np.arange(19))), np.arange(19))
    with pytest.raises(LabelError, match=r"train id 19 at 2 pixels .*'cityscapes'"):
        cs.from_train_ids(np.array([[19, 19, 3]]))


def test_cityscapes_shared_colors_read_back_as_lowest_id():
    cs = get_label_set("cityscapes")
    m = cs.color_to_id()
    assert m[(0, 0, 0)] == 0 and m[(153, 153, 153)] == 17
    ids = np.array([[1, 2, 3, 4, 18, 26]])
    assert cs.colors_to_ids(cs.ids_to_colors(ids)).tolist() == [[0, 0, 0, 0, 17, 26]]


# ---------------------------------------------------------------- ADE20K
def test_ade20k_palette_and_names():
    ade = get_label_set("ade20k")
    assert ade.num_ids == 151 and ade.dontcare_id == 150 and ade.palette.shape == (151, 3)
    assert ade.names[:3] == ["wall", "building", "sky"] and ade.names[7] == "bed" and ade.names[149] == "flag"
    assert ade[150].name == "other" and tuple(ade.palette[150]) == (0, 0, 0) and ade[150].train_id == 255
    assert tuple(ade.palette[0]) == (120, 120, 120) and tuple(ade.palette[149]) == (92, 0, 255)
    assert tuple(ade.palette[20]) == (0, 102, 200)  # car
    # The standard palette has exactly one repeated color: road (6) and skyscraper (48) are both gray.
    colors = [tuple(c) for c in ade.palette[:150].tolist()]
    assert len(set(colors)) == 149 and colors[6] == colors[48] == (140, 140, 140)
    assert (0, 0, 0) not in colors  # 'other' is the only black
    assert ade.color_to_id()[(140, 140, 140)] == 6
    assert ade.to_train_ids(np.array([0, 149, 150])).tolist() == [0, 149, 255]
    assert ade.from_train_ids(np.array([0, 149, 255])).tolist() == [0, 149, 150]


def test_ade20k_file_convention():
    ade = get_label_set("ade20k")
    values = np.array([[0, 1, 2, 150]], dtype=np.uint8)
    ids = ade.file_to_ids(values)
    assert ids.tolist() == [[150, 0, 1, 149]] and ids.dtype == np.uint8
    assert np.array_equal(ade.ids_to_file(ids), values)
    with pytest.raises(LabelError, match=r"file value 151 at 3 pixels .*'ade20k'"):
        ade.file_to_ids(np.array([151, 151, 151, 4]))


# ---------------------------------------------------------------- COCO-Stuff
def test_coco_stuff_layout_and_unknown():
    coco = get_label_set("coco-stuff")
    assert coco.num_ids == 183 and coco.dontcare_id == 182 and coco[182].name == "unknown"
    assert coco.names[0] == "person" and coco.names[11] == "street sign" and coco.names[90] == "hair brush"
    assert coco.names[91] == "banner" and coco.names[181] == "wood"
    assert coco.file_to_ids(np.array([255, 0, 181])).tolist() == [182, 0, 181]
    assert coco.ids_to_file(np.array([182, 0, 181])).tolist() == [255, 0, 181]
    with pytest.raises(LabelError, match=r"file value 182 at 1 pixel .*'coco-stuff'"):
        coco.file_to_ids(np.array([182, 255]))

    # Colors: SPADE's util.labelcolormap (PASCAL bit interleaving of id + 1), written out as SPADE does.
    def spade_cmap(i):
        r = g = b = 0
        n = i + 1
        for j in range(7):
            bits = format(n, "08b")
            r ^= int(bits[-1]) << (7 - j)
            g ^= int(bits[-2]) << (7 - j)
            b ^= int(bits[-3]) << (7 - j)
            n >>= 3
        return r, g, b

    assert [tuple(c) for c in coco.palette.tolist()] == [spade_cmap(i) for i in range(183)]
    assert coco.from_train_ids(np.array(255)) == 182 and coco.colors_to_ids(np.zeros((0, 3), np.uint8)).shape == (0,)
    assert bit_interleave_color(1) == (128, 0, 0) and len({tuple(c) for c in coco.palette.tolist()}) == 183


# ---------------------------------------------------------------- custom sets and get_label_set
CUSTOM = {
    "name": "mini",
    "classes": [
        {"id": 0, "name": "road", "color": [128, 64, 128], "train_id": 0},
        {"id": 1, "name": "tree", "color": "#6b8e23"},
        {"id": 2, "name": "void", "color": [0, 0, 0]},
    ],
    "dontcare_id": 2,
}


def test_custom_label_set_json_and_yaml(tmp_path):
    import yaml

    j, y = tmp_path / "mini.json", tmp_path / "mini.yaml"
    j.write_text(json.dumps(CUSTOM))
    y.write_text(yaml.safe_dump(CUSTOM))
    for path in (j, y, str(j)):
        ls = get_label_set(path)
        assert ls.name == "mini" and ls.num_ids == 3 and ls.dontcare_id == 2
        assert ls[1].color == (107, 142, 35) and ls[1].train_id == 1 and ls[2].train_id == 255
        assert ls[2].ignore_in_eval and not ls[0].ignore_in_eval
    assert get_label_set(j) == get_label_set(y) == get_label_set(CUSTOM)
    # equal sets hash alike (a dict or set keyed by label sets holds one entry per definition)
    assert get_label_set(j) is not get_label_set(y) and len({get_label_set(j), get_label_set(y)}) == 1
    assert hash(get_label_set(j)) != hash(get_label_set("cityscapes"))
    for name in BUILTINS + ["mini"]:
        ls = get_label_set(j if name == "mini" else name)
        assert get_label_set(json.loads(json.dumps(ls.to_dict()))) == ls
    assert get_label_set("ADE20K") is get_label_set("ade20k") and get_label_set("cocostuff").name == "coco-stuff"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["classes"].append({"id": 1, "name": "car", "color": [0, 0, 142]}),
            r"duplicate id 1 \('tree' and 'car'\)",
        ),
        (
            lambda d: d["classes"][1].update(color=[128, 64, 128]),
            r"classes 0 'road' and 1 'tree' share color \(128, 64, 128\)",
        ),
        (lambda d: d["classes"][0].update(color=[128, 64, 300]), r"class 0 'road': color \[128, 64, 300\]"),
        (lambda d: d["classes"][0].update(color=[1, 2]), r"class 0 'road': color \[1, 2\]"),
        (lambda d: d["classes"][2].update(id=5), r"ids must run 0..5 without gaps .*missing 2, 3, 4"),
        (lambda d: d["classes"][0].pop("color"), r"classes\[0\] lacks color"),
        (lambda d: d.update(dontcare_id=9), r"dontcare_id 9"),
    ],
)
def test_custom_label_set_errors_name_the_file(tmp_path, change, message):
    d = json.loads(json.dumps(CUSTOM))
    change(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(LabelError, match=message) as info:
        get_label_set(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_malformed_label_set_files_and_unknown_names(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"name": "x", "classes": [')
    with pytest.raises(LabelError, match=r"broken.json: not valid JSON \(line 1"):
        get_label_set(p)
    q = tmp_path / "broken.yaml"
    q.write_text("classes: [\n  - {id: 0\n")
    with pytest.raises(LabelError, match=r"broken.yaml: not valid YAML"):
        get_label_set(q)
    with pytest.raises(LabelError, match=r"unknown label set 'mapillary'.*cityscapes, ade20k, coco-stuff"):
        get_label_set("mapillary")


# ---------------------------------------------------------------- colors and ids
def test_unknown_color_is_rejected_naming_value_count_and_set():
    cs = get_label_set("cityscapes")
    rgb = cs.ids_to_colors(np.full((20, 30), 7))
    rgb[0:15, 0:23] = (12, 34, 56)  # 345 pixels
    with pytest.raises(LabelError) as info:
        cs.colors_to_ids(rgb)
    msg = str(info.value)
    assert msg.startswith("color (12, 34, 56) at 345 pixels is not in label set 'cityscapes'"), msg
    rgb[19, 0:5] = (1, 2, 3)
    rgb[18, 0:4] = (9, 9, 8)
    rgb[17, 0:2] = (200, 1, 1)
    rgb[16, 0:1] = (201, 1, 1)
    with pytest.raises(
        LabelError,
        match=r"colors \(12, 34, 56\) at 345 pixels, \(1, 2, 3\) at 5 pixels, "
        r"\(9, 9, 8\) at 4 pixels and 2 more are not in label set 'cityscapes'",
    ):
        cs.colors_to_ids(rgb)


def test_out_of_range_ids_are_rejected():
    cs = get_label_set("cityscapes")
    ids = np.full((4, 4), 7, dtype=np.int64)
    ids[0, :3] = 34
    ids[1, 0] = -1
    with pytest.raises(
        LabelError,
        match=r"ids 34 at 3 pixels, -1 at 1 pixel are out of range for label set "
        r"'cityscapes' \(ids 0..33\)",
    ):
        cs.ids_to_colors(ids)
    ids[1, 0] = 7
    assert cs.check_ids(ids, num_channels=35) is not None  # official SPADE Cityscapes: 35 channels
    with pytest.raises(LabelError, match=r"id 151 at 1 pixel is out of range for label set 'ade20k'"):
        get_label_set("ade20k").to_train_ids(np.array([151, 3]))
    with pytest.raises(LabelError, match="integer"):
        cs.check_ids(np.zeros((2, 2), np.float32))


def test_nearest_fixes_a_jpeg_compressed_color_label_map():
    cs = get_label_set("cityscapes")
    ids = voronoi_ids(cs, 128, 256, regions=16, seed=3)
    rgb = cs.ids_to_colors(ids)
    ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    decoded = cv2.imdecode(jpg, cv2.IMREAD_COLOR)[..., ::-1]
    assert (decoded == rgb).all(-1).mean() < 0.5  # JPEG really changed the colors
    with pytest.raises(LabelError, match="use nearest=True"):
        cs.colors_to_ids(decoded)
    snapped = cs.colors_to_ids(decoded, nearest=True)
    assert (snapped == ids).mean() > 0.99
    assert np.array_equal(read_label_png(jpg.tobytes(), "cityscapes", nearest=True), snapped)
    # exact colors stay exact in nearest mode, thin structures included
    thin = ids.copy()
    thin[::7, :] = 26
    assert np.array_equal(cs.colors_to_ids(cs.ids_to_colors(thin), nearest=True), thin)


# ---------------------------------------------------------------- PNG files
@pytest.mark.parametrize("name", BUILTINS)
def test_png_round_trips(tmp_path, name):
    ls = get_label_set(name)
    ids = voronoi_ids(ls, 32, 64, regions=12, seed=1)
    ids[0, :5] = ls.dontcare_id if ls.dontcare_id is not None else 0
    color_bytes = write_color_png(tmp_path / "color.png", ids, ls)
    assert (tmp_path / "color.png").read_bytes() == color_bytes
    assert np.array_equal(read_label_png(tmp_path / "color.png", name), ids)
    id_bytes = write_id_png(None, ids, name)
    raw = cv2.imdecode(np.frombuffer(id_bytes, np.uint8), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 2 and np.array_equal(raw, ls.ids_to_file(ids))  # the file holds the file convention
    back = read_label_png(id_bytes, ls)
    assert np.array_equal(back, ids) and back.dtype == np.uint8


def test_png_reads_bgr_alpha_and_16bit(tmp_path):
    cs = get_label_set("cityscapes")
    ids = voronoi_ids(cs, 16, 32, regions=6)
    bgra = np.concatenate([cs.ids_to_colors(ids)[..., ::-1], np.full(ids.shape + (1,), 77, np.uint8)], -1)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(bgra))
    assert np.array_equal(read_label_png(png.tobytes(), cs), ids)
    ok, png16 = cv2.imencode(".png", ids.astype(np.uint16))
    assert np.array_equal(read_label_png(png16.tobytes(), cs), ids)
    big = get_label_set(
        {
            "name": "big",
            "classes": [{"id": i, "name": f"c{i}", "color": list(bit_interleave_color(i))} for i in range(300)],
        }
    )
    assert big.id_dtype == np.int32 and big.file_dtype == np.uint16
    many = np.arange(600).reshape(20, 30) % 300
    assert np.array_equal(read_label_png(write_id_png(tmp_path / "big.png", many, big), big), many)


def test_malformed_png_is_rejected_cleanly(tmp_path):
    cs = get_label_set("cityscapes")
    good = write_color_png(None, np.full((8, 8), 7), cs)
    for bad in (good[: len(good) // 2], good[:-12], b"", b"not a png at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40):
        with pytest.raises(LabelError, match=r"label map \(bytes\)"):
            read_label_png(bad, cs)
    path = tmp_path / "truncated_gtFine_color.png"
    path.write_bytes(good[:50])
    with pytest.raises(LabelError, match=r"truncated_gtFine_color.png: not a readable PNG .*malformed or truncated"):
        read_label_png(path, cs)
    with pytest.raises(LabelError, match=r"cannot read label map .*missing.png"):
        read_label_png(tmp_path / "missing.png", cs)
    # a gray id map mistakenly saved as RGB gets a hint, and a file's name precedes value errors
    gray = np.repeat(np.full((4, 4, 1), 7, np.uint8), 3, -1)
    ok, png = cv2.imencode(".png", gray)
    (tmp_path / "ids_as_rgb.png").write_bytes(png.tobytes())
    with pytest.raises(LabelError, match=r"ids_as_rgb.png: color \(7, 7, 7\) at 16 pixels .*id map saved as RGB"):
        read_label_png(tmp_path / "ids_as_rgb.png", cs)


def test_instance_png_round_trip():
    inst = np.array([[26000, 26001, 7], [24000, 24000, 33]], dtype=np.int32)
    ok, png = cv2.imencode(".png", inst.astype(np.uint16))
    out = read_instance_png(png.tobytes())
    assert out.dtype == np.int32 and np.array_equal(out, inst)
    ok, png = cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(LabelError, match="instance map is a 1-channel"):
        read_instance_png(png.tobytes())


# ---------------------------------------------------------------- instance edges
def spade_get_edges(t: torch.Tensor) -> torch.Tensor:
    """NVlabs SPADE ``Pix2PixModel.get_edges``, as written there (ByteTensor ORs), for comparison."""
    edge = torch.zeros(t.size(), dtype=torch.bool)
    edge[:, :, :, 1:] = edge[:, :, :, 1:] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    edge[:, :, :, :-1] = edge[:, :, :, :-1] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    edge[:, :, 1:, :] = edge[:, :, 1:, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    edge[:, :, :-1, :] = edge[:, :, :-1, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    return edge.float()


def test_instance_edges_match_spade_and_the_render_graph():
    from cityserve.models.render import instance_edges

    rng = np.random.default_rng(0)
    for shape, k in [((2, 1, 17, 23), 3), ((1, 1, 1, 9), 2), ((1, 1, 8, 1), 2), ((1, 1, 32, 64), 40)]:
        inst = rng.integers(0, k, size=shape).astype(np.int32)
        inst[..., :2, :2] = 5  # a blob, so not every pixel is an edge
        ours = instance_edges_np(inst)
        assert ours.dtype == np.uint8 and ours.shape == inst.shape
        t = torch.from_numpy(inst)
        assert np.array_equal(ours, spade_get_edges(t).numpy().astype(np.uint8))
        assert np.array_equal(ours, instance_edges(t).numpy().astype(np.uint8))
    assert np.array_equal(instance_edges_np(inst[0, 0]), ours[0, 0])  # [H, W] works too
    assert instance_edges_np(np.full((5, 5), 3)).sum() == 0


def test_instance_edges_reproduce_the_official_spade_input(fixtures_dir):
    d = fixtures_dir / "spade"
    labels = torch.load(d / "cityscapes_ngf2_labels.pt", weights_only=True).numpy()
    inst = torch.load(d / "cityscapes_ngf2_instance.pt", weights_only=True).numpy()
    expected = json.loads((d / "cityscapes_ngf2_config.json").read_text())["input"]["sha256_float32_bytes"]
    cs = get_label_set("cityscapes")
    cs.check_ids(labels, num_channels=35)
    onehot = (labels[:, 0][:, None] == np.arange(35)[None, :, None, None]).astype(np.float32)
    x = np.concatenate([onehot, instance_edges_np(inst).astype(np.float32)], axis=1)
    assert hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() == expected
