"""Many trainings of one command at once: the parts of ``--folds K`` / ``--seeds ...``.

``tools/train.py CONFIG --folds 5 --seeds 0 1 2`` is 15 independent trainings. Each is a *part*,
numbered seed-major (part ``i`` is seed ``seeds[i // K]``, fold ``i % K``; with ``--seeds``
alone, part ``i`` is seed ``seeds[i]``; with ``--folds`` alone, part ``i`` is fold ``i``). A part
runs anywhere that sees the work dir:

- ``--workers N`` runs the parts in N worker processes on this machine, each with an equal share
  of the cores as its threads (``OMP_NUM_THREADS``) or one GPU, then merges them;
- ``--part I`` runs part I alone (one task of a scheduler's job array), and ``--merge`` gathers
  the parts once all are finished, after checking that each was made from the same config, split
  and labels.

A part keeps what is finished and resumes what was stopped, so a requeued job continues. The
merged files are the ones a run in one process writes.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from mlcls.apis.folds import combine_seeds, fold_part, format_folds_summary, merge_folds, start_folds
from mlcls.apis.seeds import format_summary, merge_seeds, seed_config, train_seed
from mlcls.errors import ConfigError
from mlcls.utils.cores import worker_env

logger = logging.getLogger("mlcls")

Part = tuple  # (seed or None, fold or None)


def parts_of(folds: int | None, seeds: Sequence[int] | None) -> list[Part]:
    """The parts of a command, in their numbering: ``[(seed, fold), ...]``, seed-major."""
    if not folds and not seeds:
        raise ConfigError("--workers / --part / --merge: only with --folds K or --seeds ... (a single training has one part)")
    return [(s, f) for s in (seeds or [None]) for f in (range(folds) if folds else [None])]


def part_name(part: Part) -> str:
    seed, fold = part
    return ", ".join(x for x in (f"seed {seed}" if seed is not None else "", f"fold {fold}" if fold is not None else "") if x)


def _seed_cfg(cfg: dict, seed: int | None) -> dict:
    return cfg if seed is None else seed_config(cfg, seed)


def train_part(cfg: dict, folds: int | None, seeds: Sequence[int] | None, index: int, train: Callable[[dict, bool], dict],
               tta: str | list | None = None) -> str:  # fmt: skip
    """Run part ``index`` (see the module's numbering); returns its name."""
    parts = parts_of(folds, seeds)
    if not 0 <= index < len(parts):
        raise ConfigError(f"--part: expected 0 to {len(parts) - 1} (this command has {len(parts)} parts), got {index}")
    seed, fold = parts[index]
    logger.info("part %d of %d: %s", index, len(parts), part_name(parts[index]))
    if folds:
        fold_part(_seed_cfg(cfg, seed), folds, fold, train, tta)
    else:
        train_seed(cfg, seed, train)
    return part_name(parts[index])


def start_parts(cfg: dict, folds: int | None, seeds: Sequence[int] | None, resume: bool, overwrite: bool,
                tta: str | list | None = None) -> None:  # fmt: skip
    """What a run in one process checks and writes before its first training, done once before
    the workers start: a work dir holding a run is refused unless ``resume`` (its finished parts
    are kept) or ``overwrite`` (it is removed); the folds' plans are written."""
    if folds:
        for seed in seeds or [None]:
            start_folds(_seed_cfg(cfg, seed), folds, resume=resume, overwrite=overwrite, tta=tta)
        return
    base = Path(cfg["work_dir"])
    found = [base / f"seed_{s}" for s in seeds if (base / f"seed_{s}").is_dir() and any((base / f"seed_{s}").iterdir())]
    if found and overwrite:
        for d in found:
            shutil.rmtree(d)
        logger.warning("--overwrite: removed the earlier runs of %s", ", ".join(d.name for d in found))
    elif found and not resume:
        raise ConfigError(f"{base} already holds runs of these seeds ({', '.join(d.name for d in found)}); continue them with "
                          "--resume, start anew with --work-dir DIR, or replace them with --overwrite")  # fmt: skip


def folds_of_seeds(cfg: dict, seeds: Sequence[int] | None, summarise: Callable[[dict], dict]) -> Iterator[str]:
    """The summary lines of a folds run, or of one per seed (``seed_<s>``) and then of the mean of
    their out-of-fold scores; ``summarise`` runs or merges the folds of one config. Lazy: each
    seed's line comes as soon as its folds are done."""
    if not seeds:
        yield format_folds_summary(summarise(cfg))
        return
    for seed in seeds:  # each seed its own split and models
        yield f"seed {seed}: " + format_folds_summary(summarise(seed_config(cfg, seed)))
    # the seeds' out-of-fold scores averaged: an ensemble's, still out of fold, for the finder and the report
    yield format_folds_summary(combine_seeds(cfg["work_dir"], list(seeds)))


def merge_parts(cfg: dict, folds: int | None, seeds: Sequence[int] | None, ci: int | None = None, tta: str | list | None = None) -> str:
    """Gather the finished parts into the files of a run in one process; returns the summary's text."""
    if folds:
        return "\n".join(folds_of_seeds(cfg, seeds, lambda c: merge_folds(c, folds, ci=ci, tta=tta)))
    return format_summary(merge_seeds(cfg, list(seeds)))


def run_workers(commands: list[list[str]], workers: int, log_dir: Path, names: Sequence[str]) -> None:
    """Run ``commands`` (one per part, or per sweep worker; ``names`` say which) in at most
    ``workers`` processes at a time, each worker slot with its share of the cores and, when there
    are GPUs, its own GPU. Command ``i``'s output goes to ``log_dir/part_<i>.log``. A failed one does
    not stop the others (their work is kept); the failures are then raised as one error naming
    each, its log and its last line."""
    log_dir.mkdir(parents=True, exist_ok=True)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    logger.info("%d processes, %d at a time (%s each)", len(commands), workers,
                f"one of {gpus} GPUs" if gpus else f"{worker_env(workers, 0)['OMP_NUM_THREADS']} compute thread(s)")  # fmt: skip
    pending, running, failed, free = list(enumerate(commands)), {}, [], list(range(workers))
    try:
        while pending or running:
            while pending and free:
                slot, (i, cmd) = free.pop(0), pending.pop(0)
                log = open(log_dir / f"part_{i}.log", "w")  # noqa: SIM115 (closed when the part ends)
                env = {**os.environ, **worker_env(workers, slot, gpus)}
                running[slot] = (i, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
                logger.info("%s: started, log %s", names[i], log.name)
            time.sleep(0.2)
            for slot, (i, proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[slot]
                free.append(slot)
                logger.info("%s: %s", names[i], "done" if proc.returncode == 0 else f"failed (exit {proc.returncode})")
                if proc.returncode:
                    failed.append(i)
    finally:  # interrupted (Ctrl-C, SIGTERM): the workers stop too; what they finished is kept
        for _i, proc, _log in running.values():
            proc.terminate()
        for _i, proc, log in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a worker that does not stop on SIGTERM within a minute
                proc.kill()
                proc.wait()
            log.close()
    if failed:
        said = "; ".join(f"{names[i]}: {_last_line(log_dir / f'part_{i}.log')} (log: {log_dir / f'part_{i}.log'})" for i in sorted(failed))
        raise ConfigError(f"{len(failed)} of {len(commands)} failed: {said}. What finished is kept: fix the cause and run the command "
                          "again (with --resume for tools/train.py)")  # fmt: skip


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
