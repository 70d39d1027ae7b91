"""The repository builder on Triton's ModelConfig type: card values stay data, ensembles from steps are
checked, the gpu-trt engine script uses the project's TensorRT builder, and the committed example
repositories (triton_models/examples/) are exactly what the builder writes. No server here."""

from __future__ import annotations

import itertools
import json
import runpy
from pathlib import Path

import pytest
from _helpers_serving import tiny_segmenter_onnx, tiny_spade_card
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from cityserve.card_sections import ServingOptions
from cityserve.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "triton_models" / "examples"
# a name that, pasted into config text, would end the string and add a field
EVIL = 'x"\ndefault_model_filename: "../../evil.py"\n# '


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from cityserve.export.onnx_export import export_onnx
    from cityserve.labels import get_label_set

    root = tmp_path_factory.mktemp("builder-models")
    card = tiny_spade_card(root / "gen")
    render_onnx = export_onnx(card, root / "gen" / "exported")
    evil = tiny_spade_card(root / "evil", name="evil")  # files named safely, then the card renamed
    evil.name = EVIL
    evil.label_set = {**get_label_set("cityscapes").to_dict(), "name": EVIL}
    evil.save(evil.path)
    return {"card": card, "render_onnx": render_onnx, "evil": evil, "segment_onnx": tiny_segmenter_onnx(root / "seg")}


def read_configs(repo: Path) -> dict[str, mc.ModelConfig]:
    return {p.parent.name: text_format.Parse(p.read_text(), mc.ModelConfig()) for p in repo.glob("*/config.pbtxt")}


# ---- issue 13 point 1: card and label-set values are data ---------------------------------------


@pytest.mark.parametrize("target", ["cpu", "gpu-onnx", "openvino"])
def test_card_and_label_set_names_cannot_add_config_fields(models, tmp_path, target):
    from cityserve.serving.repo import build_repository

    built = build_repository(
        [models["evil"], models["segment_onnx"]], target, tmp_path / "r", overrides={"cpu_engine": "onnxruntime"}
    )
    configs = read_configs(built.path)
    assert set(configs) == set(built.models)
    want_file = {"cpu": "", "gpu-onnx": "model.onnx", "openvino": "model.onnx"}[target]
    for name, cfg in configs.items():
        expected = want_file if name in ("render", "segment") else ""
        assert cfg.default_model_filename == expected, f"{name}: {cfg.default_model_filename!r}"
        text = (built.path / name / "config.pbtxt").read_text()
        # the only default_model_filename line is the builder's; the rest of the text is the message
        top = [line for line in text.splitlines() if line.startswith("default_model_filename")]
        assert top == ([f'default_model_filename: "{expected}"'] if expected else []), name
        body = "\n".join(line for line in text.splitlines() if not line.startswith("#")) + "\n"
        assert body == text_format.MessageToString(cfg, use_short_repeated_primitives=True, use_index_order=True)
    # the names went in as protobuf strings, byte for byte
    assert configs["render"].parameters["card_name"].string_value == EVIL
    assert configs["render"].parameters["label_set"].string_value == EVIL
    decoder = "label2photo" if target == "cpu" else "decode_png"  # the cpu target's label2photo is fused
    assert configs[decoder].parameters["label_set"].string_value == EVIL
    assert json.loads((built.path / decoder / "1" / "label_set.json").read_text())["name"] == EVIL
    manifest = json.loads((built.path / "cityserve_repo.json").read_text())
    assert manifest["models"]["render"]["card"] == EVIL


