"""Snapping generated layouts to label maps (argmax, nearest palette color), speck removal, instances,
and the layout metrics, on hand-made maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cityserve.errors import LabelError
from cityserve.labels import get_label_set
from cityserve.labels.snapping import colors_to_ids, count_instances, instance_map, logits_to_ids, remove_specks
from cityserve.metrics_layouts import (
    adjacency_counts,
    adjacency_distance,
    class_frequencies,
    class_frequency_jsd,
    components_distance,
    components_per_class,
    jensen_shannon,
    layout_features,
    layout_frechet_distance,
)

ROAD, SIDEWALK, BUILDING, SKY, PERSON, CAR = 7, 8, 11, 23, 24, 26
CS = get_label_set("cityscapes")


def street(h: int = 16, w: int = 32) -> np.ndarray:
    ids = np.full((h, w), SKY, np.uint8)
    ids[h // 2 :] = ROAD
    ids[h // 4 : h // 2, : w // 2] = BUILDING
    return ids


def test_logits_to_ids_is_argmax_and_checks_shape():
    ids = street()
    logits = np.eye(35, dtype=np.float32)[ids].transpose(2, 0, 1) * 5 + 0.1
    out = logits_to_ids(logits, 35)
    assert out.dtype == np.uint8 and np.array_equal(out, ids)
    assert logits_to_ids(np.stack([logits, logits])).shape == (2, 16, 32)
    with pytest.raises(LabelError, match="classes"):
        logits_to_ids(logits, 19)
    with pytest.raises(LabelError, match="shape"):
        logits_to_ids(logits[0])
    bad = logits.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(LabelError, match="finite"):
        logits_to_ids(bad)


def test_colors_to_ids_snaps_noisy_palette_image_to_valid_ids():
    ids = street()
    rng = np.random.default_rng(0)
    rgb = np.clip(CS.palette[ids].astype(int) + rng.integers(-6, 7, (*ids.shape, 3)), 0, 255).astype(np.uint8)
    out = colors_to_ids(rgb, "cityscapes")
    assert out.shape == ids.shape and out.max() < CS.num_ids
    assert np.array_equal(out, ids)


def test_remove_specks_merges_small_components_into_neighbours():
    ids = street()
    ids[12, 5] = CAR  # one-pixel speck inside the road
    ids[2:4, 20:22] = PERSON  # a 4-pixel speck in the sky
    ids[10:14, 20:28] = CAR  # a 32-pixel car: stays
    out = remove_specks(ids, min_area=5)
    assert out[12, 5] == ROAD and (out[2:4, 20:22] == SKY).all()
    assert (out[10:14, 20:28] == CAR).all()
    assert np.array_equal(out[ids != PERSON][ids[ids != PERSON] != CAR], ids[ids != PERSON][ids[ids != PERSON] != CAR])
    # after merging no component of any class is below the minimum area
    for c in np.unique(out):
        import cv2

        n, _, stats, _ = cv2.connectedComponentsWithStats((out == c).astype(np.uint8), connectivity=4)
        assert stats[1:, cv2.CC_STAT_AREA].min() >= 5
    assert np.array_equal(remove_specks(ids, 1), ids)


def test_remove_specks_on_a_map_of_specks_keeps_the_largest():
    ids = np.array([[1, 2], [3, 3]], np.uint8)
    out = remove_specks(ids, min_area=10)
    assert (out == 3).all()


def test_instance_map_numbers_thing_components():
    ids = street()
    ids[10:12, 2:6] = CAR
    ids[10:12, 10:14] = CAR
    ids[12:14, 20:22] = PERSON
    inst = instance_map(ids, "cityscapes")
    assert inst.dtype == np.int32
    assert set(np.unique(inst[ids == CAR]).tolist()) == {CAR * 1000, CAR * 1000 + 1}
    assert np.unique(inst[ids == PERSON]).tolist() == [PERSON * 1000]
    assert (inst[ids == ROAD] == ROAD).all()  # stuff keeps its class id
    assert count_instances(inst) == {CAR: 2, PERSON: 1}
    with pytest.raises(LabelError):
        instance_map(np.full((4, 4), 99, np.uint8))


# ---- metrics -------------------------------------------------------------------------------------------
def test_class_frequencies_and_jsd_known_answers():
    a = np.zeros((2, 2), np.int64)  # all class 0
    b = np.ones((2, 2), np.int64)  # all class 1
    half = np.array([[0, 0], [1, 1]])
    assert np.allclose(class_frequencies([a, half], 3), [0.75, 0.25, 0])
    assert class_frequency_jsd([a], [a], 3) == 0.0
    assert class_frequency_jsd([a], [b], 3) == pytest.approx(1.0)  # disjoint: 1 bit
    # JS({1, 0}, {1/2, 1/2}) = 1 - (3/4) log2(4/3) ... computed by hand: 0.3113
    assert jensen_shannon([1, 0], [0.5, 0.5]) == pytest.approx(0.311278, abs=1e-5)


def test_adjacency_counts_and_distance():
    m = np.array([[0, 0, 1], [2, 2, 1]])
    adj = adjacency_counts([m], 3)
    # horizontal edges: 0|1 once, 2|1 once; vertical: 0|2 twice, 1|1 none
    assert adj[0, 1] == 1 and adj[1, 2] == 1 and adj[0, 2] == 2 and adj.sum() == 4
    assert adjacency_distance([m], [m.copy()], 3) == 0.0
    flipped = m[::-1]  # the same pairs
    assert adjacency_distance([m], [flipped], 3) == pytest.approx(0.0)
    other = np.array([[0, 1], [0, 1]])  # only 0|1 edges
    assert adjacency_distance([m], [other], 3) > 0.3
    assert adjacency_distance([np.zeros((2, 2), int)], [np.zeros((2, 2), int)], 3) == 0.0


def test_components_per_class():
    m = np.zeros((5, 5), np.int64)
    m[0, 0] = m[4, 4] = m[0, 4] = 1  # three separate class-1 pixels
    m2 = np.zeros((5, 5), np.int64)
    m2[2, 2] = 1
    c = components_per_class([m, m2], 2)
    assert np.allclose(c, [1.0, 2.0])  # class 0 one piece per map; class 1: 3 and 1
    assert components_distance([m], [m2], 2) == pytest.approx(1.0)  # (0 + 2) / 2


def test_layout_frechet_distance_is_zero_for_one_set_and_grows_with_difference():
    rng = np.random.default_rng(0)
    real = [street() for _ in range(6)]
    for i, r in enumerate(real):
        r[8 + i % 4 :, : 4 + 2 * i] = SIDEWALK
    f1 = layout_features(real, 35, width=8)
    assert f1.shape == (6, 64)
    assert np.array_equal(f1, layout_features(real, 35, width=8))  # fixed seed: the same features
    near = [r.copy() for r in real]
    near[0][0, 0] = ROAD
    noise = [rng.integers(0, 35, (16, 32)) for _ in range(6)]
    d_same = layout_frechet_distance(real, real, 35, width=8)
    d_near = layout_frechet_distance(real, near, 35, width=8)
    d_noise = layout_frechet_distance(real, noise, 35, width=8)
    assert abs(d_same) < 1e-3 * d_noise and 100 * d_near < d_noise
