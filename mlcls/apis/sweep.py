"""A sweep: which recipe pays on this data, each candidate scored by cross-validation or a val split.

``tools/sweep.py CONFIG SPACE.yaml`` is the command; this module is its engine, on Optuna. The
search space is a YAML file of config keys (see :class:`Space`); each trial is the config with
one value per key, trained in ``<work_dir>/trial_<n>`` and scored by the pooled out-of-fold metric
of ``--folds K`` (with its bootstrap interval) or by the last validation of a plain training
(pruned early by Optuna's median rule when its per-epoch values trail the other trials').

The study lives in a storage: by default a journal file beside the trials (``study.journal``),
or any storage URL Optuna takes (``postgresql://``, ``mysql://``, ``sqlite:///``, and
``redis://`` for a journal on Redis), so that workers on many machines share one study. A worker
records who runs each trial (the scheduler's array task, or host and pid); a worker that starts
as the same owner, or on the same host after the process died, marks the stopped trial and runs
it again from its checkpoints, so a killed sweep continues where it stopped.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from mlcls.apis.folds import run_folds
from mlcls.apis.train import train_model
from mlcls.cli import TERMINATION, Terminated
from mlcls.config import apply_overrides, config_sha256, yaml_load
from mlcls.engine.hook import Hook
from mlcls.errors import ConfigError, MlclsError
from mlcls.evaluation.functional import SUMMARY_KEYS
from mlcls.registry import check_spec
from mlcls.schema import check_config
from mlcls.utils.cores import process_alive, process_start_time

logger = logging.getLogger("mlcls")

SAMPLERS = ("grid", "tpe", "random")
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_FAILED_IN_A_ROW = 3  # trials of one process failing one after the other before the sweep stops


@dataclass
class Param:
    """One key of the space: a list of ``choices`` (any YAML values: numbers, names, whole
    sections such as a loss), or a range ``low``..``high`` (``log`` scale, ``step``; integers
    when low, high and step are)."""

    key: str
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def labels(self) -> list[str]:
        """The choices as Optuna stores them (JSON text): the config values are read back from the space file, never from storage."""
        return [json.dumps(c, sort_keys=True) for c in self.choices]

    def distribution(self):
        if self.choices is not None:
            return CategoricalDistribution(self.labels)
        if all(isinstance(v, int) for v in (self.low, self.high, self.step or 1)):
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def value(self, stored: Any) -> Any:
        """The config value of a stored parameter."""
        return copy.deepcopy(self.choices[self.labels.index(stored)]) if self.choices is not None else stored


@dataclass
class Space:
    """A sweep's space file, checked: ``space`` (key -> choices or range), ``metric`` (default
    mAP), ``direction`` (maximize), ``sampler`` (``grid``: every combination of choices, the
    default when every key has choices; ``tpe``; ``random``), ``trials`` (tpe / random; grid:
    every combination), ``seed``."""

    params: list[Param]
    metric: str = "mAP"
    direction: str = "maximize"
    sampler: str = "grid"
    trials: int = 0
    seed: int = 0
    sha256: str = ""

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Space:
        text = Path(path).read_text(encoding="utf-8")
        doc = yaml_load(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("space"), dict) or not doc["space"]:
            raise ConfigError(f"{path}: expected a mapping with 'space:' (config key -> choices or a range); see docs/sweeps.md")
        unknown = set(doc) - {"space", "metric", "direction", "sampler", "trials", "seed"}
        if unknown:
            raise ConfigError(
                f"{path}: unknown key(s) {', '.join(sorted(unknown))} (expected space, metric, direction, sampler, trials, seed)"
            )
        params = [_param(path, key, spec) for key, spec in doc["space"].items()]
        sampler = doc.get("sampler") or ("grid" if all(p.choices is not None for p in params) else "tpe")
        if sampler not in SAMPLERS:
            raise ConfigError(f"{path}: sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if sampler == "grid" and any(p.choices is None for p in params):
            raise ConfigError(
                f"{path}: sampler grid: every key needs 'choices' ({next(p.key for p in params if p.choices is None)} is a range)"
            )
        trials = doc.get("trials", 0 if sampler == "grid" else None)
        if sampler != "grid" and (not isinstance(trials, int) or isinstance(trials, bool) or trials < 1):
            raise ConfigError(f"{path}: trials: expected a number of trials >= 1 for sampler {sampler}, got {trials!r}")
        direction = doc.get("direction", "maximize")
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"{path}: direction: expected maximize or minimize, got {direction!r}")
        seed = doc.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"{path}: seed: expected an integer >= 0, got {seed!r}")
        sha = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
        space = cls(params, str(doc.get("metric", "mAP")), direction, sampler, trials or 0, seed, sha)
        if sampler == "grid":
            space.trials = len(space.grid())
        return space

    def grid(self) -> list[dict]:
        """Every combination of the choices, as stored parameters."""
        return [dict(zip([p.key for p in self.params], combo)) for combo in itertools.product(*(p.labels for p in self.params))]

    def distributions(self) -> dict:
        return {p.key: p.distribution() for p in self.params}


def _param(path, key: str, spec: Any) -> Param:
    where = f"{path}: space.{key}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected {{choices: [...]}} or {{low: L, high: H}}, got {spec!r}")
    if "choices" in spec:
        if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{where}: expected choices: a non-empty list, and nothing beside it")
        labels = [json.dumps(c, sort_keys=True) for c in spec["choices"]]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where}: a choice is listed twice")
        return Param(key, choices=list(spec["choices"]))
    extra = set(spec) - {"low", "high", "log", "step"}
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if extra or not numbers or not low < high:
        raise ConfigError(f"{where}: a range needs numbers low < high (and optionally log: true, step: S), got {spec!r}")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0, got {low}")
    return Param(key, low=low, high=high, log=bool(spec.get("log")), step=spec.get("step"))


def apply_params(cfg: dict, space: Space, params: dict, source: str = "space") -> dict:
    """``cfg`` with each key of ``params`` (stored values) set to its config value, checked."""
    values = {p.key: p.value(params[p.key]) for p in space.params if p.key in params}
    try:
        out = apply_overrides(cfg, [f"{key}={json.dumps(value)}" for key, value in values.items()])
        check_config(out)
        for key, value in values.items():
            if isinstance(value, dict):
                check_spec(value, key)
    except MlclsError as e:
        raise ConfigError(f"{source}: {str(e).replace('--cfg-options: ', '')}") from None
    return out


def open_study(space: Space, cfg: dict, folds: int | None, storage: str | None, name: str, work_dir: Path, create: bool) -> optuna.Study:
    """The study ``name`` in ``storage`` (default: ``work_dir/study.journal``); created with the
    grid enqueued when ``create``; refused when it was started with another space, config or scoring."""
    record = {"space_sha256": space.sha256, "config_sha256": config_sha256(cfg), "folds": folds or 0, "metric": space.metric}
    store = _storage(storage, work_dir)
    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        if not create:
            raise ConfigError(
                f"no study {name!r} in {storage or work_dir / 'study.journal'}: start the sweep first (without --worker)"
            ) from None
        study = optuna.create_study(study_name=name, storage=store, direction=space.direction, load_if_exists=True)
        if not study.user_attrs:
            for key, v in record.items():
                study.set_user_attr(key, v)
            for params in space.grid() if space.sampler == "grid" else []:
                study.enqueue_trial(params)
        return study
    made = {key: study.user_attrs.get(key) for key in record}
    if made != record:
        diff = ", ".join(key.replace("_sha256", "") for key in record if made[key] != record[key])
        raise ConfigError(f"the study {name!r} in {storage or work_dir / 'study.journal'} was started with another {diff}: "
                          "use another --work-dir (or --study-name), or the same space file, config and --folds")  # fmt: skip
    return study


def _storage(url: str | None, work_dir: Path):
    if url and url.startswith("redis://"):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(url))
    if url and "://" in url:
        return url  # an SQL database (Optuna's RDB storage)
    path = Path(url) if url else work_dir / "study.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def owner() -> str:
    """Who runs a trial: the scheduler's array task when there is one (a requeued task is the same
    owner, wherever it runs), else this host and process."""
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task is not None:
        return f"slurm:{os.environ.get('SLURM_ARRAY_JOB_ID', '')}_{task}"
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid)}"


def recover_stopped(study: optuna.Study) -> int:
    """Trials left running by a killed worker (this owner, or a dead process on this host) are
    marked failed and queued again with their parameters; their retry resumes from their
    checkpoints. Returns how many."""
    me, host, n = owner(), socket.gethostname(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = t.user_attrs.get("owner", "")
        parts = who.split(":")
        dead_here = (
            len(parts) == 3 and parts[0] == host and (not process_alive(int(parts[1])) or process_start_time(int(parts[1])) != parts[2])
        )
        if who == me or dead_here:
            try:
                study.tell(t.number, state=TrialState.FAIL)
            except (ValueError, RuntimeError):
                continue  # another worker marked it first
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.user_attrs.get("retry_of", t.number)})
            logger.info("trial %d was stopped (%s): queued again, it resumes from its checkpoints", t.number, who)
            n += 1
    return n


class _Report(Hook):
    """Reports the sweep's metric to Optuna after each validation and stops a trial its pruner
    judges behind the others at the same epoch."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def monitored_metrics(self) -> dict[str, str]:
        return {"the sweep's metric": self.metric}

    def after_eval(self, trainer, metrics: dict) -> None:
        value = float(metrics[self.metric])
        if math.isfinite(value):
            self.trial.report(value, trainer.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {trainer.epoch + 1}: {self.metric} {value:.2f} trails the other trials")


def run_trial(trial: optuna.Trial, space: Space, cfg: dict, work_dir: Path, folds: int | None, ci: int | None) -> float:
    """Train and score one trial; its interval and time go to the trial's user attributes."""
    number = trial.user_attrs.get("retry_of", trial.number)
    run = apply_params(cfg, space, trial.params, source=f"trial {trial.number}")
    run["work_dir"] = str(work_dir / f"trial_{number}")
    retry = "retry_of" in trial.user_attrs
    trial.set_user_attr("work_dir", run["work_dir"])
    start = time.perf_counter()
    if folds:
        resume = retry and (Path(run["work_dir"]) / "folds.csv").is_file()
        summary = run_folds(run, folds, lambda c, r: train_model(c, resume="auto" if r else None), resume=resume, ci=ci)
        value = summary["pooled"][space.metric]
        interval = (summary.get("pooled_ci") or {}).get(space.metric)
        if interval is not None:
            trial.set_user_attr("interval", [float(interval[0]), float(interval[1])])
    else:
        metrics = train_model(run, resume="auto" if retry else None, hooks=[_Report(trial, space.metric)])
        value = metrics.get(space.metric)
        if value is None:
            raise ConfigError(
                f"trial {trial.number}: no validation ran, so there is no {space.metric}: give the config a val_dataloader, or use --folds K"
            )
    trial.set_user_attr("seconds", time.perf_counter() - start)
    return float(value)


def run_trials(study: optuna.Study, space: Space, cfg: dict, work_dir: Path, folds: int | None = None, ci: int | None = None) -> int:
    """Take trials from ``study`` until the space is done (grid: every combination finished;
    otherwise ``space.trials`` finished or running). Returns how many this process ran. The
    caller recovers stopped trials first (:func:`recover_stopped`)."""
    if folds and space.metric not in SUMMARY_KEYS:
        raise ConfigError(f"metric {space.metric!r}: with --folds, one of the pooled metrics {', '.join(SUMMARY_KEYS)}")
    sampler = optuna.samplers.RandomSampler(seed=_worker_seed(space)) if space.sampler == "random" else \
        optuna.samplers.TPESampler(seed=_worker_seed(space))  # fmt: skip
    study.sampler = sampler
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    ran, failed_in_a_row, last_error = 0, 0, ""
    while True:
        if failed_in_a_row >= MAX_FAILED_IN_A_ROW:  # a broken setup (data, config) fails every trial: say so instead of sampling forever
            raise ConfigError(f"{failed_in_a_row} trials in a row failed, the last with: {last_error}; fix it and start the sweep again "
                              "(failed trials are queued again)")  # fmt: skip
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        busy = len(study.get_trials(deepcopy=False, states=(*DONE, TrialState.RUNNING)))
        if not waiting and (space.sampler == "grid" or busy >= space.trials):
            return ran
        trial = study.ask(space.distributions())
        trial.set_user_attr("owner", owner())
        try:
            value = run_trial(trial, space, cfg, work_dir, folds, ci)
            study.tell(trial, value)
            logger.info("trial %d: %s %.2f", trial.number, space.metric, value)
            failed_in_a_row = 0
        except optuna.TrialPruned as e:
            study.tell(trial, state=TrialState.PRUNED)
            logger.info("trial %d pruned: %s", trial.number, e)
            failed_in_a_row = 0
        except Exception as e:  # one bad candidate (a value the model rejects, a diverged run) does not end the sweep
            if TERMINATION.is_set():  # SIGTERM, turned into another error inside a library: the trial stays to be resumed
                raise Terminated() from e
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])
            study.tell(trial, state=TrialState.FAIL)
            logger.warning("trial %d failed: %s", trial.number, e)
            failed_in_a_row, last_error = failed_in_a_row + 1, f"{type(e).__name__}: {e}"
        ran += 1