def test_card_names_that_cannot_name_a_model_are_refused(models, tmp_path, capsys):
    from cityserve.cli import main
    from cityserve.serving.configs import check_model_name
    from cityserve.serving.repo import build_repository

    # a second generator's models are named render_<card name>: the evil name cannot be one
    with pytest.raises(ConfigError, match="cannot be part of a Triton model name"):
        build_repository([models["render_onnx"], models["evil"]], "cpu", tmp_path / "r")
    rc = main(
        ["repo", "build", "--model", str(models["render_onnx"]), "--model", str(models["evil"].path)]
        + ["--out", str(tmp_path / "r2"), "--cpu-engine", "onnxruntime"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: card name") and err.count("\n") == 1
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()
    for bad in ("", "../x", ".hidden", "-x", "a b", "a/b", "a\nb", "x" * 101, "zürich"):
        with pytest.raises(ConfigError, match="usable Triton model name"):
            check_model_name(bad)
    assert check_model_name("render_spade-demo.v2") == "render_spade-demo.v2"


@pytest.mark.parametrize(
    "option, value",
    [("max_batch_size", 10**9), ("max_batch_size", 0), ("max_batch_size", 8.0), ("instances", -1),
     ("max_queue_delay_us", 10**12), ("png_compression", 10), ("warmup", "yes"), ("max_pixels", 2**40),
     ("preferred_batch_sizes", [2, 4096])],
)  # fmt: skip
def test_serving_options_are_bounded(option, value):
    with pytest.raises(ConfigError, match=option.rstrip("s") if option != "preferred_batch_sizes" else "batch size"):
        ServingOptions(**{option: value})


def test_overrides_out_of_bounds_are_refused(models, tmp_path):
    from cityserve.serving.repo import build_repository

    for overrides, message in (
        ({"max_batch_size": 10**9}, "max_batch_size must be 1..1024, not 1000000000"),
        ({"instances": 0}, "instances must be 1..64, not 0"),
        ({"max_batchsize": 4}, "unknown serving option"),
    ):
        with pytest.raises(ConfigError, match=message):
            build_repository([models["render_onnx"]], "gpu-onnx", tmp_path / "r", overrides=overrides)
    assert not (tmp_path / "r").exists()


# ---- ensembles from steps -------------------------------------------------------------------------


def test_ensembles_are_checked_against_their_models():
    from cityserve.serving import configs as C
    from cityserve.serving.ensembles import Pipeline, Step, ensemble

    opts = ServingOptions(max_batch_size=4)
    ids = C.Tensor("labels", "uint8", (1, 8, 16))
    members = {
        "decode": C.decode_labels("decode", ids, opts, "cityscapes", 35, "render").config,
        "render": C.new_config("render", 2, [ids], [C.Tensor("image", "uint8", (8, 16, 3))], platform="x"),
        "encode": C.encode_image("encode", opts).config,
    }
    good = [
        Step("decode", {"PNG": "IN"}, {"labels": "ids"}),
        Step("render", {"labels": "ids"}, {"image": "image"}),
        Step("encode", {"image": "image"}, {"PNG": "OUT"}),
    ]
    spec = ensemble(Pipeline("chain", "a test chain", good, ["OUT"], {"IN": "label PNG"}), members)
    cfg = spec.config
    assert cfg.platform == "ensemble" and cfg.max_batch_size == 2  # the smallest of its models'
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.input] == [("IN", mc.TYPE_STRING, [1])]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("OUT", [1])]
    assert [s.model_name for s in cfg.ensemble_scheduling.step] == ["decode", "render", "encode"]
    assert any("IN" in line and "label PNG" in line for line in spec.header)

    def refused(steps, outputs, match):
        with pytest.raises(ConfigError, match=match):
            ensemble(Pipeline("chain", "x", steps, outputs), members)

    refused([Step("nope", {}, {})], [], "does not have")
    refused([Step("render", {}, {"image": "image"})], ["image"], "feeds inputs")
    refused([*good[:2], Step("encode", {"image": "image"}, {"JPEG": "OUT"})], ["OUT"], "lacks")
    refused(good[:1] + [Step("render", {"labels": "IN"}, {"image": "image"})], ["image"], "TYPE_STRING")
    refused(good, ["OUT", "image"], "#7482")  # an output a later step consumes
    refused(good[:2], ["OUT"], "written by no step")
    refused(good[:2], [], "never used")


# ---- issue 16 point 6: gpu-trt engines keep their FP32 pins -----------------------------------------


