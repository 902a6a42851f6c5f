"""Which device a model runs on, from the name a user gives.

One function, ``resolve_device``, for the head trainer and the backbone alike, so that "auto",
"cuda" or "mps" mean the same thing everywhere and a device that is not there is a clear error
before any work starts, not a CUDA traceback an hour in.
"""

from __future__ import annotations

import re

import torch

from prmkit import distributed
from prmkit.errors import PrmkitError

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` a name (or a ``torch.device``) stands for, checked to be present.

    "auto": CUDA if available, else MPS (Apple GPUs), else the CPU. "cuda" without an index is
    this process's GPU: cuda:LOCAL_RANK under torchrun (one GPU per process), else the current
    one. "cuda:N" is that GPU. Raises ``PrmkitError`` naming what is missing.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    name = str(name).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif _mps_available():
            return torch.device("mps")
        else:
            return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise PrmkitError("device 'mps' is not available: it needs an Apple GPU and a torch "
                              "build with MPS (torch.backends.mps.is_available() is False)")
        return torch.device("mps")
    match = _CUDA.fullmatch(name)
    if match is None:
        raise PrmkitError(f"unknown device {name!r}; use one of {', '.join(DEVICE_NAMES)}")
    if not torch.cuda.is_available():
        raise PrmkitError(f"device {name!r} is not available: torch {torch.__version__} sees no "
                          "CUDA GPU (a CPU-only build, no driver, or CUDA_VISIBLE_DEVICES empty);"
                          " use device 'cpu' (--device cpu)")
    if match.group(1) is None:
        index = distributed.local_rank() if distributed.active() else torch.cuda.current_device()
    else:
        index = int(match.group(1))
    count = torch.cuda.device_count()
    if index >= count:
        raise PrmkitError(f"device 'cuda:{index}' is not available: {count} CUDA GPU"
                          f"{'' if count == 1 else 's'} visible (cuda:0"
                          f"{'' if count == 1 else f' to cuda:{count - 1}'})")
    return torch.device("cuda", index)


def _mps_available() -> bool:
    return torch.backends.mps.is_available()
