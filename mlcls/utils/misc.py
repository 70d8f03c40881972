"""Logging and seeding helpers."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from mlcls.errors import DataError
from mlcls.utils.dist import is_main_process
from mlcls.utils.fileio import atomic_open

LOGGER_NAME = "mlcls"


def get_logger(log_file: str | Path | None = None, level: int = logging.INFO, stream=None) -> logging.Logger:
    """The ``mlcls`` logger: console on rank 0, plus ``log_file`` when given.

    Calling it again with another ``log_file`` replaces the previous file handler. ``stream``:
    the console stream (default stdout; tools whose stdout is data pass ``sys.stderr``).
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level if is_main_process() else logging.ERROR)
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = [h for h in logger.handlers if getattr(h, "_mlcls_console", False)]
    if stream is not None:  # asked for a particular stream: replace the console handler
        for h in console:
            logger.removeHandler(h)
        console = []
    if not console:
        h = logging.StreamHandler(stream or sys.stdout)
        h.setFormatter(fmt)
        h._mlcls_console = True
        logger.addHandler(h)
    if log_file is not None and is_main_process():
        for h in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(h)
            h.close()
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; with ``deterministic`` also ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        # oneDNN (CPU convolutions) may reduce with atomics unless told otherwise, and the switch
        # above does not tell it: without this, two CPU runs can part in the last bits
        if hasattr(torch.backends.mkldnn, "deterministic"):
            torch.backends.mkldnn.deterministic = True
        else:
            logging.getLogger(LOGGER_NAME).warning(
                "deterministic: this torch %s has no oneDNN deterministic switch; CPU runs may differ in the last bits", torch.__version__
            )


def get_rng_state() -> dict:
    """RNG states as tensors and plain types (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {
        "python": _to_plain(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_to_plain, np_state[2:])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_to_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(x):
    if isinstance(x, tuple):
        return [_to_plain(v) for v in x]
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    return x


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def _json_safe(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def write_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as JSON atomically (NaN and inf become null, which JSON lacks)."""
    with atomic_open(path) as f:
        f.write(json.dumps(_json_safe(obj), indent=1))


SCALARS_FILE = "scalars.jsonl"


def read_scalars(path: str | os.PathLike, strict: bool = False) -> list[dict | None]:
    """The records of a run's ``scalars.jsonl`` (the one reader of the file LoggerHook writes).

    Args:
        path: the file, or the run folder holding it.
        strict: a line that is not JSON is an error naming the file and line (tools reading a
            file the user named); otherwise it is returned as ``None`` (a line cut by a crash:
            the rest of the file is still good).

    Raises:
        DataError: the file is missing, or (``strict``) a line is not JSON.
    """
    path = Path(path)
    if path.is_dir():
        path = path / SCALARS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found (expected a work_dir holding {SCALARS_FILE}, or the file itself)")
    records: list[dict | None] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if strict:
                raise DataError(f"{path}:{n}: not a JSON line ({e.msg})") from None
            record = None
        records.append(record if isinstance(record, dict) or record is None else None)
    return records
