"""Depth-aware SPADE (issue 17): depth with the data, log-depth normalisation, depth metrics, the two
generator stages, their training (losses move, exact resume) and their ONNX graphs (parity in
onnxruntime, the tensor contract)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from _helpers_training import REPO, write_paired

from cityserve.cards import load_card
from cityserve.checkpoints import safe_load
from cityserve.data.datasets import SyntheticDataset, build_dataset
from cityserve.data.depth import LogDepth, read_depth, write_depth_png
from cityserve.data.synthetic import SKY_DEPTH, generate_scene
from cityserve.data.validate import DatasetError
from cityserve.errors import ConfigError
from cityserve.evaluation import depth_patches
from cityserve.metrics import DepthAccumulator, depth_scores, frechet_from_features
from cityserve.models.registry import render_io
from cityserve.models.spade import SPADEConfig, SPADEGenerator
from cityserve.training.runner import state_files


# ---- data -------------------------------------------------------------------------------------------
def test_synthetic_depth_is_the_scenes_and_leaves_labels_and_photos_alone():
    plain = SyntheticDataset([5, 6], size=(32, 64))
    deep = SyntheticDataset([5, 6], size=(32, 64), with_depth=True)
    for i, seed in enumerate((5, 6)):
        a, b = plain[i], deep[i]
        assert "depth" not in a
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["image"], b["image"])
        scene = generate_scene(seed, 32, 64)
        assert b["depth"].dtype == torch.float32 and b["depth"].shape == (1, 32, 64)
        assert np.array_equal(b["depth"][0].numpy(), scene.depth)
        sky = b["labels"][0] == 23
        assert torch.all(b["depth"][0][sky] == SKY_DEPTH) and torch.all(b["depth"][0][~sky] < SKY_DEPTH)
    # augmented: the same flip / crop for labels, photo and depth, and the same draws as without depth
    aug = dict(size=(32, 64), augment=True)
    for seed in range(4):
        torch.manual_seed(seed)
        a = SyntheticDataset([7], **aug)[0]
        torch.manual_seed(seed)
        b = SyntheticDataset([7], with_depth=True, **aug)[0]
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["image"], b["image"])
        assert torch.equal(b["depth"][0] == SKY_DEPTH, b["labels"][0] == 23)


def _paired_with_depth(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    write_paired(root, 3, 32, 64)
    (root / "depth").mkdir()
    rng = np.random.default_rng(0)
    truth = {f"s{i}": rng.uniform(1.0, 60.0, (32, 64)).astype(np.float32) for i in range(3)}
    write_depth_png(root / "depth" / "s0.png", truth["s0"])
    truth["s0"] = np.round(truth["s0"] * 1000) / 1000  # millimetres
    np.save(root / "depth" / "s1.npy", truth["s1"])
    np.save(root / "depth" / "s2.npy", truth["s2"])
    return root, truth


def test_folder_depth_png_millimetres_and_npy_metres(tmp_path):
    root, truth = _paired_with_depth(tmp_path / "p")
    ds = build_dataset("paired", root, size=None, with_depth=True)
    for i, rec in enumerate(ds.records):
        s = ds[i]
        np.testing.assert_allclose(s["depth"][0].numpy(), truth[rec.name], rtol=0, atol=1e-4)
    assert "depth" not in build_dataset("paired", root, size=None)[0]  # only when asked


@pytest.mark.parametrize(
    "defect, expected",
    [
        ("missing", "s1.png: no depth map (expected"),
        ("size", "s1.npy: depth map is 16x64 (HxW) but its photo is 32x64"),
        ("nan", "s1.npy: depth map has 1 NaN/inf pixel(s)"),
        ("negative", "s1.npy: depth map has 1 zero or negative pixel(s)"),
        ("8bit", "s1.png: a depth PNG must be single-channel 16-bit (millimetres), not 1-channel uint8"),
        ("int", "s1.npy: a .npy depth map must hold floats (metres), not int64"),
    ],
)
def test_bad_depth_files_are_named_before_training(defect, expected, tmp_path):
    root, truth = _paired_with_depth(tmp_path / "p")
    bad = truth["s1"].copy()
    (root / "depth" / "s1.npy").unlink()
    if defect == "size":
        np.save(root / "depth" / "s1.npy", bad[:16])
    elif defect == "nan":
        bad[3, 4] = np.nan
        np.save(root / "depth" / "s1.npy", bad)
    elif defect == "negative":
        bad[3, 4] = -2.0
        np.save(root / "depth" / "s1.npy", bad)
    elif defect == "8bit":
        cv2.imwrite(str(root / "depth" / "s1.png"), np.full((32, 64), 9, np.uint8))
    elif defect == "int":
        np.save(root / "depth" / "s1.npy", np.ones((32, 64), np.int64))
    with pytest.raises(DatasetError) as e:
        build_dataset("paired", root, size=None, with_depth=True)
    msg = str(e.value)
    assert "\n" not in msg and "1 problem" in msg and expected in msg, msg


def test_log_depth_normalisation_round_trips_and_is_card_data():
    norm = LogDepth(near=1.0, far=1000.0)
    d = np.array([1.0, 10.0, 31.6227766, 1000.0, 5000.0, 0.5], np.float32)
    n = norm.normalise(d)
    np.testing.assert_allclose(n, [-1.0, -1 / 3, 0.0, 1.0, 1.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(norm.metres(n[:4]), d[:4], rtol=1e-5)
    t = torch.from_numpy(d)
    assert torch.allclose(norm.normalise(t), torch.from_numpy(n), atol=1e-6)
    assert torch.allclose(norm.metres(norm.normalise(t[:4])), t[:4], rtol=1e-5)
    assert LogDepth.from_dict(norm.to_dict()) == norm
    for bad in ({"near": 5.0, "far": 2.0}, {"near": 0.0}, {"near": "1"}, {"scale": 2}):
        with pytest.raises(ConfigError):
            LogDepth.from_dict(bad)


def test_read_depth_rejects_other_files(tmp_path):
    p = tmp_path / "d.jpg"
    p.write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"d\.jpg: depth maps are 16-bit \.png"):
        read_depth(p)


# ---- metrics ------------------------------------------------------------------------------------------
def test_depth_metrics_on_hand_made_maps():
    true = np.array([[2.0, 4.0], [10.0, 1000.0]])  # the last pixel is the sky cap: left out
    s = depth_scores(true * 2, true)
    assert s.pixels == 3 and s.abs_rel == pytest.approx(1.0) and s.rmse_log == pytest.approx(np.log(2))
    s = depth_scores(np.array([[2.0, 2.0], [10.0, 1.0]]), true)
    assert s.abs_rel == pytest.approx(0.5 / 3) and s.rmse_log == pytest.approx(np.sqrt(np.log(2) ** 2 / 3))
    acc = DepthAccumulator()  # pixels weigh once, across images
    acc.update(np.array([[4.0]]), np.array([[2.0]]))
    acc.update(np.array([[2.0, 2.0, 2.0]]), np.array([[2.0, 2.0, 2.0]]))
    assert acc.scores().abs_rel == pytest.approx(0.25) and acc.scores().pixels == 4
    assert depth_scores(true, true).abs_rel == 0.0
    with pytest.raises(ValueError):
        depth_scores(true[:1], true)


# ---- models -------------------------------------------------------------------------------------------
def test_depth_stages_are_spade_generators_with_other_channels():
    base = dict(label_nc=34, crop_size=64, aspect_ratio=2.0, ngf=2, nhidden=4, norm_G="spectralspadeinstance3x3")
    g1 = SPADEGenerator(SPADEConfig(output_nc=1, **base))
    g2 = SPADEGenerator(SPADEConfig(extra_condition_nc=1, **base))
    assert g1(torch.zeros(2, 35, 32, 64)).shape == (2, 1, 32, 64)
    assert g2.head_0.norm_0.mlp_shared[0].in_channels == 36  # labels + edges + depth in every norm
    x = torch.zeros(1, 36, 32, 64)
    x[:, 7] = 1
    y_near, y_far = g2(torch.cat([x[:, :35], torch.full((1, 1, 32, 64), -1.0)], 1)), g2(x)
    assert y_near.shape == (1, 3, 32, 64) and not torch.allclose(y_near, y_far)  # depth changes the photo
    from cityserve.cards import ModelCard

    card = ModelCard("d", "generator", "spade", {**base, "output_nc": 1}, "cityscapes", 32, 64)
    with pytest.raises(ConfigError, match="depth-aware SPADE stage"):
        render_io(card)


# ---- training -----------------------------------------------------------------------------------------
def _entry():
    spec = importlib.util.spec_from_file_location("train_entry_spade_depth", REPO / "train" / "spade.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


COMMON = ["--preset", "tiny", "--data", "synthetic", "--seeds", "0-3", "--no-tensorboard", "--no-progress"]
COMMON += ["--threads", "1", "--log-every", "1"]


def _run(out: Path, steps: int, *more: str) -> int:
    return _entry()(COMMON + ["--out", str(out), "--max-steps", str(steps), *more])


@pytest.fixture(scope="module")
def depth_run(tmp_path_factory):
    """Stage 1 trained 4 steps (the card the other tests use), and a second run stopped and resumed."""
    root = tmp_path_factory.mktemp("depth")
    a, b = root / "a", root / "b"
    assert _run(a, 4, "--stage", "depth", "--save-every", "2") == 0
    assert _run(b, 4, "--stage", "depth", "--save-every", "2", "--stop-at", "2") == 0
    assert _run(b, 4, "--stage", "depth", "--save-every", "2", "--resume") == 0
    return a, b


def _same_states(a: Path, b: Path) -> None:
    sa, sb = safe_load(a)["modules"], safe_load(b)["modules"]
    assert sa.keys() == sb.keys()
    for m in sa:
        for k in sa[m]:
            assert torch.equal(sa[m][k], sb[m][k]), f"{m}.{k} differs"


def test_depth_stage_trains_resumes_exactly_and_records_its_normalisation(depth_run):
    a, b = depth_run
    _same_states(a / "state" / "step_00000004.pt", b / "state" / "step_00000004.pt")
    card = load_card(a)
    assert load_card(b).sha256 == card.sha256
    assert card.config["output_nc"] == 1 and card.config["extra_condition_nc"] == 0
    assert card.depth == {"stage": "depth", "normalisation": {"near": 1.0, "far": 1000.0, "kind": "log"}}
    assert card.training["stage"] == "depth"
    assert [s for s, _ in state_files(a)] == [2, 4]


def test_depth_stage_losses_move_and_l1_falls(tmp_path):
    from cityserve.training.runner import RunConfig, Runner
    from cityserve.training.spade_trainer import SPADETrainConfig, SPADETrainer, spade_config_for, stage_config

    r = Runner(RunConfig(out=tmp_path, max_steps=1, progress=False, tensorboard=False, precision="fp32"))
    cfg = stage_config(spade_config_for("cityscapes", (32, 64), ngf=4), "depth")
    t = SPADETrainer(r, cfg, "cityscapes", SPADETrainConfig(ndf=4, n_layers_D=2, lr=4e-3, stage="depth"))
    s = SyntheticDataset([3], size=(32, 64), with_depth=True)[0]
    batch = {k: (v[None] if torch.is_tensor(v) else v) for k, v in s.items()}
    t.train()
    hist = [t.train_step(batch, i) for i in range(1, 16)]
    l1 = [float(h["G_L1"]) for h in hist]
    assert l1[-1] < 0.6 * l1[0], l1
    for k in ("G_GAN", "D_Fake", "D_real"):
        values = [float(h[k]) for h in hist]
        assert max(values) - min(values) > 0.01, (k, values)


@pytest.mark.parametrize("objective", ["spade", "oasis"])
def test_photo_stage_reads_the_depth_and_its_losses_move(objective, tmp_path):
    from cityserve.training.runner import RunConfig, Runner
    from cityserve.training.spade_trainer import SPADETrainConfig, SPADETrainer, spade_config_for, stage_config

    r = Runner(RunConfig(out=tmp_path, max_steps=1, progress=False, tensorboard=False, precision="fp32"))
    cfg = stage_config(spade_config_for("cityscapes", (32, 64), ngf=4, nhidden=8), "photo-from-depth")
    tcfg = SPADETrainConfig(ndf=4, n_layers_D=2, lr=4e-3, stage="photo-from-depth", objective=objective)
    if objective == "oasis":
        tcfg = SPADETrainConfig(ndf=4, lr=4e-3, stage="photo-from-depth", objective="oasis", num_res_blocks_D=5)
    t = SPADETrainer(r, cfg, "cityscapes", tcfg)
    s = SyntheticDataset([3], size=(32, 64), with_depth=True)[0]
    batch = {k: (v[None] if torch.is_tensor(v) else v) for k, v in s.items()}
    sem = t.semantics(batch)
    assert sem.shape[1] == cfg.semantic_nc + 1  # one-hot + edges + depth
    assert torch.allclose(sem[:, -1:], LogDepth().normalise(batch["depth"]))
    t.train()
    hist = [t.train_step(batch, i) for i in range(1, 9)]
    for k in hist[0]:
        values = [float(h[k]) for h in hist]
        assert max(values) - min(values) > 1e-3, (k, values)


def test_a_photo_stage_with_oasis_noise_renders_the_same_photo_every_time():
    """The stages take no latent: an OASIS generator's 3D noise is fixed at its mean (z = 0), not drawn
    per call, so the served photo and the held-out figures are reproducible."""
    from cityserve.models.depth_render import PhotoFromDepthGraph
    from cityserve.models.render import to_uint8_image
    from cityserve.training.spade_trainer import spade_config_for, stage_config

    cfg = stage_config(spade_config_for("cityscapes", (32, 64), ngf=2, nhidden=8, noise_dim=4), "photo-from-depth")
    torch.manual_seed(0)
    G = SPADEGenerator(cfg).eval()
    graph = PhotoFromDepthGraph(G, cfg.num_classes, True, LogDepth()).eval()
    s = generate_scene(3, 32, 64)
    lab, inst = torch.from_numpy(s.labels.astype(np.int64))[None, None], torch.from_numpy(s.instances)[None, None]
    depth = torch.from_numpy(s.depth)[None, None]
    with torch.no_grad():
        a, b = graph(lab, inst, depth), graph(lab, inst, depth)
        x = torch.cat([graph.semantics(lab, inst), LogDepth().normalise(depth)], 1)
        other = graph.generator(x, torch.ones(1, 4))
    assert torch.equal(a, b)
    assert not torch.equal(a, to_uint8_image(other))  # the noise does reach the photo


def test_photo_stage_trains_on_true_and_on_predicted_depth(depth_run, tmp_path):
    a, _ = depth_run
    true_a, true_b = tmp_path / "ta", tmp_path / "tb"
    assert _run(true_a, 2, "--stage", "photo-from-depth", "--save-every", "1") == 0
    assert _run(true_b, 2, "--stage", "photo-from-depth", "--save-every", "1", "--stop-at", "1") == 0
    assert _run(true_b, 2, "--stage", "photo-from-depth", "--save-every", "1", "--resume") == 0
    _same_states(true_a / "state" / "step_00000002.pt", true_b / "state" / "step_00000002.pt")
    card = load_card(true_a)
    assert card.config["extra_condition_nc"] == 1 and card.config["output_nc"] == 3
    assert card.depth["stage"] == "photo-from-depth" and card.depth["depth_source"] == "true"

    depth_card = load_card(a)
    pred = tmp_path / "pred"
    assert _run(pred, 2, "--stage", "photo-from-depth", "--depth-source", "predicted", "--depth-model", str(a)) == 0
    pc = load_card(pred)
    assert pc.depth["depth_source"] == "predicted"
    assert pc.depth["depth_model"] == {"name": depth_card.name, "sha256": depth_card.sha256}
    # trained on other conditions: other weights
    assert pc.sha256 != card.sha256
    # a photo card is not a depth model; predicted needs a model
    assert _run(tmp_path / "x", 1, "--stage", "photo-from-depth", "--depth-source", "predicted") == 2
    assert (
        _run(
            tmp_path / "y", 1, "--stage", "photo-from-depth", "--depth-source", "predicted", "--depth-model", str(pred)
        )
        == 2
    )


# ---- export -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    """Stage 2 trained 1 step on true depth (for the export and render tests)."""
    out = tmp_path_factory.mktemp("photo") / "run"
    assert _run(out, 1, "--stage", "photo-from-depth") == 0
    return out


def test_export_each_stage_and_the_chain_with_parity(depth_run, photo_run, tmp_path, capsys):
    from cityserve.cli import main
    from cityserve.export.depth_export import depth_graph_from_card

    a, _ = depth_run
    d_card, p_card = load_card(a), load_card(photo_run)
    h, w = d_card.height, d_card.width
    # --verify: onnxruntime against torch at batch 1 and 3 (depth within 1e-4 relative, images <= 1 level)
    assert main(["export", "depth", str(a), "--out", str(tmp_path / "d"), "--verify"]) == 0
    chain_dir = tmp_path / "chain"
    assert main(["export", "depth", str(photo_run), "--depth-model", str(a), "--out", str(chain_dir), "--verify"]) == 0
    text = capsys.readouterr().out
    assert text.count("-> ok") == 6 and "MISMATCH" not in text, text
    assert {p.name for p in chain_dir.glob("*.onnx")} == {"depth2photo.onnx", "label2depth2photo.onnx"}
    files = {
        "depth": tmp_path / "d" / "depth.onnx",
        "depth2photo": chain_dir / "depth2photo.onnx",
        "label2depth2photo": chain_dir / "label2depth2photo.onnx",
    }
    contracts = {
        "depth": (["labels", "instances"], [("depth", "tensor(float)", ["batch", 1, h, w])]),
        "depth2photo": (["labels", "instances", "depth"], [("image", "tensor(uint8)", ["batch", h, w, 3])]),
        "label2depth2photo": (
            ["labels", "instances"],
            [("image", "tensor(uint8)", ["batch", h, w, 3]), ("depth", "tensor(float)", ["batch", 1, h, w])],
        ),
    }
    sess = {}
    for name, path in files.items():
        sess[name] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess[name].get_inputs()] == contracts[name][0]
        assert [(o.name, o.type, o.shape) for o in sess[name].get_outputs()] == contracts[name][1]
        exported = load_card(path.with_name(f"{name}.card.json"))
        assert exported.depth["graph"] == name
        assert exported.depth["normalisation"] == {"near": 1.0, "far": 1000.0, "kind": "log"}
        if name == "label2depth2photo":
            assert exported.depth["depth_model"]["sha256"] == d_card.sha256
    # the depth output is metres: inside the normalisation's range
    labels = np.full((1, 1, h, w), 7, np.uint8)
    labels[:, :, : h // 2] = 23
    inst = np.zeros((1, 1, h, w), np.int32)
    (depth,) = sess["depth"].run(None, {"labels": labels, "instances": inst})
    assert depth.dtype == np.float32 and depth.min() >= 1.0 - 1e-4 and depth.max() <= 1000.0 + 1e-2
    # the chain's photo is stage 2 fed with stage 1's depth
    img, d = sess["label2depth2photo"].run(None, {"labels": labels, "instances": inst})
    (img2,) = sess["depth2photo"].run(None, {"labels": labels, "instances": inst, "depth": d})
    assert np.abs(img.astype(int) - img2.astype(int)).max() <= 1
    np.testing.assert_allclose(d, depth, rtol=1e-5)
    # a photo stage is not a depth model; a depth card cannot be chained before itself; no plain export
    with pytest.raises(ConfigError, match="not depth"):
        depth_graph_from_card(p_card)
    assert main(["export", "depth", str(a), "--depth-model", str(a), "--out", str(tmp_path / "x")]) == 2
    assert main(["export", "onnx", str(a), "--out", str(tmp_path / "y")]) == 2


def test_eval_depth_scores_stage_one_on_held_out_seeds(depth_run, tmp_path, capsys):
    import json

    from cityserve.cli import main
    from cityserve.evaluation import evaluate_depth
    from cityserve.export.depth_export import depth_graph_from_card

    a, _ = depth_run
    card = load_card(a)
    scores = evaluate_depth(card, [10000, 10001], progress=False)
    # the same figures by hand: the graph's metres against the scenes' depth, sky left out
    g = depth_graph_from_card(card)
    acc = DepthAccumulator()
    for seed in (10000, 10001):
        s = generate_scene(seed, card.height, card.width)
        with torch.no_grad():
            pred = g(torch.from_numpy(s.labels.astype(np.int64))[None, None], torch.from_numpy(s.instances)[None, None])
        acc.update(pred[0, 0].numpy(), s.depth)
    assert scores == acc.scores() and 0 < scores.pixels < 2 * card.height * card.width
    out = tmp_path / "d.json"
    assert main(["eval", "depth", str(a), "--seeds", "10000-10001", "--no-progress", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["abs_rel"] == pytest.approx(scores.abs_rel) and r["rmse_log"] == pytest.approx(scores.rmse_log)
    assert r["seeds"] == "10000-10001"
    # the depth-map distance: 8x8 patches of normalised log-depth, predicted vs true; 0 for the truth itself
    assert depth_patches(np.arange(16 * 24, dtype=float).reshape(16, 24)).shape == (6, 64)
    true = [g.norm.normalise(generate_scene(s, card.height, card.width).depth) for s in (10000, 10001)]
    assert frechet_from_features(*[np.concatenate([depth_patches(t) for t in true])] * 2) == pytest.approx(0, abs=1e-6)
    assert r["depth_patch_frechet"] > 0.01  # a 4-step stage 1 is far from the true maps


def test_eval_generator_renders_stage_two_from_predicted_or_true_depth(depth_run, photo_run, tmp_path, capsys):
    """(b) two stages, stage 1's depth, and (c) stage 2 on the true depth: the figures are those of the
    torch graphs fed that depth."""
    import json

    from cityserve.cli import main
    from cityserve.export.depth_export import depth_graph_from_card, photo_graph_from_card
    from cityserve.metrics import l1

    a, _ = depth_run
    seg = str(REPO / "models" / "demo" / "segmenter-demo.card.json")
    base = ["eval", "generator", str(photo_run), "--segmenter", seg, "--seeds", "10000-10001", "--no-progress"]
    r = {}
    for mode, extra in (("predicted", ["--depth-model", str(a)]), ("true", ["--true-depth"])):
        assert main(base + extra + ["--out", str(tmp_path / f"{mode}.json")]) == 0
        r[mode] = json.loads((tmp_path / f"{mode}.json").read_text())
    assert r["predicted"]["depth_input"] == f"predicted by {load_card(a).name}"
    assert r["true"]["depth_input"] == "true (the scenes' own)"
    card = load_card(photo_run)
    d_graph, p_graph = depth_graph_from_card(a), photo_graph_from_card(card)
    want = {"predicted": [], "true": []}
    for seed in (10000, 10001):
        s = generate_scene(seed, card.height, card.width)
        lab, inst = torch.from_numpy(s.labels.astype(np.int64))[None, None], torch.from_numpy(s.instances)[None, None]
        with torch.no_grad():
            for mode, d in (("predicted", d_graph(lab, inst)), ("true", torch.from_numpy(s.depth)[None, None])):
                want[mode].append(l1(p_graph(lab, inst, d)[0].numpy(), s.photo))
    for mode in want:
        assert r[mode]["l1"] == pytest.approx(np.mean(want[mode]), abs=1e-9), mode
    assert r["predicted"]["l1"] != r["true"]["l1"]  # stage 2 does read the depth it is given
    # a photo-from-depth stage needs one depth source; a plain generator takes none
    capsys.readouterr()
    assert main(base) == 2 and "--depth-model STAGE1_CARD" in capsys.readouterr().err
    plain = str(REPO / "models" / "demo" / "spade-demo.card.json")
    assert main(["eval", "generator", plain, "--segmenter", seg, "--true-depth"]) == 2


def test_render_depth_aware_and_bad_depth_maps(depth_run, photo_run, tmp_path, capsys):
    from cityserve.cli import main
    from cityserve.export.depth_export import depth_graph_from_card, photo_graph_from_card
    from cityserve.labels import read_photo

    a, _ = depth_run
    photo = photo_run
    card = load_card(photo)
    h, w = card.height, card.width
    scene = generate_scene(11, h, w)
    labels = tmp_path / "l.png"
    cv2.imwrite(str(labels), scene.labels)
    out, dout = tmp_path / "p.png", tmp_path / "d.png"
    argv = ["render", str(labels), "--model", str(photo), "--out", str(out)]
    assert main([*argv, "--depth-aware", str(a), "--depth-out", str(dout)]) == 0
    # the same as the graphs in torch: stage 1's metres into stage 2
    lab = torch.from_numpy(scene.labels.astype(np.int64))[None, None]
    inst = torch.from_numpy(scene.labels.astype(np.int32))[None, None]
    with torch.no_grad():
        d = depth_graph_from_card(load_card(a))(lab, inst)
        want = photo_graph_from_card(card)(lab, inst, d)[0].numpy()
    assert np.array_equal(read_photo(str(out)), want)
    np.testing.assert_allclose(read_depth(dout), d[0, 0].numpy(), atol=6e-4)  # millimetres
    # the user's own depth: the scene's true depth
    np.save(tmp_path / "true.npy", scene.depth)
    assert main([*argv, "--depth", str(tmp_path / "true.npy")]) == 0
    capsys.readouterr()
    bad = scene.depth.copy()
    bad[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "small.npy", scene.depth[: h // 2])
    cv2.imwrite(str(tmp_path / "d8.png"), np.full((h, w), 5, np.uint8))
    for f, msg in (
        ("nan.npy", "nan.npy: depth map has 1 NaN/inf pixel(s)"),
        ("small.npy", f"depth map is {h // 2}x{w}, the model renders {h}x{w}"),
        ("d8.png", "d8.png: a depth PNG must be single-channel 16-bit"),
    ):
        assert main([*argv, "--depth", str(tmp_path / f)]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.strip().count("\n") == 0, err
