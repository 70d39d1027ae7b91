"""Pieces the trainers and their entry points share: the command-line options every training run
takes, the dataset they name, label-set handling for cards, SPADE-style weight init, label colors for
image grids."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..cliutil import parse_seeds, parse_size
from ..errors import ConfigError, run_with_exit_codes
from .runner import RunConfig, Runner

log = logging.getLogger("cityserve.training")

DATA_KINDS = ("synthetic", "cityscapes", "ade20k", "coco-stuff", "paired")


# ---- label sets ---------------------------------------------------------------------------------------
def label_set_for_card(spec: Any) -> str | dict:
    """A built-in name stays a name; anything else travels inside the card as its dict."""
    from ..labels import BUILTIN_NAMES, get_label_set

    ls = get_label_set(spec)
    return ls.name if isinstance(spec, str) and ls.name in BUILTIN_NAMES else ls.to_dict()


def palette_tensor(spec: Any) -> torch.Tensor:
    from ..labels import get_label_set

    return torch.from_numpy(np.asarray(get_label_set(spec).palette, dtype=np.uint8).copy())


def colorize(labels: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W] ids -> [B,3,H,W] float in [0, 1] palette colors (for image grids)."""
    pal = palette.to(labels.device)
    idx = labels[:, 0].long().clamp(0, pal.shape[0] - 1)
    return pal[idx].permute(0, 3, 1, 2).float() / 255.0


def to_unit(img: torch.Tensor) -> torch.Tensor:
    return ((img.detach().float() + 1) / 2).clamp(0, 1)


# ---- init ---------------------------------------------------------------------------------------------
def init_weights(net: nn.Module, init_type: str = "xavier", gain: float = 0.02) -> nn.Module:
    """SPADE's ``BaseNetwork.init_weights``: BatchNorm weight ~ N(1, gain); conv / linear weights by
    ``init_type`` (xavier: xavier_normal with ``gain``, the SPADE default with init_variance 0.02),
    biases zero. Spectral-normed layers are initialised through ``weight_orig``."""
    for m in net.modules():
        name = type(m).__name__
        if "BatchNorm2d" in name:
            if getattr(m, "weight", None) is not None:
                nn.init.normal_(m.weight, 1.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
            continue
        if not ("Conv" in name or "Linear" in name):
            continue
        w = getattr(m, "weight_orig", None)
        if w is None:
            w = getattr(m, "weight", None)
        if not isinstance(w, torch.Tensor):
            continue
        with torch.no_grad():
            if init_type == "normal":
                nn.init.normal_(w, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(w, gain=gain)
            elif init_type == "xavier_uniform":
                nn.init.xavier_uniform_(w, gain=1.0)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(w, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(w, gain=gain)
            elif init_type == "none":
                m.reset_parameters()
            else:
                raise ConfigError(f"unknown init type {init_type!r}")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return net


# ---- data -----------------------------------------------------------------------------------------------
class CachedScenes(Dataset):
    """Keeps each record's arrays (photo, ids, instances) in memory after the first read, and augments
    per sample as the wrapped dataset would. On-the-fly synthetic scenes are drawn once, not once per
    epoch: the demo training on a 2-core CPU would otherwise spend most of its time drawing."""

    def __init__(self, ds: Dataset):
        self.ds = ds
        self._cache: dict[int, tuple] = {}
        self.label_set = getattr(ds, "label_set", None)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from ..data.datasets import make_sample

        if i not in self._cache:
            photo, ids, inst = self.ds.load(i)
            small = ids.astype(np.uint8) if ids.size and 0 <= ids.min() and ids.max() < 256 else ids
            self._cache[i] = (photo, small, inst)
        photo, ids, inst = self._cache[i]
        name = self.ds.records[i].name if hasattr(self.ds, "records") else f"synthetic_{self.ds.seeds[i]:06d}"
        return make_sample(photo, ids.astype(np.int64), inst, name, self.ds.size, self.ds.augment)


def build_training_data(
    args: argparse.Namespace, label_set: Any, size: tuple[int, int], augment: Any, num_channels: Optional[int] = None
) -> Dataset:
    """The dataset ``--data`` / ``--root`` / ``--seeds`` name, at ``size``, validated up front."""
    from ..data.datasets import build_dataset

    kind = args.data
    if kind == "synthetic":
        ds = build_dataset(
            "synthetic", None, label_set=label_set, size=size, augment=augment, seeds=parse_seeds(args.seeds)
        )
        return CachedScenes(ds) if getattr(args, "cache", True) else ds
    if not args.root:
        raise ConfigError(f"--data {kind} needs --root DIR (the dataset folder)")
    kw = {}
    if num_channels is not None:
        kw["num_channels"] = num_channels
    if getattr(args, "nearest_colors", False):
        kw["nearest_colors"] = True
    return build_dataset(kind, args.root, label_set=label_set, size=size, augment=augment, **kw)


# ---- command line -------------------------------------------------------------------------------------
def training_parser(
    prog: str, description: str, epilog: str, presets: dict[str, Any], default: str
) -> argparse.ArgumentParser:
    """The parser every training entry point starts from: ``--preset`` (one of ``presets``) and the data /
    run options; the entry point adds its model and optimisation groups."""
    p = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=sorted(presets), default=default, help=f"base settings (default: {default})")
    add_common_args(p)
    return p


def add_common_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        choices=DATA_KINDS,
        default="synthetic",
        help="dataset layout: on-the-fly synthetic scenes, or a folder in the layout named (default: synthetic)",
    )
    g.add_argument("--root", help="dataset folder (for every --data but synthetic)")
    g.add_argument("--seeds", default="0-99", help="synthetic scene seeds, e.g. 0-99 or 0-9,20 (default: 0-99)")
    g.add_argument(
        "--label-set",
        help="label set: cityscapes | ade20k | coco-stuff | a JSON/YAML file (default: the dataset's own)",
    )
    g.add_argument("--size", help="training resolution HxW, e.g. 256x512 (default: the preset's)")
    g.add_argument(
        "--nearest-colors", action="store_true", help="color label PNGs: map each color to the nearest palette color"
    )
    g.add_argument("--no-cache", dest="cache", action="store_false", help="draw synthetic scenes again every epoch")
    g.add_argument(
        "--workers", type=int, default=None, help="DataLoader worker processes (default: 2 on CUDA, 0 on CPU)"
    )
    r = p.add_argument_group("run")
    r.add_argument(
        "--out", required=True, type=Path, help="output folder: checkpoints, cards, training state, TensorBoard logs"
    )
    r.add_argument("--name", help="checkpoint / card name (default: derived from the preset)")
    r.add_argument("--epochs", type=int, help="epochs to train (default: the preset's)")
    r.add_argument("--max-steps", type=int, help="stop after this many updates (with --epochs: whichever comes first)")
    r.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="end this invocation after STEP steps with a checkpoint, keeping the learning-rate schedule "
        "of the whole run (continue later with --resume); for time-boxed jobs",
    )
    r.add_argument("--batch-size", type=int, help="batch size per process (default: the preset's)")
    r.add_argument("--save-every", type=int, default=0, help="steps between checkpoints (default: every epoch)")
    r.add_argument(
        "--keep", type=int, default=3, help="checkpoints / training states kept (newest; default 3; 0 = all)"
    )
    r.add_argument("--log-every", type=int, default=10, help="steps between logged losses (default 10)")
    r.add_argument(
        "--image-every", type=int, default=100, help="steps between TensorBoard image grids (default 100; 0 = none)"
    )
    r.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0); with --workers 0 a CPU run is bit-reproducible"
    )
    r.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="STATE",
        help="continue the run in --out from its newest training state (or from the STATE file named)",
    )
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda when available")
    r.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="auto (default): bf16 autocast on CPUs with BF16 instructions and Ampere+ GPUs, fp16 + GradScaler "
        "on older GPUs, fp32 otherwise",
    )
    r.add_argument("--no-amp", dest="precision", action="store_const", const="fp32", help="= --precision fp32")
    r.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last activations (default: on with bf16/fp16)",
    )
    r.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="write no TensorBoard logs")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (log lines instead)")
    r.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    r.add_argument("--debug-nan-at-step", type=int, default=None, help=argparse.SUPPRESS)


