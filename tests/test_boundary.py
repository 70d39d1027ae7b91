"""The boundary SPADE form (cityserve.export.boundary): exact against the plain generator, in torch and in
onnxruntime, on label maps of one class, checkerboards (all boundary) and synthetic street scenes; the
FLOPs it skips; and the generators it refuses (OASIS 3D noise)."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from _helpers_export import ort_run, spade_card
from _helpers_spade import randomize_, tiny_config

from cityserve.bench.flops import boundary_levels, count_flops
from cityserve.cards import load_card
from cityserve.cli import main
from cityserve.data.synthetic import generate_scene
from cityserve.errors import ConfigError
from cityserve.export.boundary import BoundarySPADEResnetBlock, boundary_spade
from cityserve.export.fuse import fuse_spade
from cityserve.export.onnx_export import build_graph, compare_images, run_torch
from cityserve.models.render import instance_edges, one_hot
from cityserve.models.spade import SPADEGenerator
from cityserve.models.spectral_norm import to_inference

NORMS = ["spectralspadebatch3x3", "spectralspadeinstance3x3", "spectralspadeinstance1x1"]
MAPS = ["one-class", "checkerboard", "scene"]


def label_map(kind: str, h: int, w: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels int64 [B,1,h,w], instances int32 [B,1,h,w]) of one kind."""
    if kind == "one-class":
        labels = np.full((batch, 1, h, w), 7)
        inst = np.zeros_like(labels)
    elif kind == "checkerboard":  # every pixel differs from its neighbours: no interior pixel at 3x3
        yy, xx = np.mgrid[:h, :w]
        labels = np.stack([((yy + xx + i) % 5)[None] for i in range(batch)])
        inst = labels * 0 + (yy // 2)  # instance edges on every other row
    else:
        scenes = [generate_scene(10000 + i, h, w) for i in range(batch)]
        labels = np.stack([s.labels for s in scenes])[:, None]
        inst = np.stack([s.instances for s in scenes])[:, None]
    return torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(inst.astype(np.int32))


def semantics(cfg, labels, inst) -> torch.Tensor:
    x = one_hot(labels, cfg.num_classes)
    return torch.cat([x, instance_edges(inst)], 1) if not cfg.no_instance else x


def pair(cfg, seed: int = 0):
    plain = to_inference(randomize_(SPADEGenerator(cfg), seed)).eval()
    return plain, boundary_spade(copy.deepcopy(plain))


@pytest.mark.parametrize("kind", MAPS)
@pytest.mark.parametrize("instance", [True, False], ids=["instances", "no-instances"])
@pytest.mark.parametrize("norm", NORMS)
def test_boundary_form_matches_the_plain_generator(norm, instance, kind):
    cfg = tiny_config(norm_G=norm, no_instance=not instance, nhidden=4)  # 32x64
    plain, bnd = pair(cfg)
    assert sum(isinstance(m, BoundarySPADEResnetBlock) for m in bnd.modules()) == 7
    labels, inst = label_map(kind, cfg.height, cfg.width)
    x = semantics(cfg, labels, inst)
    with torch.no_grad():
        y_plain, y_bnd = plain(x), bnd(x)
    torch.testing.assert_close(y_bnd, y_plain, atol=1e-4, rtol=0)

    # the table path really ran where it could, and the real convs where they had to
    top = boundary_levels(plain, [x])[-1]
    assert (top.height, top.width) == (cfg.height, cfg.width)
    border = 2 * (norm.endswith("3x3"))
    inner = (cfg.height - 2 * border) * (cfg.width - 2 * border) * 2
    if kind == "one-class":
        assert top.interior == inner  # everything but the image border (zero padding) is interior
    elif kind == "checkerboard" and border:
        assert top.interior == 0
    elif kind == "scene" and (border or instance):
        assert 0.2 < top.interior_fraction < 0.95
    elif kind == "scene":  # 1x1 kernels and no instance edges: every pixel is its own class's constant
        assert top.interior_fraction == 1.0


def test_boundary_form_is_exact_for_inputs_that_are_not_one_hot():
    """Hand-made soft inputs are never interior: the form stays exact, it only saves nothing."""
    cfg = tiny_config(nhidden=8)
    plain, bnd = pair(cfg, seed=3)
    labels, inst = label_map("scene", cfg.height, cfg.width, batch=1)
    x = semantics(cfg, labels, inst)
    x[:, :, :10, :20] *= 0.5  # a soft patch
    x[:, 3, 20:, 40:] += 1.0  # two classes at once
    with torch.no_grad():
        torch.testing.assert_close(bnd(x), plain(x), atol=1e-4, rtol=0)


def test_boundary_counts_at_full_resolution_match_the_masks():
    cfg = tiny_config(nhidden=8, crop_size=128)
    plain, _ = pair(cfg)  # 64x128
    labels, inst = label_map("scene", cfg.height, cfg.width, batch=1)
    x = semantics(cfg, labels, inst)
    levels = boundary_levels(plain, [x])
    assert [(lv.height, lv.width) for lv in levels] == [(2, 4), (4, 8), (4, 8), (8, 16), (16, 32), (32, 64), (64, 128)]
    for lv in levels:
        assert lv.gamma_beta_boundary == lv.gamma_beta_plain * (lv.pixels - lv.interior) // lv.pixels
        assert lv.hidden >= lv.pixels - lv.interior  # mlp_shared runs at least on every boundary pixel
    # finer resolutions have more interior pixels
    assert levels[-1].interior_fraction > levels[-3].interior_fraction
    # the FLOP counter sees the boundary form's gathered matmuls: what it skips is what the masks say
    bnd = boundary_spade(copy.deepcopy(plain))
    skipped = count_flops(plain, [x]) - count_flops(bnd, [x])
    by_masks = sum(lv.gamma_beta_plain - lv.gamma_beta_boundary + lv.shared_plain - lv.shared_boundary for lv in levels)
    assert skipped == pytest.approx(by_masks, rel=1e-3)


def test_boundary_onnx_export_matches_in_onnxruntime(tmp_path):
    card = spade_card(tmp_path / "ckpt", nhidden=8)
    rc = main(["export", "onnx", str(card.path), "--out", str(tmp_path / "b"), "--form", "boundary", "--verify"])
    assert rc == 0
    path = tmp_path / "b" / "render.onnx"
    exported = load_card(path.with_name("render.card.json")).artifacts["onnx"]
    assert exported.form == "boundary" and exported.fused is False
    model = onnx.load(str(path))
    meta = {m.key: m.value for m in model.metadata_props}
    assert meta["cityserve.form"] == "boundary"
    ops = [n.op_type for n in model.graph.node]
    assert "NonZero" in ops and ops.count("MatMul") + ops.count("Gemm") >= 2 * 18  # gathered convs, not Conv
    plain, names, _ = build_graph(card)
    labels, inst = label_map("scene", card.height, card.width)
    feeds = {"labels": labels.numpy().astype(np.uint8), "instances": inst.numpy()}
    stats = compare_images(run_torch(plain, feeds, names), ort_run(path, feeds))
    assert stats["identical"] >= 0.999 and stats["max_diff"] <= 1, stats


def test_boundary_form_is_refused_for_3d_noise_and_other_inputs(tmp_path):
    noisy = to_inference(SPADEGenerator(tiny_config(noise_dim=4, nhidden=8))).eval()
    with pytest.raises(ConfigError, match="3D noise.*no per-class table is exact"):
        boundary_spade(noisy)
    with pytest.raises(ConfigError, match="fold spectral norm first"):
        boundary_spade(SPADEGenerator(tiny_config(nhidden=8)))
    with pytest.raises(ConfigError, match="plain generator, not the fused form"):
        boundary_spade(fuse_spade(to_inference(SPADEGenerator(tiny_config(nhidden=8))).eval()))
    card = spade_card(tmp_path / "ckpt", nhidden=8)
    with pytest.raises(ConfigError, match="contradict"):
        build_graph(card, fused=True, form="boundary")
    with pytest.raises(SystemExit) as e:
        main(["export", "onnx", str(card.path), "--out", str(tmp_path / "x"), "--form", "nope"])
    assert e.value.code == 2
