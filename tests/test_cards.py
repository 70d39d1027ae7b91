"""Model cards and label sets are user files: every field is checked with bounds before use (one-line
error, exit 2), checks cannot be skipped, and the typed sections load old cards (cityserve-card/1's
``extra`` bag) as well as new ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cityserve.card_sections import AotArtifact, OnnxArtifact, ServingOptions, TensorrtArtifact
from cityserve.cards import ModelCard, load_card
from cityserve.cli import main
from cityserve.errors import CheckpointError, LabelError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "models" / "demo"
# a card written before the typed sections (cityserve-card/1, an ``extra`` bag): the previous demo SPADE
OLD_SPADE = REPO_ROOT / "models" / "baselines" / "spade-hinge-demo"
EXAMPLE = REPO_ROOT / "examples" / "street_01.png"


@pytest.fixture
def demo_copy(tmp_path):
    """The demo SPADE's card in a folder of its own, its weights linked in: a card to edit."""
    folder = tmp_path / "card"
    folder.mkdir()
    (folder / "spade-demo.pt").symlink_to(OLD_SPADE / "spade-demo.pt")
    shutil.copy(OLD_SPADE / "spade-demo.card.json", folder)
    return folder / "spade-demo.card.json"


def edited(path: Path, edit) -> Path:
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
    return path


def render(card: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    rc = main(["render", str(EXAMPLE), "--model", str(card), "--out", str(tmp_path / "photo.png")])
    return rc, capsys.readouterr().err


def import_with_label_set(labels: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    checkpoint = REPO_ROOT / "tests" / "fixtures" / "pix2pix" / "unet256_ngf16_latest_net_G.pth"
    rc = main(["import", "pix2pix", str(checkpoint), "--label-set", str(labels), "--out", str(tmp_path / "p2p")])
    return rc, capsys.readouterr().err


def assert_one_line(rc: int, err: str, match: str) -> None:
    assert rc == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err


# ---- issue 13 point 6: values with bounds ---------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("height", -256, "height must be 1..16384, not -256"),
        ("height", 256.5, "height must be an integer 1..16384, not 256.5"),
        ("width", True, "width must be an integer"),
        ("kind", "discriminator", "kind must be generator or segmenter"),
        ("name", "", "name must be a non-empty string"),
        ("label_set", ["cityscapes"], "label_set must be a built-in name or a label-set mapping"),
    ],
)
def test_card_fields_out_of_bounds_are_one_line_errors(demo_copy, tmp_path, capsys, field, value, message):
    edited(demo_copy, lambda d: d.__setitem__(field, value))
    assert_one_line(*render(demo_copy, tmp_path, capsys), message)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("ngf", 10**7, "config.ngf must be 1..1024, not 10000000"),
        ("ngf", 1e7, "config.ngf must be an int, not 10000000.0"),
        ("label_nc", 10**9, "config.label_nc must be 1..4096, not 1000000000"),
        ("aspect_ratio", float("inf"), "config.aspect_ratio must be a float"),
        ("norm_G", "x" * 1000, "config.norm_G must be a str"),
    ],
)
def test_card_config_out_of_bounds_is_refused_before_a_model_is_built(demo_copy, tmp_path, capsys, key, value, message):
    edited(demo_copy, lambda d: d["config"].__setitem__(key, value))
    assert_one_line(*render(demo_copy, tmp_path, capsys), message)  # before a 1e7-channel model is allocated


def test_card_serving_options_out_of_bounds(demo_copy, tmp_path, capsys):
    edited(demo_copy, lambda d: d["extra"].__setitem__("serving", {"max_batch_size": 10**9}))
    rc = main(["repo", "build", "--model", str(demo_copy), "--out", str(tmp_path / "repo"), "--configs-only"])
    assert_one_line(rc, capsys.readouterr().err, "serving: max_batch_size must be 1..1024, not 1000000000")
    assert not (tmp_path / "repo").exists()


def test_deeply_nested_card_and_label_set_are_one_line_errors(tmp_path, capsys):
    deep = "[" * 100_000 + "]" * 100_000
    card = tmp_path / "deep.card.json"
    card.write_text('{"name": ' + deep + "}")
    assert_one_line(*render(card, tmp_path, capsys), "nested too deeply")
    labels = tmp_path / "deep.json"
    labels.write_text('{"name": "deep", "classes": ' + deep + "}")
    assert_one_line(*import_with_label_set(labels, tmp_path, capsys), "nested too deeply")


def label_set(classes, **top) -> dict:
    return {"name": "mine", "classes": classes, **top}


def cls(i: int, name: str | None = None) -> dict:
    return {"id": i, "name": name or f"c{i}", "color": [i % 256, (i * 7) % 256, (i * 13) % 256]}


@pytest.mark.parametrize(
    "d, message",
    [
        (label_set([cls(0), cls(2**40)]), "id 1099511627776 is not an integer 0..4095"),
        (label_set([cls(0), cls(4000)]), "missing 1, 2, 3, 4, 5 ..."),
        (label_set([cls(i) for i in range(5000)]), "5000 classes; a label set has at most 4096"),
        (label_set([cls(0, "x" * 101)]), "is not a non-empty string of at most 100 characters"),
        (label_set([cls(0)], dontcare_id=2**40), "dontcare_id must be an id 0..4095"),
        ({"name": ["a"], "classes": [cls(0)]}, "name ['a'] is not a non-empty string"),
    ],
)
def test_label_set_values_are_bounded(d, message):
    from cityserve.labels import label_set_from_dict

    with pytest.raises(LabelError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        label_set_from_dict(d, "mine.json")  # (the old gap check built a 2**40-element set: MemoryError)


def test_label_set_file_with_a_huge_id_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(label_set([cls(0), cls(2**40)])))
    assert_one_line(*import_with_label_set(path, tmp_path, capsys), "id 1099511627776 is not an integer 0..4095")