def run_config(args: argparse.Namespace, name: str, epochs: Optional[int], batch_size: int) -> RunConfig:
    nan_env = os.environ.get("CITYSERVE_DEBUG_NAN_AT_STEP")
    nan_step = args.debug_nan_at_step if args.debug_nan_at_step is not None else (int(nan_env) if nan_env else None)
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = args.workers
    if workers is None:
        workers = 2 if (torch.cuda.is_available() and args.device != "cpu") else 0
    return RunConfig(
        out=args.out,
        name=args.name or name,
        seed=args.seed,
        batch_size=args.batch_size or batch_size,
        epochs=args.epochs if args.epochs is not None else (None if args.max_steps else epochs),
        max_steps=args.max_steps,
        stop_at=args.stop_at,
        save_every=args.save_every,
        keep=args.keep,
        log_every=args.log_every,
        image_every=args.image_every,
        workers=workers,
        resume=args.resume,
        device=args.device,
        precision=args.precision,
        channels_last=args.channels_last,
        tensorboard=args.tensorboard,
        progress=args.progress,
        debug_nan_at_step=nan_step,
    )


def size_from_args(args: argparse.Namespace, default: tuple[int, int]) -> tuple[int, int]:
    return parse_size(args.size) if args.size else default


def given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The options among ``names`` that the command line set (not None): what overrides a preset."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def fit(rc: RunConfig, setup: Callable[[Runner], tuple[Any, Dataset]]) -> int:
    """Train the ``(trainer, dataset)`` that ``setup(runner)`` builds, closing the runner (process group,
    TensorBoard writer) however it ends; the main process prints where the model card went."""
    runner = Runner(rc)
    try:
        trainer, data = setup(runner)
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


def train_main(
    build_parser: Callable[[], argparse.ArgumentParser],
    presets: dict[str, Any],
    run: Callable[[argparse.Namespace, dict[str, Any]], int],
    argv: Optional[list[str]] = None,
) -> int:
    """A training entry point's ``main``: log lines, parse ``argv``, then ``run(args, preset)`` with the
    preset ``--preset`` names, with the project's exit codes (1: the run diverged)."""
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_with_exit_codes(lambda: run(args, presets[args.preset]))
