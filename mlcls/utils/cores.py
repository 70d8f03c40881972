"""The CPU cores of one machine shared among the trainings running on it.

torch starts one compute thread per core. Two trainings side by side then run twice as many
threads as there are cores, and OpenMP's threads spin while they wait for the cores the other
training holds: each training gets several times slower than it would with its own share of
the cores. Every training registers itself in a folder of the machine's temporary directory
(a file per process, named by its pid) for as long as it trains; a training whose threads
nobody fixed (no ``OMP_NUM_THREADS``) uses ``cores // trainings`` threads, and looks again at
the start of each epoch, so that the first of two trainings gives up half of its threads once
the second starts, and takes them back once it ends.

A worker of ``--workers N`` is started with ``OMP_NUM_THREADS`` (its share) and
``MLCLS_CORES`` (the cores it may use for DataLoader workers as well), and registers too, so
that a training started beside a pool of workers counts them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import torch

from mlcls.utils.fileio import process_alive

logger = logging.getLogger("mlcls")

CORES_ENV = "MLCLS_CORES"  # the cores a worker of a pool may use (set by the pool)


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a scheduler's cgroup sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def usable_cores() -> int:
    """The cores this process may use: its share when a pool of workers gave it one, else the machine's."""
    share = os.environ.get(CORES_ENV, "")
    return max(1, min(int(share), machine_cores())) if share.isdigit() and int(share) > 0 else machine_cores()


def worker_env(workers: int, slot: int, gpus: int = 0) -> dict[str, str]:
    """The environment of worker ``slot`` of a pool of ``workers`` on this machine: an equal share
    of the cores as its threads (at least one), and one GPU of ``gpus`` when there are any."""
    share = max(1, machine_cores() // max(1, workers))
    env = {"OMP_NUM_THREADS": str(share), "MKL_NUM_THREADS": str(share), CORES_ENV: str(share)}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    return env


def process_start_time(pid: int) -> str:
    """The start time of process ``pid`` (``/proc``), so that a reused pid is not taken for a training; '' elsewhere."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


class CoreShare:
    """This process's place among the trainings on the machine, as a context manager.

    Args:
        folder: where the trainings register (default: ``mlcls-trainings-<uid>`` in the
            temporary directory; tests give their own).
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        self.folder = Path(folder) if folder else Path(tempfile.gettempdir()) / f"mlcls-trainings-{uid}"
        self.fixed = bool(os.environ.get("OMP_NUM_THREADS"))  # the user's (or the pool's) own choice stands
        self.initial = torch.get_num_threads()
        self.entry: Path | None = None

    def __enter__(self) -> CoreShare:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            pid = os.getpid()
            self.entry = self.folder / str(pid)
            self.entry.write_text(process_start_time(pid))
        except OSError as e:  # a read-only temp dir: the training runs, it just cannot see the others
            logger.warning("could not register this training in %s (%s): trainings started beside it may share the cores badly",
                           self.folder, e)  # fmt: skip
            self.entry = None
        self.adjust()
        return self

    def __exit__(self, *exc) -> None:
        if self.entry is not None:
            self.entry.unlink(missing_ok=True)
        if not self.fixed and torch.get_num_threads() != self.initial:
            torch.set_num_threads(self.initial)

    def trainings(self) -> int:
        """How many trainings are registered and still running (this one included); stale entries are removed."""
        alive = 0
        for entry in self.folder.glob("[0-9]*"):
            pid = int(entry.name) if entry.name.isdigit() else -1
            try:
                recorded = entry.read_text()
            except OSError:
                continue  # removed meanwhile
            if pid > 0 and process_alive(pid) and (not recorded or recorded == process_start_time(pid)):
                alive += 1
            else:
                entry.unlink(missing_ok=True)  # a killed training's entry, or a pid reused since
        return max(1, alive)

    def adjust(self) -> int:
        """Set this process's compute threads to its share of the cores (unless fixed); returns the threads."""
        if self.fixed or self.entry is None:
            return torch.get_num_threads()
        n, cores = self.trainings(), usable_cores()
        target = max(1, min(self.initial, cores // n))
        if target != torch.get_num_threads():
            logger.info("%d trainings on this machine's %d cores: this one uses %d compute thread(s) (set OMP_NUM_THREADS to choose)",
                        n, cores, target)  # fmt: skip
            torch.set_num_threads(target)
        return target
