"""``cityserve import spade``: official files in, checkpoint + card out; inference, refusals, bad files."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from _helpers_spade import CONFIG_KEYS, fixture_config, load_pt, randomize_, tiny_config

from cityserve.cards import load_card, sha256_file
from cityserve.cli import main
from cityserve.errors import CheckpointError
from cityserve.importing.spade import import_spade
from cityserve.models.registry import build_from_card
from cityserve.models.spade import ConvEncoder, SPADEGenerator
from cityserve.models.spade_style import load_encoder

SIZES = {"cityscapes_ngf2": "256x512", "ade20k_ngf2": "256x256", "ade20k_more_vae_ngf2": "256x256"}
LABEL_SETS = {"cityscapes_ngf2": "cityscapes", "ade20k_ngf2": "ade20k", "ade20k_more_vae_ngf2": "ade20k"}


def spade_file(fixtures_dir: Path, name: str, net: str = "netG") -> Path:
    return fixtures_dir / "spade" / f"{name}_{net}.pth"


def cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["cityserve", *argv])
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def import_args(fixtures_dir: Path, name: str, out: Path, *extra: str) -> list[str]:
    args = [
        "import",
        "spade",
        str(spade_file(fixtures_dir, name)),
        "--label-set",
        LABEL_SETS[name],
        "--size",
        SIZES[name],
        "--out",
        str(out),
    ]
    if "vae" in name:
        args += ["--netE", str(spade_file(fixtures_dir, name, "netE"))]
    return args + list(extra)


@pytest.mark.parametrize("name", list(SIZES))
def test_import_fixture_writes_card_and_official_weights(fixtures_dir, tmp_path, monkeypatch, capsys, name):
    extra = ["--upsampling", "normal"] if name == "cityscapes_ngf2" else []  # not inferable there
    rc, out, err = cli(monkeypatch, capsys, *import_args(fixtures_dir, name, tmp_path, *extra))
    assert rc == 0, err
    card = load_card(tmp_path)
    opts = fixture_config(fixtures_dir, name)["options"]
    assert (card.kind, card.arch, card.label_set) == ("generator", "spade", LABEL_SETS[name])
    assert {k: card.config[k] for k in CONFIG_KEYS} == {k: opts[k] for k in CONFIG_KEYS}
    assert f"{card.height}x{card.width}" == SIZES[name]
    src = spade_file(fixtures_dir, name)
    assert card.provenance["imported_from"] == str(src.resolve())
    assert card.provenance["source_sha256"] == sha256_file(src)
    assert card.provenance["command"].startswith("cityserve import spade ")
    assert card.sha256 == sha256_file(card.weights_path)
    card.verify()

    official = torch.load(src, weights_only=True)
    written = torch.load(card.weights_path, weights_only=True)
    gen_keys = [k for k in written if not k.startswith("netE.")]
    assert gen_keys == list(official)
    assert all(torch.equal(written[k], official[k]) for k in official)
    if "vae" in name:
        enc = torch.load(spade_file(fixtures_dir, name, "netE"), weights_only=True)
        assert sorted(k for k in written if k.startswith("netE.")) == sorted("netE." + k for k in enc)
        # the encoder comes back from the card and reproduces the official mu
        encoder = load_encoder(card)
        with torch.no_grad():
            mu, _ = encoder(load_pt(fixtures_dir, name, "style"))
        assert (mu - load_pt(fixtures_dir, name, "mu")).abs().max() <= 1e-4
    # the strict load of build_from_card works (netE.* keys are not the generator's)
    gen = build_from_card(card)
    assert isinstance(gen, SPADEGenerator) and not gen.training


def test_import_infers_and_defaults(fixtures_dir, tmp_path):
    # Cityscapes non-VAE: 'normal' vs 'more' is not in the tensors -> the official Cityscapes default
    card = load_card(
        import_spade(
            spade_file(fixtures_dir, "cityscapes_ngf2"), "cityscapes", (256, 512), tmp_path / "cs", log=lambda m: None
        )
    )
    assert card.config["num_upsampling_layers"] == "more"
    assert card.config["ngf"] == 2 and card.config["label_nc"] == 35 and not card.config["no_instance"]
    # VAE: inferred from fc being Linear, upsampling from its size, without --vae / --upsampling
    card = load_card(
        import_spade(
            spade_file(fixtures_dir, "ade20k_more_vae_ngf2"), "ade20k", (256, 256), tmp_path / "vae", log=lambda m: None
        )
    )
    assert card.config["use_vae"] and card.config["num_upsampling_layers"] == "more"
    assert "encoder" not in card.extra  # imported without --netE
    with pytest.raises(Exception, match="no encoder weights|re-import"):
        load_encoder(card)


CONTRADICTIONS = [
    ("cityscapes_ngf2", ["--no-instance"], r"--no-instance contradicts head_0\.norm_0\.mlp_shared\.0\.weight"),
    ("cityscapes_ngf2", ["--vae"], r"--vae contradicts fc\.weight \[32, 36, 3, 3\]"),
    ("cityscapes_ngf2", ["--upsampling", "most"], r"--upsampling most contradicts .*up_4"),
    ("cityscapes_ngf2", ["--size", "250x500"], r"--size 250x500 is not a size SPADE renders"),
    ("cityscapes_ngf2", ["--label-set", "ade20k"], r"--label-set ade20k contradicts head_0\.norm_0\.mlp_shared"),
    ("ade20k_ngf2", ["--netE", "VAE_NETE"], r"--netE given, but .* not a VAE generator"),
    ("ade20k_ngf2", ["--label-set", "coco-stuff"], r"--label-set coco-stuff contradicts"),
    (
        "ade20k_more_vae_ngf2",
        ["--upsampling", "normal"],
        r"--upsampling normal with --size 256x256 contradicts fc\.weight",
    ),
    ("ade20k_more_vae_ngf2", ["--size", "128x128"], r"--size 128x128 contradicts encoder .*layer6"),
]


@pytest.mark.parametrize("name,extra,message", CONTRADICTIONS)
def test_contradicting_flags_refused(fixtures_dir, tmp_path, monkeypatch, capsys, name, extra, message):
    extra = [str(spade_file(fixtures_dir, "ade20k_more_vae_ngf2", "netE")) if a == "VAE_NETE" else a for a in extra]
    args = import_args(fixtures_dir, name, tmp_path / "out")
    for flag in ("--size", "--label-set"):  # later flags override the defaults
        if flag in extra:
            i = args.index(flag)
            del args[i : i + 2]
    rc, out, err = cli(monkeypatch, capsys, *args, *extra)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _corrupt(tmp: Path, fixtures_dir: Path, kind: str) -> Path:
    src = spade_file(fixtures_dir, "ade20k_ngf2").read_bytes()
    p = tmp / f"{kind}.pth"
    if kind == "truncated":
        p.write_bytes(src[: len(src) * 2 // 3])
    elif kind == "garbage":
        p.write_bytes(b"\x00not a checkpoint" * 100)
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "flipped":  # zip intact up to a damaged header in the middle
        data = bytearray(src)
        data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
        p.write_bytes(bytes(data))
    elif kind == "pickle_objects":
        buf = io.BytesIO()
        torch.save({"opt": Path("/etc/passwd"), "fc.weight": torch.zeros(1)}, buf)
        p.write_bytes(buf.getvalue())
    elif kind == "not_spade":
        torch.save({"model.model.0.weight": torch.zeros(4, 3, 4, 4)}, p)
    elif kind == "missing":
        return tmp / "does_not_exist.pth"
    return p


@pytest.mark.parametrize(
    "kind,message",
    [
        ("truncated", "truncated or corrupt"),
        ("garbage", "not a readable PyTorch checkpoint|corrupt"),
        ("empty", "empty"),
        ("flipped", "checkpoint"),
        ("pickle_objects", "weights_only"),
        ("not_spade", "not a SPADE generator"),
        ("missing", "does not exist"),
    ],
)
def test_bad_checkpoint_rejected_cleanly(fixtures_dir, tmp_path, monkeypatch, capsys, kind, message):
    bad = _corrupt(tmp_path, fixtures_dir, kind)
    with pytest.raises(CheckpointError, match=message):
        import_spade(bad, "ade20k", (256, 256), tmp_path / "api")
    rc, out, err = cli(
        monkeypatch,
        capsys,
        "import",
        "spade",
        str(bad),
        "--label-set",
        "ade20k",
        "--size",
        "256x256",
        "--out",
        str(tmp_path / "cli"),
    )
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert str(bad) in err


def test_truncated_encoder_rejected(fixtures_dir, tmp_path, monkeypatch, capsys):
    name = "ade20k_more_vae_ngf2"
    bad = tmp_path / "netE.pth"
    data = spade_file(fixtures_dir, name, "netE").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    args = import_args(fixtures_dir, name, tmp_path / "out")
    args[args.index("--netE") + 1] = str(bad)
    rc, out, err = cli(monkeypatch, capsys, *args)
    assert rc == 2 and "truncated or corrupt" in err and err.count("\n") == 1


def test_custom_label_set(tmp_path, monkeypatch, capsys):
    """A user's own set: the flags say how channels split; the set's ids must fit the tensors."""
    cfg = tiny_config(label_nc=4, contain_dontcare_label=True, no_instance=True, crop_size=64, aspect_ratio=2.0)
    netg = tmp_path / "latest_net_G.pth"
    torch.save(randomize_(SPADEGenerator(cfg)).state_dict(), netg)
    classes = [{"id": i, "name": f"c{i}", "color": [40 * i, 10, 200 - 30 * i]} for i in range(5)]
    ls_file = tmp_path / "mine.json"
    ls_file.write_text(json.dumps({"name": "mine", "classes": classes, "dontcare_id": 4}))
    rc, out, err = cli(
        monkeypatch,
        capsys,
        "import",
        "spade",
        str(netg),
        "--label-set",
        str(ls_file),
        "--dontcare",
        "--no-instance",
        "--size",
        "32x64",
        "--out",
        str(tmp_path / "ok"),
    )
    assert rc == 0, err
    card = load_card(tmp_path / "ok")
    assert isinstance(card.label_set, dict) and card.label_set["name"] == "mine"
    assert (card.config["label_nc"], card.config["contain_dontcare_label"], card.config["no_instance"]) == (
        4,
        True,
        True,
    )
    assert (card.height, card.width) == (32, 64)
    build_from_card(card)
    # a set with more ids than the model has channels is refused
    big = tmp_path / "big.json"
    big.write_text(
        json.dumps(
            {
                "name": "big",
                "classes": [dict(c, id=i, name=f"k{i}", color=[i, i, 7]) for i, c in enumerate(classes * 2)],
            }
        )
    )
    rc, out, err = cli(
        monkeypatch,
        capsys,
        "import",
        "spade",
        str(netg),
        "--label-set",
        str(big),
        "--size",
        "32x64",
        "--out",
        str(tmp_path / "bad"),
    )
    assert rc == 2 and "label set 'big' has 10 ids" in err and err.count("\n") == 1


def test_sha256_mismatch_detected(fixtures_dir, tmp_path):
    card = load_card(
        import_spade(spade_file(fixtures_dir, "ade20k_ngf2"), "ade20k", (256, 256), tmp_path, log=lambda m: None)
    )
    data = bytearray(card.weights_path.read_bytes())
    data[-100] ^= 0xFF
    card.weights_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        build_from_card(card)


def test_encoder_must_match_generator(fixtures_dir, tmp_path):
    """An encoder of another width is refused (the encoder of a different model)."""
    cfg = tiny_config(
        label_nc=150,
        contain_dontcare_label=True,
        no_instance=True,
        use_vae=True,
        ngf=3,
        crop_size=256,
        aspect_ratio=1.0,
        num_upsampling_layers="more",
    )
    nete = tmp_path / "latest_net_E.pth"
    torch.save(ConvEncoder(cfg).state_dict(), nete)
    with pytest.raises(CheckpointError, match="ngf 3 .* ngf 2"):
        import_spade(
            spade_file(fixtures_dir, "ade20k_more_vae_ngf2"),
            "ade20k",
            (256, 256),
            tmp_path / "o",
            netE=nete,
            log=lambda m: None,
        )
