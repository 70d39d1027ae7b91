"""The training loop machinery every trainer shares.

A trainer (SPADE, pix2pix, segmenter) says what its modules, optimizers and one update are; the
``Runner`` does the rest the same way for all of them:

* seeding (torch / numpy / python) and a resumable, generator-seeded ``DistributedSampler``, so a run on
  the CPU with a fixed seed is deterministic, and a run killed and ``--resume``d gives bit-identical
  weights to one that was never interrupted (with ``--workers 0``);
* atomic checkpoints of the whole training state (modules, optimizers, grad scalers, step, epoch, RNG
  states) under ``OUT/state/``: temp file + fsync + ``os.replace``, so a kill mid-save leaves the previous
  file intact; ``--resume`` continues from the newest readable one;
* a model card per exported checkpoint (``OUT/checkpoints/NAME_stepN.{pt,card.json}`` and the newest as
  ``OUT/NAME.{pt,card.json}``), which ``cityserve render`` and export take as they are;
* losses kept on the device and read once per tick (``log_every`` steps, ``monitor.py``), with the NaN
  guard: the run stops at the tick after the first NaN / inf loss, naming that step and loss, and keeps
  the last good checkpoint (``TrainingDiverged``; the entry points exit 1);
* TensorBoard scalars + image grids (label | generated | real) and tqdm progress bars on rank 0;
* ``torchrun``: process group from the environment (gloo on CPU, nccl on CUDA), DDP, SyncBatchNorm on
  CUDA (torch's SyncBatchNorm has no CPU kernel: on CPU BatchNorm stays per process and DDP broadcasts
  rank 0's buffers each forward);
* mixed precision (``precision``): BF16 autocast on CPUs with BF16 instructions (avx512_bf16 / AMX) and
  on Ampere-or-newer GPUs, float16 + a ``GradScaler`` per optimizer on older GPUs, float32 otherwise;
  master weights stay float32 and the losses are computed in float32; ``channels_last`` activations
  where the convolutions run faster so (oneDNN on CPUs, cuDNN with tensor cores).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..cards import ModelCard
from ..errors import ConfigError
from ..extras import require
from ..hardware import cpu_supports_bf16
from ..options import option
from .distributed import ResumableSampler, check_ranks_agree, cleanup_distributed, setup_distributed
from .monitor import LossMonitor, TrainingDiverged
from .state import (
    STATE_DIR,
    export_checkpoint,
    find_training_state,
    restore_training_state,
    save_training_state,
    seed_everything,
    state_files,
)

RESUME_LATEST = "latest"  # --resume without a file: the newest training state under OUT/state

log = logging.getLogger("cityserve.training")

# ---- precision ----------------------------------------------------------------------------------------
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto``: bf16 on CUDA devices that support it (Ampere+) and on CPUs with BF16 instructions, fp16 on
    older CUDA GPUs, fp32 otherwise. An explicit choice the device cannot run is a ``ConfigError``; bf16 on
    a CPU without BF16 instructions runs (emulated, slowly) with a warning."""
    if requested not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    cuda = device.type == "cuda"
    bf16_ok = torch.cuda.is_bf16_supported() if cuda else cpu_supports_bf16()
    if requested == "auto":
        return "bf16" if bf16_ok else ("fp16" if cuda else "fp32")
    if requested == "fp16" and not cuda:
        raise ConfigError("--precision fp16 needs a CUDA GPU (on a CPU use bf16 or fp32)")
    if requested == "bf16" and not bf16_ok:
        if cuda:
            raise ConfigError("--precision bf16 needs an Ampere or newer GPU; use fp16 or fp32")
        log.warning("this CPU has no BF16 instructions (avx512_bf16 / AMX): BF16 is emulated, several times slower")
    return requested