# ---- issue 13 point 7: checks that cannot be skipped ---------------------------------------------------


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.__setitem__("sha256", ""), "sha256 must be the file's sha256 (64 hex characters), not empty"),
        (lambda d: d.pop("sha256"), "sha256 must be the file's sha256 (64 hex characters), not empty"),
        (lambda d: d.__setitem__("sha256", "abc"), "sha256 must be the file's sha256"),
        (lambda d: d.__setitem__("weights", "/etc/passwd"), "must be a relative path inside the card's folder"),
        (lambda d: d.__setitem__("weights", "../../../etc/passwd"), "must stay inside the card's folder (no '..')"),
        (lambda d: d.__setitem__("weights", "sub/../../x.pt"), "must stay inside the card's folder (no '..')"),
        (lambda d: d.__setitem__("weights", "C:\\x.pt"), "must be a relative path inside the card's folder"),
    ],
)
def test_weights_checks_cannot_be_skipped(demo_copy, tmp_path, capsys, edit, message):
    edited(demo_copy, edit)
    rc, err = render(demo_copy, tmp_path, capsys)
    assert_one_line(rc, err, message)
    assert "passwd" not in err or "sha256 " not in err  # nothing outside the folder was hashed


# ---- issue 15 point 4: typed sections, old cards still load ---------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        OLD_SPADE / "spade-demo.card.json",
        DEMO / "segmenter-demo.card.json",
        REPO_ROOT / "models" / "baselines" / "pix2pix-demo" / "pix2pix-demo.card.json",
    ],
)
def test_shipped_cards_load_into_typed_sections(path):
    raw = json.loads(path.read_text())
    assert raw["format"] == "cityserve-card/1" and "extra" in raw  # written before the typed sections
    card = load_card(path)
    card.verify()
    assert card.training == raw["extra"]["training"] and card.artifacts == {} and card.serving is None
    assert card.notes == {k: v for k, v in raw["extra"].items() if k != "training"}
    again = ModelCard.from_dict(json.loads(card.to_json()))
    assert again == card and "extra" not in card.to_dict() and card.to_dict()["format"] == "cityserve-card/2"


def test_old_exported_card_migrates_to_its_source_card(tmp_path):
    """A cityserve-card/1 export kept ``../`` weights and ``extra.onnx.source_card``: it now points at
    the source card (whose weights are inside its own folder) and still finds the weights."""
    src = tmp_path / "ckpt"
    shutil.copytree(OLD_SPADE, src)
    exported = tmp_path / "exported"
    exported.mkdir()
    d = json.loads((src / "spade-demo.card.json").read_text())
    d["weights"] = "../ckpt/spade-demo.pt"
    d["extra"] = {
        "onnx": {
            "file": "render.onnx",
            "sha256": "0" * 64,
            "opset": 17,
            "source_card": str(src / "spade-demo.card.json"),
        },
        "serving": {"max_batch_size": 4},
        "max_batch_size": 2,
        "encoder": True,
        "weights_dtype": "float16",
    }
    (exported / "render.card.json").write_text(json.dumps(d))
    card = load_card(exported / "render.card.json")
    assert card.weights == "" and card.source_card == str(src / "spade-demo.card.json")
    assert isinstance(card.artifacts["onnx"], OnnxArtifact) and card.artifacts["onnx"].opset == 17
    assert card.serving == ServingOptions(max_batch_size=4) and card.encoder == {}
    assert card.notes == {"weights_dtype": "float16"}
    assert card.weights_path.resolve() == (src / "spade-demo.pt").resolve()
    card.verify()


def test_artifact_sections_are_typed_and_checked(demo_copy):
    d = json.loads(demo_copy.read_text())
    d["artifacts"] = {
        "aot": {"file": "render.pt2", "sha256": "1" * 64, "dtype": "bf16", "cpu_flags_required": ["avx512_bf16"]},
        "tensorrt": {"profile": {"min_batch": 1, "opt_batch": 2, "max_batch": 4}},
        "openvino": {"file": "render.xml", "sha256": "2" * 64, "precision": "bf16"},  # a kind this version lacks
    }
    d.pop("extra")
    card = ModelCard.from_dict(d)
    assert isinstance(card.artifacts["aot"], AotArtifact) and card.artifacts["aot"].dtype == "bf16"
    assert isinstance(card.artifacts["tensorrt"], TensorrtArtifact) and card.artifacts["tensorrt"].file == ""
    assert card.artifacts["openvino"].details == {"precision": "bf16"}
    assert ModelCard.from_dict(card.to_dict()) == card
    for bad, message in (
        ({"aot": {"file": "../render.pt2", "sha256": "1" * 64}}, "no '..'"),
        ({"aot": {"file": "render.pt2", "sha256": ""}}, "sha256 of render.pt2 must be"),
        ({"aot": {"file": "render.pt2", "sha256": "1" * 64, "shell": "rm -rf"}}, "unknown field(s) shell"),
        ({"onnx": ["render.onnx"]}, "must be a mapping"),
    ):
        with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
            ModelCard.from_dict({**d, "artifacts": bad})


def test_portable_path_is_relative_inside_the_working_directory(tmp_path, monkeypatch):
    from cityserve.cards import portable_path

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert portable_path(tmp_path / "runs" / "a.card.json") == "runs/a.card.json"
    assert portable_path("runs/a.card.json") == "runs/a.card.json"
    assert portable_path("/elsewhere/b.card.json") == "/elsewhere/b.card.json"
