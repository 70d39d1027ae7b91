"""What every training entry point (``train/spade.py``, ``train/pix2pix.py``, ``train/segmenter.py``)
shares: named presets, a command line generated from the config dataclasses, the resolved config
written beside the run, and the project's exit codes.

A trainer describes itself once as a ``TrainerSpec``: its presets (``Preset`` instances holding the
model and training config dataclasses), the model fields a user may set, and ``build(run)``, which
turns a ``ResolvedRun`` into the ``(trainer, dataset)`` to fit. Each flag is a dataclass field; a flag
the user gives overrides the preset's value (``dataclasses.replace``), and the whole resolved run is
written to ``OUT/config.json`` so every run says exactly what it trained with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any, Optional

from torch.utils.data import Dataset

from ..cards import atomic_write_bytes
from ..errors import run_with_exit_codes
from ..options import add_options, given, to_jsonable
from .common import DataConfig
from .runner import RunConfig, Runner

log = logging.getLogger("cityserve.training")
CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class Preset:
    """A trainer's named base settings: its model and training configs, and the run defaults."""

    model: Any  # the model's config dataclass (SPADEConfig, Pix2PixConfig, ...)
    train: Any  # the trainer's config dataclass
    size: tuple[int, int]  # (H, W)
    batch_size: int = 1
    epochs: Optional[int] = None
    max_steps: Optional[int] = None  # used when neither --epochs nor --max-steps is given
    label_set: str = "cityscapes"


@dataclasses.dataclass
class ResolvedRun:
    """Everything one invocation trains with, after the preset and the command line are combined."""

    preset_name: str
    preset: Preset
    run: RunConfig
    data: DataConfig
    model_overrides: dict[str, Any]  # model fields the user set (the trainer combines them with the preset's)
    train: Any  # the trainer's config, resolved
    args: argparse.Namespace

    @property
    def size(self) -> tuple[int, int]:
        return self.data.resolution(self.preset.size)

    @property
    def label_set(self) -> Any:
        return self.data.label_set or self.preset.label_set


@dataclasses.dataclass
class TrainerSpec:
    prog: str
    description: str
    epilog: str
    presets: dict[str, Preset]
    default_preset: str
    model_cls: type
    train_cls: type
    build: Callable[[ResolvedRun, Runner], tuple[Any, Dataset]]  # -> (trainer, dataset)
    resolved_model: Callable[[ResolvedRun], Any]  # the model config the run trains (for config.json)
    model_fields: Optional[tuple[str, ...]] = None  # model fields on the command line (None: all with cli)
    extra_args: Optional[Callable[[argparse.ArgumentParser], None]] = None  # flags outside the dataclasses


def build_parser(spec: TrainerSpec) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=spec.prog,
        description=spec.description,
        epilog=spec.epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset",
        choices=sorted(spec.presets),
        default=spec.default_preset,
        help=f"base settings; any flag given overrides it (default: {spec.default_preset})",
    )
    add_options(p.add_argument_group("data"), DataConfig)
    add_options(p.add_argument_group("run"), RunConfig)
    add_options(p.add_argument_group("model"), spec.model_cls, spec.model_fields)
    add_options(p.add_argument_group("optimisation"), spec.train_cls)
    if spec.extra_args is not None:
        spec.extra_args(p)
    return p


def resolve(spec: TrainerSpec, args: argparse.Namespace) -> ResolvedRun:
    preset = spec.presets[args.preset]
    run_given = given(args, RunConfig)
    defaults: dict[str, Any] = {"name": f"{spec.prog.split('/')[-1].removesuffix('.py')}-{args.preset}"}
    defaults["batch_size"] = preset.batch_size
    if "max_steps" not in run_given and "epochs" not in run_given:
        defaults.update(epochs=preset.epochs, max_steps=preset.max_steps)
    run = RunConfig(**{**defaults, **run_given})
    model_overrides = {
        k: v for k, v in given(args, spec.model_cls).items() if spec.model_fields is None or k in spec.model_fields
    }
    train = dataclasses.replace(preset.train, **given(args, spec.train_cls))
    return ResolvedRun(args.preset, preset, run, DataConfig(**given(args, DataConfig)), model_overrides, train, args)


def write_config(spec: TrainerSpec, r: ResolvedRun) -> None:
    """``OUT/config.json``: the preset, run, data, model and training configs this run trains with."""
    doc = {
        "entry_point": spec.prog,
        "preset": r.preset_name,
        "run": r.run,
        "data": r.data,
        "size": r.size,
        "label_set": r.label_set,
        "model": spec.resolved_model(r),
        "training": r.train,
    }
    text = json.dumps(to_jsonable(doc), indent=1, sort_keys=False, default=str) + "\n"
    atomic_write_bytes(r.run.out / CONFIG_FILE, text.encode())


def fit(spec: TrainerSpec, r: ResolvedRun) -> int:
    """Train what ``spec.build`` makes of ``r``, closing the runner (process group, TensorBoard writer)
    however it ends; the main process writes the resolved config and prints where the model card went."""
    runner = Runner(r.run)
    try:
        trainer, data = spec.build(r, runner)
        if runner.is_main:
            write_config(spec, r)
        res = runner.fit(trainer, data)
        if runner.is_main:
            print(f"trained {res.steps} steps in {res.seconds:.0f} s; model card: {res.card}")
    finally:
        runner.close()
    return 0


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def train_main(spec: TrainerSpec, argv: Optional[list[str]] = None) -> int:
    """A training entry point's ``main``: log lines, parse ``argv``, resolve the preset, fit, with the
    project's exit codes (1: the run diverged, 2: bad input)."""
    setup_logging()
    args = build_parser(spec).parse_args(argv)
    return run_with_exit_codes(lambda: fit(spec, resolve(spec, args)))
