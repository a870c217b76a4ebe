"""Multi-process training with PyTorch's DDP under torchrun; the same calls are no-ops in a single process.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; the process group uses NCCL on CUDA (one GPU per process,
LOCAL_RANK) and Gloo on the CPU. Rank 0 logs and writes files; every rank computes.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ContextManager, List, Tuple

import torch
import torch.distributed as dist
from torch import nn

from ..backends.device import resolve_device
from ..errors import InvalidOptionError

TIMEOUT = timedelta(minutes=60)  # long enough for one rank's share of the preprocessing


@dataclass
class DistributedContext:
    """Where this process stands: rank, world size and its device."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def any(self, *flags: bool) -> Tuple[bool, ...]:
        """For each flag: True on every rank if it is true on any rank (one all-reduce for all of them)."""
        if not self.is_distributed:
            return flags
        values = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())

    def mean(self, value: float) -> float:
        """The mean of `value` over all ranks."""
        if not self.is_distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def gather(self, value: Any) -> List[Any]:
        """Every rank's `value` (picklable), in rank order, on every rank."""
        if not self.is_distributed:
            return [value]
        values: List[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def wrap(self, model: nn.Module, sync_batchnorm: bool) -> nn.Module:
        """DistributedDataParallel around `model` (with SyncBatchNorm on CUDA if asked); `model` itself otherwise."""
        if not self.is_distributed:
            return model
        if sync_batchnorm and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def no_sync(self, model: nn.Module, skip: bool) -> ContextManager:
        """Skip the gradient all-reduce for this backward pass (all but the last of an accumulation)."""
        return model.no_sync() if skip and self.is_distributed else contextlib.nullcontext()

    def sync_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics) so evaluation agrees everywhere."""
        if self.is_distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def close(self) -> None:
        if self.is_distributed and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "auto") -> DistributedContext:
    """The context of this process; starts the process group when launched by torchrun with WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    chosen = resolve_device(device)
    if world_size == 1:
        return DistributedContext(chosen)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if chosen.type == "mps":
        raise InvalidOptionError("distributed training runs on CUDA or the CPU, not MPS; use --device cpu")
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    return DistributedContext(chosen, rank, world_size)
