"""Which backend and device a rank uses: NCCL on a GPU when there is one, gloo on CPU otherwise.

Examples
--------
>>> resolve_backend("gloo", local_world_size=4, cuda_devices=0)
'gloo'
>>> resolve_backend("auto", local_world_size=4, cuda_devices=0)
'gloo'
>>> resolve_backend("auto", local_world_size=2, cuda_devices=8)
'nccl'
>>> resolve_backend("nccl", local_world_size=2, cuda_devices=0)
Traceback (most recent call last):
...
real.placement.LaunchError: backend nccl needs a CUDA GPU per process, but torch sees none on this node (torch.cuda.is_available() is False); use --backend gloo, or install a CUDA build of torch
"""

from __future__ import annotations

import torch

from real.placement import LaunchError

__all__ = ["BACKENDS", "device_for", "resolve_backend"]

BACKENDS = ("auto", "gloo", "nccl")


def resolve_backend(backend: str, *, local_world_size: int, cuda_devices: int | None = None) -> str:
    """``gloo`` or ``nccl`` for ``backend`` (``auto``: NCCL when this node has a GPU for every
    local process, else gloo), checked against the GPUs this node has."""
    if backend not in BACKENDS:
        raise LaunchError(f"backend {backend!r} is unknown; use one of {', '.join(BACKENDS)}")
    gpus = torch.cuda.device_count() if cuda_devices is None else cuda_devices
    if backend == "auto":
        return "nccl" if gpus >= local_world_size > 0 else "gloo"
    if backend == "nccl":
        if gpus == 0:
            raise LaunchError(
                "backend nccl needs a CUDA GPU per process, but torch sees none on this node "
                "(torch.cuda.is_available() is False); use --backend gloo, or install a CUDA "
                "build of torch"
            )
        if local_world_size > gpus:
            raise LaunchError(
                f"backend nccl runs one process per GPU, but {local_world_size} processes "
                f"share this node's {gpus} GPU(s); start at most {gpus} per node "
                "(--nproc / --nproc-per-node / --ntasks-per-node)"
            )
    return backend


def device_for(backend: str, local_rank: int) -> torch.device:
    """The device a rank's tensors live on: its own GPU under NCCL, else the CPU."""
    if backend != "nccl":
        return torch.device("cpu")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device
