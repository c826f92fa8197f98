"""Data-parallel training over processes (``torchrun --nproc-per-node N -m lmlab run STUDY ...``).

PyTorch's ``DistributedDataParallel`` averages the gradients; this module holds the few pieces the
lab trainer adds around it: the process group from torchrun's environment (NCCL on CUDA, gloo on
CPU), each rank's rows of the global batch (rank r takes rows ``r::N``), and small collectives.
The loss on each rank is its masked token sum divided by the all-reduced count of unmasked tokens of
the whole batch (times N, since DDP divides the summed gradients by N), so the gradient equals the
single-process gradient of the mean over the global batch, whatever the split of masked tokens.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def launched() -> bool:
    """True in a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "cpu") -> bool:
    """Under torchrun, join the process group (NCCL for CUDA devices, gloo otherwise); True when active."""
    if not launched() or not dist.is_available():
        return False
    if not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return True


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def device_for(device: str) -> torch.device:
    """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` under DDP."""
    d = torch.device(device)
    if active() and d.type == "cuda" and d.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return d


def shard_rows(t: torch.Tensor | None, r: int, n: int) -> torch.Tensor | None:
    """Rows ``r::n`` of a (batch, ...) tensor."""
    return None if t is None else t[r::n]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s value of ``obj`` on every rank (identity without DDP)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