# ---- configuration ------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunConfig:
    """What every trainer's loop needs; the command line is generated from these fields."""

    out: Path = option(
        None, "output folder: checkpoints, cards, training state, TensorBoard logs", cli={"required": True}
    )
    name: str = option("model", "checkpoint / card name (default: the entry point and preset, e.g. spade-demo)")
    seed: int = option(0, "random seed; with --workers 0 a CPU run is bit-reproducible")
    batch_size: int = option(1, "batch size per process (default: the preset's)")
    epochs: Optional[int] = option(None, "epochs to train (default: the preset's)")
    max_steps: Optional[int] = option(None, "stop after this many updates (with --epochs: whichever comes first)")
    stop_at: Optional[int] = option(
        None,
        "end this invocation after STEP steps with a checkpoint, keeping the learning-rate schedule of the whole "
        "run (continue later with --resume); for time-boxed jobs",
        cli={"metavar": "STEP"},
    )
    save_every: int = option(0, "steps between checkpoints (0: at the end of every epoch)")
    keep: int = option(3, "checkpoints / training states kept, newest first (0: all)")
    log_every: int = option(10, "steps per tick: losses logged, NaN guard checked, once per tick")
    image_every: int = option(100, "steps between TensorBoard image grids (0: none)")
    workers: Optional[int] = option(None, "DataLoader worker processes (default: 2 on CUDA, 0 on CPU)")
    resume: Optional[str] = option(
        None,
        "continue the run in --out from its newest training state, or from the STATE file named",
        cli={"nargs": "?", "const": RESUME_LATEST, "metavar": "STATE"},
    )
    device: str = option("auto", "auto: cuda when available", cli={"choices": ("auto", "cpu", "cuda")})
    precision: str = option(
        "auto",
        "auto: bf16 autocast on CPUs with BF16 instructions and Ampere+ GPUs, fp16 + GradScaler on older GPUs, "
        "fp32 otherwise",
        cli={"choices": PRECISIONS},
    )
    channels_last: Optional[bool] = option(
        None, "channels_last activations (default: on for CPUs, and with bf16/fp16 on GPUs)"
    )
    threads: Optional[int] = option(None, "torch CPU threads (default: torch's choice)")
    tensorboard: bool = option(True, "write TensorBoard logs")
    progress: bool = option(True, "a progress bar (without: log lines)")


class Trainer:
    """What a concrete trainer provides to the ``Runner``. Module / optimizer dicts map stable names to
    the raw (not DDP-wrapped) objects; those names are the keys of the training state."""

    name = "model"

    def __init__(self, runner: Runner):
        self.runner = runner
        self.last_visuals: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    # -- required
    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        """One update. Compute the losses, pass them through ``self.runner.guard(step, losses)`` before
        any backward pass, step the optimizers, return the (detached) losses to log (they stay on the
        device: the runner reads them once per tick)."""
        raise NotImplementedError

    def export(self) -> tuple[ModelCard, dict[str, torch.Tensor]]:
        """The card (without weights / sha256) and state dict of the checkpoint to publish."""
        raise NotImplementedError

    # -- optional
    def scalers(self) -> dict[str, torch.amp.GradScaler]:
        return {}

    def identity(self) -> dict[str, Any]:
        """What must be equal for ``--resume`` to continue this run (architecture, label set, size ...)."""
        return {}

    def set_lr(self, step: int, epoch: int, steps_per_epoch: int, total_steps: int) -> None:
        """Set learning rates for the update that will make ``step + 1`` (schedules are pure functions
        of step / epoch, so resuming needs no scheduler state)."""

    def train(self) -> None:
        for m in self.modules().values():
            m.train()


@dataclasses.dataclass
class FitResult:
    steps: int
    card: Optional[Path]
    losses: dict[str, float]
    seconds: float


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def image_grid(label_rgb: torch.Tensor, fake: torch.Tensor, real: torch.Tensor, max_items: int = 4) -> torch.Tensor:
    """[3, n*H, 3*W] float in [0, 1]: one row per sample, label | generated | real."""
    n = min(max_items, label_rgb.shape[0])
    rows = [
        torch.cat([t[i].detach().float().cpu().clamp(0, 1) for t in (label_rgb, fake, real)], dim=2) for i in range(n)
    ]
    return torch.cat(rows, dim=1)


