"""Which mixtures each optimiser step trains on: global indices in step order, interleaved
across DDP ranks, so that a resumed run continues exactly where it stopped."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

log = logging.getLogger(__name__)


class StepSampler(Sampler[int]):
    """Yields the global mixture indices of the next ``steps`` optimiser steps, in order.

    The first index comes from ``step_fn()`` (the trainer's global step, set once the
    trainer exists), so a resumed run continues with exactly the mixtures it would have
    seen; ranks of a DDP run interleave.
    """

    def __init__(self, steps: int, batch_size: int) -> None:
        self.steps, self.batch_size = steps, batch_size
        self.step_fn: Callable[[], int] = lambda: 0
        self.rank: int | None = None  # read from torch.distributed at each epoch unless set
        self.world: int | None = None

    def _ranks(self) -> tuple[int, int]:
        ddp = dist.is_available() and dist.is_initialized()
        rank = self.rank if self.rank is not None else (dist.get_rank() if ddp else 0)
        world = self.world if self.world is not None else (dist.get_world_size() if ddp else 1)
        return rank, world

    def __iter__(self) -> Iterator[int]:
        rank, world = self._ranks()
        base = self.step_fn() * self.batch_size * world
        log.debug("sampler starts at global step %d (mixture %d)", self.step_fn(), base)
        return iter(range(base + rank, base + world * len(self), world))

    def __len__(self) -> int:
        return self.steps * self.batch_size


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class StepBatches(torch.utils.data.IterableDataset):
    """Batches of global mixture indices ``(B,)`` int64 for the batch mixer, one per step.

    Like :class:`StepSampler`: the first batch belongs to step ``step_fn()``, ranks
    interleave, and one pass (a loop epoch) lasts ``steps`` steps, or ends early once
    ``stop`` is set (time-based validation; every rank sets it at the same step). Having no
    length, it lets Lightning validate when it ends, however many steps that took.
    """

    def __init__(self, steps: int, batch_size: int) -> None:
        self.steps, self.batch_size = steps, batch_size
        self.step_fn: Callable[[], int] = lambda: 0
        self.stop = False

    def __iter__(self) -> Iterator[torch.Tensor]:
        rank, world = _rank_world()
        start = self.step_fn()
        self.stop = False
        for step in range(start, start + self.steps):
            if self.stop:
                return
            base = step * self.batch_size * world
            yield torch.arange(base + rank, base + world * self.batch_size, world, dtype=torch.int64)
