"""torch.distributed plumbing: one process per device under torchrun, or a plain single process.

``torchrun --nproc_per_node N -m mskseg_lib finetune ...`` (or ``... autolabel ...``) sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`start` then joins the process group (NCCL on
GPUs, gloo on CPU, unless the caller names a backend) and pins the process to
``cuda:LOCAL_RANK``. Without those variables everything degrades to world size 1, so the same
code runs in a notebook. Finetuning (DDP training) and AutoLabel (volumes shared across ranks)
both go through this module; nothing else in the library touches ``torch.distributed``'s process
group.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

__all__ = ["DistContext", "barrier", "broadcast_flag", "share", "start", "stop", "sum_across"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size, its device and the group's backend."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None: single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device: torch.device, backend: str = "auto", timeout: datetime.timedelta | None = None) -> DistContext:
    """Join the torchrun process group if launched by torchrun; else a single-process context.

    Parameters
    ----------
    device : the device a single process runs on (e.g. ``pick_device("auto")``). Under torchrun a
        CUDA device becomes ``cuda:LOCAL_RANK`` (modulo the visible GPUs, so more ranks than GPUs
        share them); a CPU device stays CPU.
    backend : ``auto`` (NCCL on CUDA, gloo otherwise), ``nccl`` or ``gloo``.
    timeout : how long collective calls wait for the slowest rank (torch's default when None).

    Returns
    -------
    DistContext of this process; ``backend`` is None for a single process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(0, 1, 0, device, None)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.type == "cuda" and torch.cuda.is_available()
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        index = local % max(torch.cuda.device_count(), 1)
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        if timeout is None:
            dist.init_process_group(backend=backend)
        else:
            dist.init_process_group(backend=backend, timeout=timeout)
    return DistContext(rank, world, local, device, backend)


def stop(ctx: DistContext) -> None:
    """Leave the process group (a no-op for a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (a no-op for a single process)."""
    if ctx.distributed:
        dist.barrier()


def share(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's items: every ``world_size``-th of ``items``, starting at ``rank``."""
    return list(items)[ctx.rank::ctx.world_size]


def sum_across(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum over ranks (float64 on the process group's device)."""
    if not ctx.distributed:
        return list(values)
    dev = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def broadcast_flag(ctx: DistContext, flag: bool) -> bool:
    """Rank 0's decision, seen by every rank."""
    if not ctx.distributed:
        return flag
    return sum_across(ctx, [float(flag) if ctx.is_main else 0.0])[0] > 0.5
