"""Multi-process training under torchrun: ranks, all-reduce, and who writes (rank 0 only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun set up (gloo on CPU, NCCL on GPUs); a no-op for one process."""
    if not launched_by_torchrun():
        return DistContext()
    if device_type == "mps":
        from ..errors import ConfigError

        raise ConfigError(
            "torchrun with --device mps: PyTorch has no process-group backend for Apple GPUs, so several "
            "processes cannot train one model there. Run one process (plain `cnnbench train`), or use CUDA GPUs."
        )
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
