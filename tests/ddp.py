"""Running a function in N real gloo processes, the way the tests need it to be reliable.

Each worker imports everything it needs *before* joining the group (a slow import under CPU load
must not eat into a collective's timeout), initialises through ``mlcls.utils.dist`` exactly as a
torchrun launch does, and leaves through ``shutdown()``, whose barrier keeps a fast rank from
exiting while a slow one still has a collective in flight (gloo aborts the slow process with
SIGABRT when its peer disappears mid-collective). The timeout is generous, so a loaded machine
only slows the test down; a real disagreement between ranks still fails instead of hanging.
"""

from __future__ import annotations

import os
import socket

import torch.multiprocessing as mp

TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, args) -> None:
    from mlcls.utils.dist import init_distributed, shutdown

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    init_distributed(timeout_s=TIMEOUT_S)
    clean = False
    try:
        fn(rank, world, *args)
        clean = True
    finally:
        shutdown(clean)


def spawn(fn, world: int = 2, args: tuple = ()) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` processes joined by a gloo group (via ``init_distributed``)."""
    mp.spawn(_entry, args=(world, _free_port(), fn, args), nprocs=world, join=True)