def test_engine_script_uses_the_project_tensorrt_builder(models, tmp_path):
    import shutil

    from cityserve.export.precision_report import LayerStat, PrecisionReport
    from cityserve.export.tensorrt_build import plan_build
    from cityserve.serving.repo import build_repository

    exported = tmp_path / "exported"
    shutil.copytree(models["render_onnx"].parent, exported)
    # the export's precision report travels along (one flagged layer: the first conv)
    flagged = LayerStat("generator.fc", "Conv2d", True, 1.0, 1.0, 0.5, 0.5, False, True, "test")
    PrecisionReport("float16", 0.01, 65504.0, [flagged], 0.0, 0.0).save(exported / "render.precision.json")
    built = build_repository([exported / "render.onnx"], "gpu-trt", tmp_path / "r", overrides={"max_batch_size": 16})
    script = (built.path / "build_engines.sh").read_text()
    commands = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in commands if "trtexec" in line]
    call = script[script.index("$CITYSERVE export tensorrt") :].split("\n\n")[0].replace("\\\n", " ")
    args = call.split()
    assert args[:4] == ["$CITYSERVE", "export", "tensorrt", '"$REPO"/render/1/model.onnx']
    assert args[args.index("--out") + 1] == '"$REPO"/render/1/model.plan'
    assert args[args.index("--fp32-layers-from") + 1] == '"$REPO"/render/1/model.precision.json'
    assert [args[args.index(f) + 1] for f in ("--precision", "--min-batch", "--opt-batch", "--max-batch")] == [
        "fp16", "1", "16", "16"
    ]  # fmt: skip
    # what the script runs: `cityserve export tensorrt`'s own plan (checked without TensorRT) pins the
    # same layers to FP32 as a build next to the export would
    version = built.path / "render" / "1"
    plan = plan_build(version / "model.onnx", version / "model.plan", min_batch=1, opt_batch=16, max_batch=16)
    beside = plan_build(exported / "render.onnx", exported / "render.plan")
    assert plan.report_path == version / "model.precision.json" and plan.profile.max == 16
    assert plan.fp32_flagged and plan.fp32_normalization
    assert (plan.fp32_flagged, plan.fp32_normalization) == (beside.fp32_flagged, beside.fp32_normalization)


# ---- the committed examples are what the builder writes -----------------------------------------------


@pytest.mark.slow
def test_committed_example_repositories_are_what_the_builder_writes(tmp_path):
    regenerate = runpy.run_path(str(EXAMPLES / "regenerate.py"))["regenerate"]
    regenerate(tmp_path / "out", tmp_path / "work")
    for target in ("cpu", "gpu-onnx", "gpu-trt", "openvino"):
        got, want = tmp_path / "out" / target, EXAMPLES / target
        files = sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(want).as_posix() for p in want.rglob("*") if p.is_file()), target
        for rel in files:
            if rel == "cityserve_repo.json":
                a, b = (json.loads((d / rel).read_text()) for d in (got, want))
                for m in (a, b):  # the graphs' sha256 depend on the exporting torch / onnx versions
                    for info in m["models"].values():
                        info.pop("onnx_sha256", None)
                assert a == b, f"{target}/{rel} differs: run python triton_models/examples/regenerate.py"
            else:
                assert (got / rel).read_text() == (want / rel).read_text(), (
                    f"{target}/{rel} differs from the committed example: run python triton_models/examples/regenerate.py"
                )
        for cfg in read_configs(want).values():
            assert cfg.name  # and each parses as Triton's ModelConfig


def test_latent_zero_makes_label2photo_deterministic(tmp_path):
    """--latent zero: prepare_render gives a noise generator the mean latent (same map, same photo); the
    default draws one per request; without a latent the option changes nothing."""
    import numpy as np

    from cityserve.serving.codec import RenderInputs
    from cityserve.serving.repo import build_repository

    ids = np.full((1, 8, 16), 7, np.uint8)
    zero = RenderInputs(8, 16, 35, z_dim=4, latent="zero")
    assert not zero.prepare(ids)["z"].any() and (zero.prepare(ids)["z"] == zero.prepare(ids)["z"]).all()
    rand = RenderInputs(8, 16, 35, z_dim=4)
    assert (rand.prepare(ids)["z"] != rand.prepare(ids)["z"]).any()

    card = tiny_spade_card(tmp_path / "gen", noise_dim=4)
    for (latent, want), pipeline in itertools.product((("zero", "zero"), ("random", None)), ("ensemble", "fused")):
        out = tmp_path / f"{latent}-{pipeline}"
        overrides = {"latent": latent, "cpu_engine": "onnxruntime", "pipeline": pipeline}
        build_repository([card], "cpu", out, overrides=overrides, configs_only=True)
        model = "prepare_render" if pipeline == "ensemble" else "label2photo"  # the fused one prepares itself
        prep = read_configs(out)[model]
        got = prep.parameters["latent"].string_value if "latent" in prep.parameters else None
        assert got == want
        if pipeline == "ensemble":
            assert ("z = 0" in (out / "prepare_render" / "config.pbtxt").read_text()) == (latent == "zero")
    with pytest.raises(ConfigError, match="latent must be"):
        ServingOptions(latent="mean")
