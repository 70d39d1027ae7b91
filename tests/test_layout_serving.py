"""random_layout / random2photo without a server: the served layout graph against the torch sampler,
the host-side seed and snapping steps, and the configs of every target (the cpu target runs through a
real tritonserver in test_serving.py)."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers_serving import tiny_layout_card, tiny_spade_card

from cityserve.errors import ConfigError


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    from cityserve.export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("layout-serving")
    gen = tiny_spade_card(root / "gen")
    return {"layout": tiny_layout_card(root / "layout"), "render_onnx": export_onnx(gen, root / "gen" / "x")}


def test_served_graph_and_sampler_give_the_generated_layout(cards, tmp_path):
    """Seed -> z -> the served graph (truncation as an input) -> snapping: the ids ``cityserve generate``
    gives (torch, the card's truncation baked in), and another truncation gives another layout."""
    from cityserve.export.layout_serving import export_served_layout_onnx, run_served_layout_onnx
    from cityserve.labels.snapping import logits_to_ids, remove_specks
    from cityserve.models.layout_sample import layout_generator_from_card, sample_logits
    from cityserve.serving.layout_sampler import LayoutSampler

    card = cards["layout"]
    path = export_served_layout_onnx(card, tmp_path / "layout.onnx")
    sampler = LayoutSampler(card.layout.z_dim, card.label_set, card.layout.truncation_psi, card.layout.min_area)
    seeds = np.array([[0], [1], [2]], np.int64)
    z, psi = sampler.latents(seeds)
    assert z.shape == (3, 8) and np.array_equal(psi, np.full((3, 1), 0.8, np.float32))
    got = run_served_layout_onnx(path, z, psi)
    G = layout_generator_from_card(card)
    want = logits_to_ids(sample_logits(G, card, [0, 1, 2]).numpy(), 34)
    assert got.shape == (3, 1, 32, 64) and (got[:, 0] == want).mean() > 0.999
    out = sampler.finish(got)
    assert out["LAYOUT_IDS"].shape == (3, 1, 32, 64) and out["LABELS_PNG"].shape == (3, 1)
    assert np.array_equal(out["LAYOUT_IDS"][0, 0], remove_specks(got[0, 0], 3))
    full = run_served_layout_onnx(path, z, np.ones_like(psi))
    ref1 = logits_to_ids(sample_logits(G, card, [0, 1, 2], truncation_psi=1.0).numpy(), 34)
    assert (full[:, 0] == ref1).mean() > 0.999 and not np.array_equal(full, got)


def test_bad_seeds_and_truncations_are_refused():
    from cityserve.serving.layout_sampler import LayoutSampler

    s = LayoutSampler(8, "cityscapes")
    for seeds, trunc, match in (
        (np.array([[-1]]), None, "SEED must be 0..2"),
        (np.zeros((0, 1), np.int64), None, "SEED is empty"),
        (np.array([[1]]), np.array([[2.5]], np.float32), "TRUNCATION must be 0..2"),
        (np.array([[1]]), np.array([[np.inf]], np.float32), "TRUNCATION must be 0..2"),
        (np.array([[1], [2]]), np.array([[0.5]], np.float32), "1 values for 2 seeds"),
    ):
        with pytest.raises(ConfigError, match=match):
            s.latents(seeds, trunc)
    z, psi = s.latents(np.array([[2**63 - 1]]), np.array([[0.0]], np.float32))
    assert z.shape == (1, 8) and psi[0, 0] == 0.0


@pytest.mark.parametrize("target", ["cpu", "gpu-onnx", "gpu-trt", "openvino"])
def test_every_target_serves_the_graph_on_its_backend(cards, tmp_path, target):
    from cityserve.serving.repo import build_repository, parse_config

    built = build_repository([cards["render_onnx"], cards["layout"]], target, tmp_path / "r", configs_only=True)
    cfgs = {n: parse_config((built.path / n / "config.pbtxt").read_text()) for n in built.models}
    graph, rl, ens = cfgs["layout_graph"], cfgs["random_layout"], cfgs["random2photo"]
    runtime = {
        "cpu": ("", "python"),
        "gpu-onnx": ("onnxruntime_onnx", ""),
        "gpu-trt": ("tensorrt_plan", ""),
        "openvino": ("", "openvino"),
    }
    assert (graph.platform, graph.backend) == runtime[target]
    assert [t.name for t in graph.input] == ["z", "truncation"] and list(graph.output[0].dims) == [1, 32, 64]
    assert rl.backend == "python"
    assert rl.parameters["graph_model"].string_value == "layout_graph"
    assert [(t.name, t.optional) for t in rl.input] == [("SEED", False), ("TRUNCATION", True)]
    assert [s.model_name for s in ens.ensemble_scheduling.step] == [
        "random_layout",
        "prepare_render_random2photo",
        "render",
        "encode_png",
    ]
    assert [t.name for t in ens.input] == ["SEED"] and [t.name for t in ens.output] == [
        "LABELS_PNG",
        "COLOR_PNG",
        "PHOTO_PNG",
    ]
    if target == "gpu-trt":
        assert '"$REPO"/layout_graph/1/model.onnx' in (built.path / "build_engines.sh").read_text()


def test_layout_without_a_matching_generator_gets_a_note(cards, tmp_path):
    from cityserve.serving.repo import build_repository

    built = build_repository([cards["layout"]], "cpu", tmp_path / "r", configs_only=True)
    assert "random_layout" in built.models and "random2photo" not in built.models
    assert any("random2photo not built" in n for n in built.notes)
