"""Several processes under ``torchrun``: who am I, and the few collectives prmkit needs.

``torchrun --nproc-per-node K -m prmkit.cli embed|train ...`` starts K copies of the command with
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set. ``init()`` joins them into one
process group; embedding then splits the cache shards between ranks (``embed/pipeline.py``) and
training splits each batch between ranks under DistributedDataParallel (``train/loop.py``).

In a single process (no WORLD_SIZE above 1, or ``init()`` never called) every function here is a
no-op: rank 0 of 1, barriers return at once, a broadcast returns its argument, a sum is the
value itself. Callers need no branch of their own, and the single-process path is unchanged.

The backend is gloo where there is no GPU, and ``cpu:gloo,cuda:nccl`` where there is one: CUDA
tensors (DDP's gradients) go through NCCL, while the Python objects and CPU tensors broadcast
here (checkpoints, validation losses, summaries) go through gloo, whatever device training uses.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from prmkit.errors import PrmkitError

T = TypeVar("T")


def init() -> None:
    """Join the process group torchrun describes, once; nothing when WORLD_SIZE is 1 or unset,
    or when a group exists already (the caller made its own)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() \
            or dist.is_initialized():
        return
    if torch.cuda.is_available():
        local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= gpus:
            raise PrmkitError(f"process {local} of this machine has no GPU of its own ({gpus} "
                              "visible): start at most one process per GPU (--nproc-per-node), "
                              "or hide the GPUs (CUDA_VISIBLE_DEVICES=) to run on CPUs")
        # each process on its own GPU before the group forms: NCCL work goes to the current one
        torch.cuda.set_device(local)
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group("gloo")


def close() -> None:
    """Leave the process group (at the end of a command), so no rank exits with it open."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """This process's index on its own machine (torchrun's LOCAL_RANK): its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    """Rank 0: the one process that prints and writes files."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (pickled; any picklable value, tensors included).
    The other ranks' argument is ignored: pass None there."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_float(value: float, src: int = 0) -> float:
    """Rank ``src``'s number on every rank, exactly (float64 on the wire)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_wire_device())
    dist.broadcast(t, src=src)
    return float(t.item())


def all_reduce_sum(value: float | torch.Tensor) -> float | torch.Tensor:
    """The sum of ``value`` over ranks: a float comes back as a float (summed in float64), a
    tensor as a new tensor on its own device (the argument is left alone)."""
    if not active():
        return value
    if isinstance(value, torch.Tensor):
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out
    t = torch.tensor([value], dtype=torch.float64, device=_wire_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def all_gather_object(obj: Any) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _wire_device() -> torch.device:
    """Where a tensor built here must live for the group to carry it: CPU goes through gloo,
    which every group made by ``init`` has; a group made elsewhere with NCCL alone needs CUDA."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
