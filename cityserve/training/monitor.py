"""Loss bookkeeping once per tick, as large-scale trainers do it: every step's losses stay on the device
(summed for logging, kept for the NaN check), and the host reads them once per ``log_every`` steps and
before every checkpoint. On a GPU a per-step ``.item()`` stalls the queue; here nothing syncs per step.

The NaN guard is checked at those same points: a run stops at the first tick after a NaN / inf loss,
names the exact step and loss, and keeps the last good checkpoint, because checkpoints are written only
right after a check has passed (``TrainingDiverged``; the entry points exit 1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from ..errors import CityserveError

PLANT_NAN_ENV = "CITYSERVE_DEBUG_NAN_AT_STEP"  # tests of the guard: multiply the first loss of that step by NaN


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


class LossMonitor:
    """``guard(step, losses)`` before each backward pass, ``add(losses)`` after each step; ``check()`` and
    ``means()`` once per tick read everything back in one transfer each."""

    def __init__(self, distributed: bool = False):
        self.distributed = distributed
        env = os.environ.get(PLANT_NAN_ENV)
        self.plant_nan_at = int(env) if env else None
        self._pending: list[tuple[int, list[str], torch.Tensor]] = []
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def guard(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        if self.plant_nan_at is not None and step == self.plant_nan_at and losses:
            first = next(iter(losses))
            losses[first] = losses[first] * float("nan")
        values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
        self._pending.append((step, list(losses), values))

    def check(self) -> None:
        """Raise ``TrainingDiverged`` for the first non-finite loss guarded since the last check (on any
        rank: all ranks stop together)."""
        if not self._pending:
            return
        values = torch.cat([v for _, _, v in self._pending])
        finite = torch.isfinite(values)
        ok = finite.all().to(torch.int32)
        if self.distributed:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        pending, self._pending = self._pending, []
        if bool(ok.item()):
            return
        finite, values, i = finite.cpu(), values.cpu(), 0
        for step, names, v in pending:
            for j, name in enumerate(names):
                if not bool(finite[i + j]):
                    raise TrainingDiverged(step, name, float(values[i + j]))
            i += len(v)
        raise TrainingDiverged(pending[0][0], "a loss on another rank", float("nan"))

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for k, v in losses.items():
            v = v.detach().float().reshape(())
            self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
        self._count += 1

    def means(self) -> dict[str, float]:
        """The mean of each loss over the steps added since the last call (one device -> host copy)."""
        if not self._count:
            return {}
        names = list(self._sums)
        values = (torch.stack([self._sums[k] for k in names]) / self._count).cpu().tolist()
        self._sums, self._count = {}, 0
        return dict(zip(names, values))
