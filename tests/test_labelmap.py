"""One home for label-map operations and the tensor contract: every part that resizes or checks label
ids (data loading, the video dataset builder, serving, evaluation, the CLI, the benchmark chain) gives
the same answer, and the graphs, engines and client use the contract's names and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers_export import deeplab_card

from cityserve import contract
from cityserve.bench.engines import Photo2PhotoGraph
from cityserve.commands.render import fit_to_model
from cityserve.data import transforms
from cityserve.data.video import segmenter_from_card
from cityserve.errors import LabelError
from cityserve.evaluation import segmenter_fn
from cityserve.labels import check_ids, fit_nearest, get_label_set, labelmap, nearest_indices, resize_nearest
from cityserve.models.registry import graph_tensors
from cityserve.serving.codec import RenderInputs

# (source size, target size): enlarging by 1.5 and shrinking by 2.5 make pixel-centre sampling and
# floor(i * src / dst) disagree, so a part that samples differently fails here.
SIZES = [((20, 40), (30, 60)), ((40, 80), (16, 32)), ((12, 24), (36, 72))]


def block_ids(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Ids that change every pixel or two, so any difference in sampling shows."""
    return np.random.default_rng(seed).integers(0, 34, (h, w)).astype(np.uint8)


def test_the_rule_samples_pixel_centres_in_integers():
    assert nearest_indices(5, 2).tolist() == [1, 3]  # centres 1.25, 3.75
    assert nearest_indices(2, 6).tolist() == [0, 0, 0, 1, 1, 1]
    assert nearest_indices(3, 3).tolist() == [0, 1, 2]
    for src, dst in [(7, 3), (3, 7), (1024, 333), (333, 1024)]:  # the same rule as torch's nearest-exact
        x = torch.arange(src, dtype=torch.float32)[None, None, None]
        ref = torch.nn.functional.interpolate(x, size=(1, dst), mode="nearest-exact")[0, 0, 0].long()
        assert nearest_indices(src, dst).tolist() == ref.tolist(), (src, dst)


