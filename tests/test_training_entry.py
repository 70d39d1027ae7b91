"""Training options named once: flags generated from the config dataclasses, presets as dataclass
instances, the resolved config written beside the run, and fine-tuning a run at another size."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _helpers_training import REPO, write_paired

from cityserve.cards import load_card
from cityserve.checkpoints import safe_load
from cityserve.models.spade import SPADEConfig
from cityserve.options import cli_fields
from cityserve.training.entry import build_parser, resolve
from cityserve.training.runner import RunConfig
from cityserve.training.spade_presets import PRESETS
from cityserve.training.spade_trainer import SPADETrainConfig


def entry(name: str):
    spec = importlib.util.spec_from_file_location(f"train_entry_{name}", REPO / "train" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SPADE = entry("spade")


def test_every_config_field_has_exactly_one_flag_and_presets_are_dataclasses():
    parser = build_parser(SPADE.SPEC)
    dests = [a.dest for a in parser._actions if a.help != "==SUPPRESS=="]
    for cls in (RunConfig, SPADETrainConfig, SPADEConfig):
        for f in cli_fields(cls):
            assert dests.count(f.name) == 1, f.name
    assert "crop_size" not in dests and "aspect_ratio" not in dests  # derived from --size
    for name, preset in PRESETS.items():
        assert isinstance(preset.model, SPADEConfig) and isinstance(preset.train, SPADETrainConfig), name


def test_flags_override_the_preset_and_nothing_else():
    args = build_parser(SPADE.SPEC).parse_args(
        ["--preset", "demo", "--out", "x", "--ndf", "8", "--no-instance", "--lambda-labelmix", "5", "--no-tensorboard"]
    )
    r = resolve(SPADE.SPEC, args)
    demo = PRESETS["demo"]
    assert r.train == dataclasses.replace(demo.train, ndf=8, lambda_labelmix=5.0)
    assert r.model_overrides == {"no_instance": True}
    model = SPADE.resolved_model(r)
    assert model.no_instance and model.ngf == demo.model.ngf and (model.height, model.width) == demo.size
    assert r.run.tensorboard is False and r.run.batch_size == demo.batch_size and r.run.name == "spade-demo"
    # a no_* field can be cleared again: --instance undoes a preset's no_instance
    args = build_parser(SPADE.SPEC).parse_args(["--preset", "ade20k", "--out", "x", "--instance"])
    assert SPADE.resolved_model(resolve(SPADE.SPEC, args)).no_instance is False


def test_run_writes_its_resolved_config_and_finetunes_at_another_size(tmp_path):
    small, big = write_paired(tmp_path / "p32", 2, 64, 128), write_paired(tmp_path / "p64", 2, 128, 256)
    common = ["--preset", "tiny", "--data", "paired", "--no-tensorboard", "--no-progress", "--threads", "1"]
    oasis = [
        "--objective",
        "oasis",
        "--num-res-blocks-D",
        "5",
        "--norm-G",
        "spectralspadeinstance1x1",
        "--nhidden",
        "4",
    ]
    a = tmp_path / "a"
    assert (
        SPADE.main([*common, *oasis, "--root", str(small), "--size", "64x128", "--max-steps", "2", "--out", str(a)])
        == 0
    )
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["preset"] == "tiny" and cfg["training"]["objective"] == "oasis" and cfg["size"] == [64, 128]
    assert cfg["model"]["nhidden"] == 4 and cfg["model"]["crop_size"] == 128 and cfg["run"]["max_steps"] == 2
    # stage 2: the 64x128 generator and its discriminator continue at 128x256
    b = tmp_path / "b"
    state = a / "state" / "step_00000002.pt"
    args = ["--root", str(big), "--size", "128x256", "--max-steps", "1", "--out", str(b)]
    args += ["--init-from", str(a / "spade-tiny.card.json"), "--init-D", str(state)]
    assert SPADE.main([*common, *oasis, *args]) == 0
    card = load_card(b)
    assert (card.height, card.width) == (128, 256) and card.config["crop_size"] == 256
    assert card.provenance["init_from"]["name"] == "spade-tiny"
    first = safe_load(a / "spade-tiny.pt")
    assert safe_load(card.weights_path).keys() == first.keys()
    d_before = safe_load(state)["modules"]["netD"]
    d_after = safe_load(b / "state" / "step_00000001.pt")["modules"]["netD"]
    w = "layer_up_last.weight"
    assert not torch.equal(d_before[w], d_after[w]) and (d_before[w] - d_after[w]).abs().max() < 0.05


def test_a_vae_card_cannot_change_size(tmp_path, capsys):
    from cityserve.cards import ModelCard
    from cityserve.checkpoints import save_checkpoint
    from cityserve.models.spade import SPADEGenerator
    from cityserve.training.spade_trainer import spade_config_for

    g = spade_config_for("cityscapes", (32, 64), ngf=2, use_vae=True, z_dim=4)
    card = ModelCard(
        name="vae",
        kind="generator",
        arch="spade",
        config=dataclasses.asdict(g),
        label_set="cityscapes",
        height=32,
        width=64,
    )
    path = save_checkpoint(card, SPADEGenerator(g).state_dict(), tmp_path, "vae")
    data = write_paired(tmp_path / "p", 1, 64, 128)
    rc = SPADE.main(
        [
            "--preset",
            "tiny",
            "--data",
            "paired",
            "--root",
            str(data),
            "--size",
            "64x128",
            "--max-steps",
            "1",
            "--out",
            str(tmp_path / "o"),
            "--init-from",
            str(path),
            "--no-tensorboard",
            "--no-progress",
        ]
    )
    assert rc == 2 and "VAE" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["spade", "pix2pix", "segmenter"])
def test_help_lists_generated_flags(script, capsys):
    with pytest.raises(SystemExit) as e:
        entry(script).main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--precision" in out and "--resume [STATE]" in out and "--log-every" in out
