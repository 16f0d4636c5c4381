"""Process-group setup for ``torchrun`` (env:// rendezvous) and collective helpers.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1) everything runs as a
single process and the helpers are identities. With it, the backend is NCCL on CUDA and
gloo on CPU, and each process uses GPU ``LOCAL_RANK``.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job.

    Attributes:
        rank, world_size, local_rank: as set by torchrun (0, 1, 0 without it).
        device: the device this process computes on.
        backend: "nccl", "gloo" or None (single process).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the torchrun job (if any) and pick this process's device.

    Args:
        device: "auto" (CUDA if available), "cuda" or "cpu".
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        compute_device = torch.device("cuda", torch.cuda.current_device())
    else:
        compute_device = torch.device("cpu")
    backend = None
    if world_size > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                    timeout=datetime.timedelta(minutes=timeout_minutes),
                                    device_id=compute_device if use_cuda else None)
        logger.info("rank %d of %d joined (%s, device %s)", rank, world_size, backend, compute_device)
    return DistributedContext(rank, world_size, local_rank, compute_device, backend)


def shutdown_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        if context.backend == "nccl":
            dist.barrier(device_ids=[context.device.index])
        else:
            dist.barrier()


class _GatherWithLocalGradient(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks and returns
    this rank's slice: each rank's local features receive the gradient of every rank's
    loss through them (gloo has no reduce_scatter, so an all_reduce is used)."""

    @staticmethod
    def forward(ctx: Any, local: Tensor) -> Tensor:  # type: ignore[override]
        world_size = dist.get_world_size()
        ctx.rank, ctx.size = dist.get_rank(), local.shape[0]
        shards = [torch.empty_like(local) for _ in range(world_size)]
        dist.all_gather(shards, local.contiguous())
        return torch.cat(shards, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def all_gather_with_grad(local: Tensor, context: DistributedContext) -> Tensor:
    """Concatenate ``local`` (same shape on every rank) over ranks along dim 0, rank order.

    Gradients flow back into ``local`` from the whole gathered tensor as used by ALL
    ranks (their sum). Identity in a single process.
    """
    if not context.is_distributed:
        return local
    return _GatherWithLocalGradient.apply(local)


def all_reduce_mean(value: Tensor, context: DistributedContext) -> Tensor:
    """Mean of ``value`` over ranks (a copy; no gradient)."""
    value = value.detach().clone()
    if context.is_distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= context.world_size
    return value


def all_gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not context.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, context: DistributedContext, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not context.is_distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


__all__ = [
    "DistributedContext",
    "all_gather_objects",
    "all_gather_with_grad",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "init_distributed",
    "shutdown_distributed",
]