@pytest.mark.parametrize("src,dst", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_loading_serving_cli_and_benchmark_resize_a_label_map_identically(src, dst):
    ids = block_ids(*src)
    expected = resize_nearest(ids, *dst)
    assert expected.shape == dst and expected.dtype == ids.dtype
    # training data: resize (and the centre crop, here a no-op) as the data loaders do
    photo = np.zeros((*src, 3), np.uint8)
    _, loaded, _ = transforms.apply(photo, ids, ids.astype(np.int32), dst, augment=None)
    assert np.array_equal(loaded, expected)
    # serving: prepare_render's ids from a segmenter of another size
    served = RenderInputs(*dst, num_classes=35).prepare(ids[None])["labels"][0]
    assert np.array_equal(served, expected)
    # `cityserve render` with a label map of another size (and its instance map)
    card = type("Card", (), {"height": dst[0], "width": dst[1], "name": "m"})()
    fitted, inst = fit_to_model(ids, ids.astype(np.int32), card)
    assert np.array_equal(fitted, expected) and np.array_equal(inst, expected)
    # the benchmark's torch photo2photo chain

    class Ids(torch.nn.Module):
        def forward(self, image):
            return torch.from_numpy(ids)[None, None].expand(image.shape[0], 1, *src)

    class Echo(torch.nn.Module):
        use_instance, z_dim = False, 0

        def forward(self, labels, instances=None, z=None):
            return labels

    chained = Photo2PhotoGraph(Ids(), Echo(), dst)(torch.zeros(2, *src, 3, dtype=torch.uint8))
    assert np.array_equal(chained.numpy()[1, 0], expected)


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    return deeplab_card(tmp_path_factory.mktemp("seg"))


def test_evaluation_and_the_video_dataset_builder_resize_segmenter_ids_identically(segmenter):
    """Photos of 1.5x the segmenter's size: both segment at its own size and nearest-resize the ids back."""
    photos = np.random.default_rng(1).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    native = np.stack([transforms.resize_photo(p, 64, 64) for p in photos])
    own = segmenter_fn(segmenter)(native)  # [B, 64, 64] at the segmenter's size
    assert len(np.unique(own)) > 1, "the random segmenter should find several classes"
    expected = resize_nearest(own, 96, 96)
    evaluated = segmenter_fn(segmenter, native_size=True)(photos)
    video, _ = segmenter_from_card(segmenter)
    built = video(photos)[:, 0]
    assert np.array_equal(evaluated, expected) and np.array_equal(built, expected)
    floor_rule = own[:, (np.arange(96) * 64 // 96)[:, None], np.arange(96) * 64 // 96]
    assert not np.array_equal(expected, floor_rule)  # the test tells the two rules apart


def test_fit_refuses_another_aspect_ratio():
    with pytest.raises(LabelError, match="20x40 but the model renders 30x30.*another aspect ratio"):
        fit_nearest(block_ids(20, 40), 30, 30)
    ids = block_ids(8, 16)
    same, inst, resized = fit_nearest(ids, 8, 16)
    assert same is ids and inst is None and not resized


def test_one_id_check_names_ids_pixels_and_scope():
    ids = np.zeros((4, 4), np.int32)
    ids[0, :3], ids[1, 0] = 40, -1
    with pytest.raises(
        LabelError, match=r"^ids 40 at 3 pixels, -1 at 1 pixel are out of range for model 'm' \(ids 0\.\.34\)$"
    ):
        check_ids(ids, 35, "model 'm'")
    with pytest.raises(LabelError, match="a model with 35 label channels"):
        check_ids(ids, 35)
    with pytest.raises(LabelError, match="must be an integer array, not float32"):
        check_ids(ids.astype(np.float32), 35)
    assert check_ids(np.abs(ids), 41) is not None
    # the label set's own check is the same function, scoped to the set
    with pytest.raises(
        LabelError, match=r"ids 40 at 3 pixels, -1 at 1 pixel are out of range for label set 'cityscapes'"
    ):
        get_label_set("cityscapes").check_ids(ids)


def test_as_batch_gives_the_contract_layout():
    assert labelmap.as_batch(np.zeros((3, 4))).shape == (1, 1, 3, 4)
    assert labelmap.as_batch(np.zeros((2, 3, 4))).shape == (2, 1, 3, 4)
    with pytest.raises(LabelError, match=r"\[H,W\], \[B,H,W\] or \[B,1,H,W\]; got shape \(2, 3, 3, 4\)"):
        labelmap.as_batch(np.zeros((2, 3, 3, 4)))


def test_contract_specs_and_triton_types(segmenter):
    labels, instances, z = contract.render_inputs(35, 8, 16, use_instance=True, z_dim=4)
    assert (labels.name, labels.dtype, labels.shape) == ("labels", "uint8", ("batch", 1, 8, 16))
    assert (instances.dtype, z.dtype, z.dims) == ("int32", "float32", (4,))
    assert contract.render_inputs(300, 8, 16)[0].dtype == "int32"  # ids past uint8
    assert contract.render_output(8, 16).triton_type == "TYPE_UINT8"
    assert str(contract.segment_output(8, 16)) == "labels uint8 [B,1,8,16]"
    assert contract.png_spec(contract.PHOTO_PNG).triton_type == "TYPE_STRING"
    for triton in ("TYPE_UINT8", "TYPE_INT32", "TYPE_FP32", "TYPE_FP16"):  # both ways round
        assert contract.triton_type(contract.numpy_dtype(triton).name) == triton
    assert contract.numpy_dtype("UINT8") == np.uint8  # the client's spelling
    assert contract.numpy_dtype("BYTES") == np.object_ and contract.numpy_dtype("TYPE_STRING") == np.object_
    with pytest.raises(ValueError, match="no Triton data type"):
        contract.triton_type("complex64")
    ins, outs = graph_tensors(segmenter)
    assert [s.name for s in ins] == ["image"] and outs[0].dims == (1, 64, 64)
