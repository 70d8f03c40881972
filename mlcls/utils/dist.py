"""Thin helpers over torch.distributed (all of them work when it is not initialised).

Collectives here run on a tensor of a device the process group's backend serves: with the
default ``cpu:gloo,cuda:nccl`` group a CPU tensor goes through gloo and a CUDA one through NCCL;
with a NCCL-only group (``dist_backend: nccl``) CPU tensors are moved to this process's GPU for
the collective and the result comes back on the input's device. NCCL has no CPU backend, so a
CPU tensor handed to it directly would fail ("No backend type associated with device type cpu").
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist

logger = logging.getLogger("mlcls")


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def default_backend() -> str:
    """Gloo for CPU tensors, plus NCCL for CUDA tensors when this machine has a GPU."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "cpu:gloo"


def init_distributed(backend: str | None = None, timeout_s: float | None = None) -> tuple[int, int]:
    """Initialise the default process group from torchrun's environment variables.

    Args:
        backend: ``None`` for :func:`default_backend`, or any string torch accepts (``nccl``,
            ``gloo``, ``cpu:gloo,cuda:nccl``; the config's ``dist_backend``).
        timeout_s: collective timeout in seconds (torch's default when ``None``).

    Returns:
        ``(rank, world_size)``.
    """
    if not is_dist():
        backend = backend or default_backend()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        kwargs = {"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}
        dist.init_process_group(backend=backend, **kwargs)
    return get_rank(), get_world_size()


def comm_device(device: torch.device) -> torch.device:
    """The device a tensor on ``device`` must be on for the default group's collectives."""
    if device.type == "cpu" and not _serves_cpu(str(dist.get_backend())):
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _serves_cpu(backend: str) -> bool:
    # "gloo", "mpi", "cpu:gloo,cuda:nccl" serve CPU tensors; "nccl" alone does not
    if ":" in backend:
        return any(part.split(":")[0].strip() == "cpu" for part in backend.split(","))
    return backend.lower() != "nccl"


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` ([n_rank, ...], n may differ per rank) from every rank along dim 0, in rank order."""
    if not is_dist():
        return x
    home, dev = x.device, comm_device(x.device)
    x = x.to(dev)
    ws = get_world_size()
    n = torch.tensor([x.shape[0]], dtype=torch.long, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(ws)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    out = [torch.empty_like(padded) for _ in range(ws)]
    dist.all_gather(out, padded)
    return torch.cat([o[:s] for o, s in zip(out, sizes)]).to(home)


def all_reduce(x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A reduced copy of ``x`` (``op``: sum, max, min), on ``x``'s device."""
    if not is_dist():
        return x
    y = x.detach().to(comm_device(x.device), copy=True)
    dist.all_reduce(y, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return y.to(x.device)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    return all_reduce(x) / get_world_size() if is_dist() else x


def shutdown(clean: bool = True) -> None:
    """Leave the process group: after a clean run, wait for every rank first, then destroy it.

    The barrier keeps a fast rank from exiting while a slower one still has a collective in
    flight; with gloo, a peer that disappears mid-collective aborts the other process (SIGABRT).
    After an error (``clean=False``) there is no barrier: the other ranks may never reach it.
    """
    if not is_dist():
        return
    try:
        if clean:
            dist.barrier()
    finally:
        dist.destroy_process_group()