class Runner:
    """Owns the process group, device, seeds, data loading, checkpoints, logging; runs a ``Trainer``."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.cfg.out = Path(cfg.out)
        self.ctx = setup_distributed(cfg.device)
        self.device = self.ctx.device
        self.precision = resolve_precision(cfg.precision, self.device)
        # channels_last where it measured faster: always on CPUs (oneDNN: 1.3-1.7x in FP32 too,
        # benchmarks/train_speed.py), under BF16/FP16 on GPUs (tensor cores); FP32 on a GPU stays NCHW
        default_cl = self.device.type == "cpu" or self.precision != "fp32"
        self.channels_last = default_cl if cfg.channels_last is None else bool(cfg.channels_last)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)  # models are built after this: the same init on every rank
        self.monitor = LossMonitor(self.ctx.distributed)
        self.writer = None
        self._last_good: tuple[Optional[Path], int] = (None, 0)

    # -- helpers trainers use
    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def make_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")

    def to_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """4-d activations in the layout the modules were moved to (channels_last: see ``__init__``)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def distribute(self, module: nn.Module, find_unused_parameters: bool = False) -> tuple[nn.Module, nn.Module]:
        """Move to the device; under torchrun convert BatchNorm to SyncBatchNorm (CUDA) and wrap in DDP.
        Returns (the module whose state dict is saved, the module to call)."""
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if not self.ctx.distributed:
            return module, module
        if self.device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        elif any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
            if self.is_main and not getattr(self, "_told_syncbn", False):
                self._told_syncbn = True
                log.info(
                    "SyncBatchNorm needs CUDA: on CPU each process normalizes its own batch "
                    "(DDP keeps the running statistics equal by broadcasting rank 0's buffers)"
                )
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        import inspect

        # rank 0's buffers (running statistics, spectral-norm vectors) are copied to all ranks each forward
        sync = (
            {"forward_sync_buffers": True}
            if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
            else {"broadcast_buffers": True}
        )
        return module, DDP(module, device_ids=ids, find_unused_parameters=find_unused_parameters, **sync)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def guard(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        """Record the losses for the NaN check of this tick (no host sync; see ``monitor.py``)."""
        self.monitor.guard(step, losses)

    # -- the loop
    def fit(self, trainer: Trainer, dataset: Dataset) -> FitResult:
        cfg = self.cfg
        t0 = time.time()
        if cfg.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, not {cfg.batch_size}")
        sampler = ResumableSampler(dataset, self.ctx.world_size, self.ctx.rank, shuffle=True, seed=cfg.seed)
        steps_per_epoch = sampler.num_samples // cfg.batch_size
        if steps_per_epoch == 0:
            raise ConfigError(
                f"the dataset has {len(dataset)} samples: too few for batch size {cfg.batch_size} "
                f"on {self.ctx.world_size} process(es)"
            )
        if cfg.max_steps is None and cfg.epochs is None:
            raise ConfigError("give --epochs or --max-steps")
        total = steps_per_epoch * cfg.epochs if cfg.epochs is not None else None
        if cfg.max_steps is not None:
            total = cfg.max_steps if total is None else min(total, cfg.max_steps)
        save_every = cfg.save_every if cfg.save_every > 0 else steps_per_epoch
        end = total if cfg.stop_at is None else min(total, cfg.stop_at)

        start = 0
        if cfg.resume:
            named = Path(cfg.resume) if cfg.resume != RESUME_LATEST else None
            st, path = find_training_state(cfg.out, named)
            start = restore_training_state(trainer, st, path, cfg.seed, self.ctx.rank)
            self._last_good = (path, start)
            if self.is_main:
                log.info("resumed from %s at step %d", path, start)
        elif state_files(cfg.out):
            last = state_files(cfg.out)[-1]
            raise ConfigError(
                f"{cfg.out} already holds a run (training state at step {last[0]}); "
                f"pass --resume to continue it, or choose another --out"
            )
        if self.is_main:
            for stale in (cfg.out / STATE_DIR).glob(".step_*.tmp*"):
                stale.unlink(missing_ok=True)  # a save that was killed mid-write

        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.workers if cfg.workers is not None else (2 if self.device.type == "cuda" else 0),
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),
            persistent_workers=False,
        )
        if self.is_main and cfg.tensorboard and self.writer is None:
            require("train", "tensorboard", "TensorBoard logging (--no-tensorboard turns it off)")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(cfg.out / "tensorboard"), purge_step=start or None)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total,
            initial=start,
            desc=cfg.name,
            unit="step",
            dynamic_ncols=True,
            disable=None if (self.is_main and cfg.progress) else True,
        )
        show_lines = self.is_main and bool(bar.disable)  # no bar (not a terminal): log lines instead
        step, epoch = start, start // steps_per_epoch
        last: dict[str, float] = {}
        card_path: Optional[Path] = None
        trainer.train()
        try:
            while step < end:
                epoch, offset = divmod(step, steps_per_epoch)
                sampler.set_position(epoch, offset * cfg.batch_size)
                loader.generator.manual_seed(cfg.seed * 1000 + epoch)
                for batch in loader:
                    trainer.set_lr(step, epoch, steps_per_epoch, total)
                    batch = _to_device(batch, self.device)
                    self.monitor.add(trainer.train_step(batch, step + 1))
                    step += 1
                    if step % cfg.log_every == 0 or step == end:  # a tick: the host reads the losses once
                        self.monitor.check()
                        last = self.monitor.means()
                        self._log(step, epoch, last, trainer, bar, show_lines, total)
                    if (
                        self.writer is not None
                        and cfg.image_every
                        and step % cfg.image_every == 0
                        and trainer.last_visuals is not None
                    ):
                        self.writer.add_image("label|generated|real", image_grid(*trainer.last_visuals), step)
                    bar.update(1)
                    if step % save_every == 0 or step == end:
                        self.monitor.check()  # nothing non-finite reaches a checkpoint
                        last = last or self.monitor.means()
                        if self.is_main:
                            path = save_training_state(trainer, cfg.out, step, epoch, cfg.seed, cfg.keep)
                            card_path = export_checkpoint(trainer, cfg, self.ctx.world_size, step, epoch, last)
                            self._last_good = (path, step)
                    if step >= end:
                        break
        except TrainingDiverged as e:
            e.with_checkpoint(*self._last_good)
            if self.is_main:
                log.error("%s", e)
            raise
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.flush()
        if self.ctx.distributed:
            check_ranks_agree(trainer.modules(), self.ctx, cfg.out)
        if card_path is None and self.is_main and (cfg.out / f"{cfg.name}.card.json").is_file():
            card_path = cfg.out / f"{cfg.name}.card.json"
        return FitResult(step, card_path, last, time.time() - t0)

    def _log(
        self, step: int, epoch: int, losses: dict[str, float], trainer: Trainer, bar, show_lines: bool, total: int
    ) -> None:
        if not self.is_main:
            return
        lrs = {f"lr/{k}": o.param_groups[0]["lr"] for k, o in trainer.optimizers().items()}
        if self.writer is not None:
            for k, v in losses.items():
                self.writer.add_scalar(f"loss/{k}", v, step)
            for k, v in lrs.items():
                self.writer.add_scalar(k, v, step)
        short = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
        bar.set_postfix_str(short, refresh=False)
        if show_lines:
            log.info("step %d/%d epoch %d %s", step, total, epoch, short)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        cleanup_distributed()
