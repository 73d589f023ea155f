"""Process-group setup for ``torchrun``: gloo on CPU, nccl on GPUs; a no-op for a single process."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def distributed_context(device: torch.device) -> tuple[int, int]:
    """Join the process group that torchrun describes in the environment; returns (rank, world size).

    Each process takes the GPU ``LOCAL_RANK``; the loaders shard the data by rank, and the
    trainer wraps the trainable part in DistributedDataParallel once the group exists.
    """
    if not launched_by_torchrun():
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def cleanup(success: bool = True) -> None:
    """Leave the process group: after a barrier when this rank succeeded, at once when it failed.

    The barrier matters: a rank that tears down gloo while its peer still has traffic in flight
    can abort the peer ("terminate called without an active exception"). After a failure a
    barrier could wait forever for a peer that is itself stuck, so it is skipped; torchrun then
    ends the other ranks when this one exits non-zero.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if success:
        dist.barrier()
    dist.destroy_process_group()
