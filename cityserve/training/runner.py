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
* a guard that stops the run at the first NaN / inf loss, naming the step and the loss, keeping the last
  good checkpoint (``TrainingDiverged``; the entry points exit 1);
* TensorBoard scalars + image grids (label | generated | real) and tqdm progress bars on rank 0;
* ``torchrun``: process group from the environment (gloo on CPU, nccl on CUDA), DDP, SyncBatchNorm on
  CUDA (torch's SyncBatchNorm has no CPU kernel: on CPU BatchNorm stays per process and DDP broadcasts
  rank 0's buffers each forward);
* mixed precision on CUDA (``torch.autocast`` float16 + a ``GradScaler`` per optimizer).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..cards import ModelCard, atomic_write_bytes, command_line, environment, now_iso
from ..checkpoints import safe_load, save_checkpoint
from ..errors import CheckpointError, CityserveError, ConfigError
from ..extras import require

log = logging.getLogger("cityserve.training")

STATE_FORMAT = "cityserve-train-state/1"
STATE_DIR = "state"
CKPT_DIR = "checkpoints"
_STATE_RE = re.compile(r"^step_(\d+)\.pt$")


# ---- seeding and RNG state ------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """All global RNG states, in types ``torch.load(weights_only=True)`` reads back."""
    version, pystate, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(pystate, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def restore_rng(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# ---- distributed ------------------------------------------------------------------------------------
@dataclasses.dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT): nccl on CUDA, gloo on CPU. Without torchrun: a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA GPU")
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
        if not use_cuda:  # share the cores between the local processes
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled with a generator seeded ``seed + epoch``, the same on every rank)
    that can start part-way into an epoch: a resumed run sees exactly the batches the interrupted one
    would have seen next."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = int(skip)

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip


# ---- errors -----------------------------------------------------------------------------------------
class TrainingDiverged(CityserveError):
    """A loss became NaN or inf. The message names the step and the loss; the entry points exit 1."""

    exit_code = 1  # EXIT_FAILED: the run ran and failed; its last good checkpoint is kept

    def __init__(self, step: int, name: str, value: float, last_good: Optional[Path] = None, last_step: int = 0):
        self.step, self.name, self.value = step, name, value
        self.last_good, self.last_step = last_good, last_step
        super().__init__(self._message())

    def _message(self) -> str:
        where = (
            f"last good checkpoint {self.last_good} (step {self.last_step}) is kept"
            if self.last_good
            else "no checkpoint had been written yet"
        )
        return f"non-finite loss at step {self.step}: {self.name} = {self.value}; stopped, {where}"

    def with_checkpoint(self, path: Optional[Path], step: int) -> TrainingDiverged:
        self.last_good, self.last_step = path, step
        self.args = (self._message(),)
        return self


# ---- configuration ------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunConfig:
    """What every trainer's loop needs; the entry points fill it from the command line."""

    out: Path
    name: str = "model"
    seed: int = 0
    batch_size: int = 1  # per process
    epochs: Optional[int] = None
    max_steps: Optional[int] = None  # caps the run; with --epochs, whichever comes first
    stop_at: Optional[int] = None  # end this invocation after this step (checkpointed); the schedule is unchanged
    save_every: int = 0  # steps between checkpoints; 0: at the end of every epoch
    keep: int = 3  # training states and exported checkpoints kept (the newest); the top-level card is always the newest
    log_every: int = 10
    image_every: int = 100  # steps between TensorBoard image grids; 0: never
    workers: int = 0
    resume: bool | str = False  # True: newest state in OUT/state; a path: that file
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    amp: bool = True  # mixed precision (CUDA only)
    tensorboard: bool = True
    progress: bool = True
    debug_nan_at_step: Optional[int] = None  # plant a NaN in the loss at this step (tests of the guard)


def state_files(out: str | os.PathLike) -> list[tuple[int, Path]]:
    """The training states under ``OUT/state``, oldest first, as (step, path)."""
    d = Path(out) / STATE_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STATE_RE.match(p.name))]
    return sorted(found)


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
        any backward pass, step the optimizers, return the (detached) losses to log."""
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
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        seed_everything(cfg.seed)  # models are built after this: the same init on every rank
        self.writer = None
        self._last_good: tuple[Optional[Path], int] = (None, 0)

    # -- helpers trainers use
    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def make_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def distribute(self, module: nn.Module, find_unused_parameters: bool = False) -> tuple[nn.Module, nn.Module]:
        """Move to the device; under torchrun convert BatchNorm to SyncBatchNorm (CUDA) and wrap in DDP.
        Returns (the module whose state dict is saved, the module to call)."""
        module = module.to(self.device)
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
        """Stop at the first NaN / inf loss (all ranks together), before it reaches any weights."""
        if self.cfg.debug_nan_at_step is not None and step == self.cfg.debug_nan_at_step and losses:
            first = next(iter(losses))
            losses[first] = losses[first] * float("nan")
        values = torch.stack([l.detach().float().reshape(()) for l in losses.values()])
        finite = torch.isfinite(values)
        ok = finite.all().to(torch.int32)
        if self.ctx.distributed:
            import torch.distributed as dist

            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if not bool(ok.item()):
            names = list(losses)
            bad = [i for i in range(len(names)) if not bool(finite[i])]
            if bad:
                i = bad[0]
                raise TrainingDiverged(step, names[i], float(values[i]))
            raise TrainingDiverged(step, "a loss on another rank", float("nan"))

    # -- checkpoints
    def save_state(self, trainer: Trainer, step: int, epoch: int) -> Path:
        state = {
            "format": STATE_FORMAT,
            "step": step,
            "epoch": epoch,
            "seed": self.cfg.seed,
            "identity": json.dumps(trainer.identity(), sort_keys=True, default=str),
            "modules": {k: m.state_dict() for k, m in trainer.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in trainer.optimizers().items()},
            "scalers": {k: s.state_dict() for k, s in trainer.scalers().items()},
            "rng": capture_rng(),
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        path = self.cfg.out / STATE_DIR / f"step_{step:08d}.pt"
        atomic_write_bytes(path, buf.getvalue())
        self._prune(state_files(self.cfg.out), lambda p: [p])
        return path

    def export(self, trainer: Trainer, step: int, epoch: int, losses: dict[str, float]) -> Path:
        card, sd = trainer.export()
        card.provenance.update(
            {
                "source": "trained",
                "command": command_line(),
                "step": step,
                "epoch": epoch,
                "seed": self.cfg.seed,
                "world_size": self.ctx.world_size,
                "batch_size_per_process": self.cfg.batch_size,
                "created": now_iso(),
                "environment": environment(),
            }
        )
        card.metrics.update({f"train/{k}": round(v, 6) for k, v in losses.items()})
        stem = f"{self.cfg.name}_step{step:08d}"
        save_checkpoint(
            dataclasses.replace(card, provenance=dict(card.provenance), metrics=dict(card.metrics)),
            sd,
            self.cfg.out / CKPT_DIR,
            stem=stem,
        )
        top = save_checkpoint(card, sd, self.cfg.out, stem=self.cfg.name)
        ckdir = self.cfg.out / CKPT_DIR
        exported = sorted(
            (int(m.group(1)), p)
            for p in ckdir.glob(f"{self.cfg.name}_step*.card.json")
            if (m := re.search(r"_step(\d+)\.card\.json$", p.name))
        )
        self._prune(exported, lambda p: [p, p.with_name(p.name[: -len(".card.json")] + ".pt")])
        return top

    def _prune(self, items: Sequence[tuple[int, Path]], files: Callable[[Path], list[Path]]) -> None:
        if self.cfg.keep > 0:
            for _, p in list(items)[: -self.cfg.keep]:
                for f in files(p):
                    f.unlink(missing_ok=True)

    def load_state(self) -> tuple[dict[str, Any], Path]:
        """The state to resume from: the named file, or the newest readable one under OUT/state."""
        if isinstance(self.cfg.resume, (str, os.PathLike)) and str(self.cfg.resume) not in ("", "True"):
            p = Path(self.cfg.resume)
            return self._read_state(p), p
        found = state_files(self.cfg.out)
        if not found:
            raise CheckpointError(f"--resume: no training state under {self.cfg.out / STATE_DIR} (nothing to resume)")
        errors = []
        for _, p in reversed(found):
            try:
                return self._read_state(p), p
            except CheckpointError as e:  # cannot happen with atomic writes, but a disk can still lie
                log.warning("skipping unreadable training state %s: %s", p, e)
                errors.append(str(e))
        raise CheckpointError(f"--resume: no readable training state under {self.cfg.out / STATE_DIR}: {errors[0]}")

    @staticmethod
    def _read_state(p: Path) -> dict[str, Any]:
        st = safe_load(p)
        if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{p} is not a cityserve training state ({STATE_FORMAT})")
        return st

    def restore(self, trainer: Trainer, st: dict[str, Any], path: Path) -> int:
        mine = json.loads(json.dumps(trainer.identity(), sort_keys=True, default=str))
        theirs = json.loads(st["identity"])
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            k = diff[0]
            raise ConfigError(
                f"--resume: {path} was trained with {k}={theirs.get(k)!r}, this run has "
                f"{k}={mine.get(k)!r}; resume with the same options or use a new --out"
            )
        for k, m in trainer.modules().items():
            m.load_state_dict(st["modules"][k])
        for k, o in trainer.optimizers().items():
            o.load_state_dict(st["optimizers"][k])
        for k, s in trainer.scalers().items():
            if k in st["scalers"] and st["scalers"][k]:
                s.load_state_dict(st["scalers"][k])
        if self.ctx.rank == 0:
            restore_rng(st["rng"])
        else:  # other ranks: a seed derived from (seed, step, rank), different per rank, reproducible
            seed_everything(self.cfg.seed * 1_000_003 + int(st["step"]) * 101 + self.ctx.rank)
        self._last_good = (path, int(st["step"]))
        return int(st["step"])

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
            st, path = self.load_state()
            start = self.restore(trainer, st, path)
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
            num_workers=cfg.workers,
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
        window: dict[str, list[float]] = {}
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
                    losses = trainer.train_step(batch, step + 1)
                    step += 1
                    for k, v in losses.items():
                        window.setdefault(k, []).append(float(v))
                    if step % cfg.log_every == 0 or step == end:
                        last = {k: sum(v) / len(v) for k, v in window.items()}
                        window = {}
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
                        if not last:
                            last = {k: sum(v) / len(v) for k, v in window.items()}
                        if self.is_main:
                            path = self.save_state(trainer, step, epoch)
                            card_path = self.export(trainer, step, epoch, last)
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
            self.check_ranks_agree(trainer)
        if card_path is None and self.is_main and (cfg.out / f"{cfg.name}.card.json").is_file():
            card_path = cfg.out / f"{cfg.name}.card.json"
        return FitResult(step, card_path, last, time.time() - t0)

    def check_ranks_agree(self, trainer: Trainer) -> list[list[float]]:
        """All ranks must hold the same parameters after DDP training (buffers such as batch-norm running
        statistics are rank 0's in every checkpoint; on CPU each rank's last forward updates its own).
        Rank 0 writes the per-rank fingerprints to ``OUT/ranks.json``; a mismatch is a bug and raises."""
        import torch.distributed as dist

        vals = []
        for _, m in sorted(trainer.modules().items()):
            for p in m.parameters():
                d = p.detach().double()
                vals += [d.sum().item(), (d * d).sum().item()]
        mine = torch.tensor(vals, dtype=torch.float64, device=self.device)
        gathered = [torch.zeros_like(mine) for _ in range(self.ctx.world_size)]
        dist.all_gather(gathered, mine)
        prints = [g.cpu().tolist() for g in gathered]
        agree = all(p == prints[0] for p in prints)
        if self.is_main:
            atomic_write_bytes(
                self.cfg.out / "ranks.json",
                json.dumps(
                    {
                        "world_size": self.ctx.world_size,
                        "agree": agree,
                        "fingerprints": [[sum(p[0::2]), sum(p[1::2])] for p in prints],
                    },
                    indent=1,
                ).encode(),
            )
            log.info("%d ranks %s", self.ctx.world_size, "hold identical parameters" if agree else "DISAGREE")
        if not agree:
            raise RuntimeError("DDP ranks ended with different parameters (see ranks.json)")
        dist.barrier()
        return prints

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
