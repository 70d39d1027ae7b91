"""Several processes under ``torchrun``: the process group from the environment (nccl on CUDA, gloo on
CPU), and a sampler that can start part-way into an epoch so a resumed run sees the batches the
interrupted one would have seen next."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from ..cards import atomic_write_bytes
from ..errors import ConfigError

log = logging.getLogger("cityserve.training")


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
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
        if not use_cuda:  # share the cores between the local processes
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
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


def check_ranks_agree(modules: dict, ctx: DistContext, out: Path) -> list[list[float]]:
    """All ranks must hold the same parameters after DDP training (buffers such as batch-norm running
    statistics are rank 0's in every checkpoint; on CPU each rank's last forward updates its own).
    Rank 0 writes the per-rank fingerprints to ``OUT/ranks.json``; a mismatch is a bug and raises."""
    vals = []
    for _, m in sorted(modules.items()):
        for p in m.parameters():
            d = p.detach().double()
            vals += [d.sum().item(), (d * d).sum().item()]
    mine = torch.tensor(vals, dtype=torch.float64, device=ctx.device)
    gathered = [torch.zeros_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, mine)
    prints = [g.cpu().tolist() for g in gathered]
    agree = all(p == prints[0] for p in prints)
    if ctx.is_main:
        fingerprints = [[sum(p[0::2]), sum(p[1::2])] for p in prints]
        doc = {"world_size": ctx.world_size, "agree": agree, "fingerprints": fingerprints}
        atomic_write_bytes(out / "ranks.json", json.dumps(doc, indent=1).encode())
        log.info("%d ranks %s", ctx.world_size, "hold identical parameters" if agree else "DISAGREE")
    if not agree:
        raise RuntimeError("DDP ranks ended with different parameters (see ranks.json)")
    dist.barrier()
    return prints
