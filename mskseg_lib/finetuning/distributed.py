"""torch.distributed plumbing: one process per device under torchrun, or a plain single process.

``torchrun --nproc_per_node N -m mskseg_lib finetune ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; ``start`` then joins the process group (NCCL on GPUs, gloo on CPU unless the
profile says otherwise) and picks ``cuda:LOCAL_RANK``. Without those variables everything
degrades to world size 1, so the same training code runs in a notebook.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mskseg_lib.models.interface import pick_device


@dataclass(frozen=True)
class DistContext:
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


def start(device_setting: str = "auto", backend: str = "auto") -> DistContext:
    """Join the torchrun process group if launched by torchrun; else a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(0, 1, 0, pick_device(device_setting), None)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_setting != "cpu"
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local, device, backend)


def stop(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


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
