"""The table SPADE inference form (``cityserve.export.table``): exact against the plain generator, OASIS
3D noise included, in torch and through ONNX; refused where no code table is exact."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from _helpers_export import ort_run, spade_card
from _helpers_spade import randomize_, tiny_config
from test_boundary import label_map, semantics

from cityserve.cards import load_card
from cityserve.cli import main
from cityserve.errors import ConfigError
from cityserve.export.onnx_export import build_graph, compare_images, run_torch
from cityserve.export.table import TableSPADEResnetBlock, table_spade
from cityserve.models.spade import SPADEGenerator
from cityserve.models.spectral_norm import to_inference


@pytest.mark.parametrize("kind", ["scene", "checkerboard"])
@pytest.mark.parametrize(
    "options",
    [
        dict(norm_G="spectralspadeinstance1x1", noise_dim=4),
        dict(norm_G="spectralspadebatch1x1", noise_dim=0),
        dict(norm_G="spectralspadeinstance1x1", noise_dim=3, no_instance=True),
    ],
    ids=["noise+instances", "batchnorm", "noise-no-instances"],
)
def test_table_form_matches_the_plain_generator(options, kind):
    cfg = tiny_config(nhidden=6, **options)
    plain = to_inference(randomize_(SPADEGenerator(cfg), 1)).eval()
    table = table_spade(copy.deepcopy(plain))
    assert sum(isinstance(m, TableSPADEResnetBlock) for m in table.modules()) == 7
    labels, inst = label_map(kind, cfg.height, cfg.width, batch=3)
    labels[0, 0, :4, :8] = 40  # an id past the label set: an all-zero one-hot, the table's "none" row
    x = semantics(cfg, labels, inst)
    z = torch.randn(3, cfg.noise_dim) if cfg.noise_dim else None
    with torch.no_grad():
        want, got = plain(x, z), table(x, z)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        if cfg.noise_dim:  # the noise really reaches the tables: another z, another image
            assert (table(x, torch.randn(3, cfg.noise_dim)) - got).abs().max() > 1e-3
        one = (x[1:2], None if z is None else z[1:2])  # batch 1 (no row offsets) against plain at batch 1
        torch.testing.assert_close(table(*one), plain(*one), atol=1e-4, rtol=0)


def test_table_onnx_export_matches_in_onnxruntime(tmp_path):
    card = spade_card(tmp_path / "ckpt", nhidden=8, norm_G="spectralspadeinstance1x1", noise_dim=4)
    rc = main(["export", "onnx", str(card.path), "--out", str(tmp_path / "t"), "--form", "table", "--verify"])
    assert rc == 0
    path = tmp_path / "t" / "render.onnx"
    assert load_card(path.with_name("render.card.json")).artifacts["onnx"].form == "table"
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Gather") >= 2 * 18 and ops.count("Conv") == 1 + 7 * 2 + 4 + 1  # no SPADE conv left
    plain, names, _ = build_graph(card)
    labels, inst = label_map("scene", card.height, card.width)
    feeds = {"labels": labels.numpy().astype(np.uint8), "instances": inst.numpy(), "z": np.ones((2, 4), np.float32)}
    stats = compare_images(run_torch(plain, feeds, names), ort_run(path, feeds))
    assert stats["identical"] >= 0.999 and stats["max_diff"] <= 1, stats


def test_table_form_is_refused_where_no_table_is_exact():
    with pytest.raises(ConfigError, match="3x3 conv; the form needs 1x1"):
        table_spade(to_inference(SPADEGenerator(tiny_config(nhidden=8))).eval())
    depth_stage = tiny_config(nhidden=8, norm_G="spectralspadeinstance1x1", extra_condition_nc=1)
    with pytest.raises(ConfigError, match="depth map"):
        table_spade(to_inference(SPADEGenerator(depth_stage)).eval())
    with pytest.raises(ConfigError, match="fold spectral norm first"):
        table_spade(SPADEGenerator(tiny_config(nhidden=8, norm_G="spectralspadeinstance1x1")))