def retry_failed(study: optuna.Study) -> int:
    """Queue again each failed trial whose parameters no other trial finished or will run (a
    sweep started again after its cause was fixed completes its grid). Returns how many."""
    live = study.get_trials(deepcopy=False, states=(*DONE, TrialState.RUNNING, TrialState.WAITING))
    taken = {json.dumps(_params_of(t), sort_keys=True) for t in live}
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        key = json.dumps(t.params, sort_keys=True)
        if key not in taken:
            taken.add(key)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.user_attrs.get("retry_of", t.number)})
            logger.info("trial %d failed before (%s): queued again", t.number, t.user_attrs.get("error", "stopped"))
            n += 1
    return n


def _params_of(trial) -> dict:
    """A trial's parameters; a queued trial holds them as its fixed parameters until a worker takes it."""
    return trial.params or dict(trial.system_attrs.get("fixed_params") or {})


def _worker_seed(space: Space) -> int:
    """The sampler's seed: the space's, made distinct per worker so that two workers do not draw the same first trials."""
    return int(hashlib.sha256(f"{space.seed}:{owner()}".encode()).hexdigest()[:8], 16)


def trials_table(study: optuna.Study, space: Space) -> list[dict]:
    """One row per trial: its number, state, the config value of each key, the metric, its
    interval, the time and the work dir (a retried trial's row is its last attempt)."""
    rows = {}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        number = t.user_attrs.get("retry_of", t.number)
        if number in rows and t.state == TrialState.FAIL and rows[number]["state"] != "FAIL":
            continue  # the stopped attempt of a trial that then finished
        interval = t.user_attrs.get("interval") or [None, None]
        rows[number] = {"trial": number, "state": t.state.name, **{p.key: _shown(p.value(t.params[p.key])) for p in space.params if p.key in t.params},
                        space.metric: t.value if t.state == TrialState.COMPLETE else None, "low": interval[0], "high": interval[1],
                        "seconds": t.user_attrs.get("seconds"), "work_dir": t.user_attrs.get("work_dir", ""),
                        "last_epoch_value": max(t.intermediate_values.items())[1] if t.intermediate_values else None,
                        "error": t.user_attrs.get("error", "")}  # fmt: skip
    return [rows[k] for k in sorted(rows)]


def _shown(value: Any) -> Any:
    """A config value as the table shows it: a section by its type and settings (``FocalLoss(gamma=2)``)."""
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        rest = ", ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in value.items() if k != "type")
        return f"{value['type']}({rest})" if rest else value["type"]
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def best_config(study: optuna.Study, space: Space, cfg: dict) -> dict | None:
    """The config of the best finished trial, without a work dir (``tools/train.py`` gives one), or None."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return None
    best = (max if space.direction == "maximize" else min)(done, key=lambda t: t.value)
    out = apply_params(cfg, space, best.params)
    out.pop("work_dir", None)
    return out


__all__ = ["Space", "apply_params", "best_config", "open_study", "recover_stopped", "retry_failed", "run_trials", "trials_table"]
