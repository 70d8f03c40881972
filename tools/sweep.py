"""Sweep a config over a search space on Optuna: python tools/sweep.py CONFIG SPACE.yaml [--folds K] [--workers N].

Each trial is CONFIG with one value per key of SPACE.yaml, trained in <work-dir>/trial_<n> and
scored by cross-validation (--folds K: the pooled out-of-fold metric and its interval) or by the
config's val split. Writes trials.csv, best_config.yaml (ready for tools/train.py) and sweep.html
in the work dir. Run it again to continue a stopped sweep. See docs/sweeps.md.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

from mlcls.apis import prepare_config
from mlcls.cli import cli_main, int_at_least, resamples_arg
from mlcls.errors import ConfigError

logger = logging.getLogger("mlcls")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Sweep a config over a search space (Optuna)")
    p.add_argument("config", help="YAML config file (the recipe every trial starts from)")
    p.add_argument("space", help="YAML search space: config keys with choices or ranges (docs/sweeps.md)")
    p.add_argument("--work-dir", help="where the trials, the study and the results go (default: work_dirs/sweep_<config name>)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys for every trial")
    p.add_argument(
        "--folds", type=int_at_least(2), metavar="K", help="score each trial by K-fold cross-validation (default: the val split)"
    )
    p.add_argument("--ci", type=resamples_arg(), default=200, metavar="N",
                   help="with --folds: bootstrap resamples of the pooled metric's interval (default 200)")  # fmt: skip
    p.add_argument("--workers", type=int_at_least(0), default=1, metavar="N",
                   help="N worker processes on this machine share the study, each with 1/N of the cores (or one GPU); 0: only "
                        "create the study (its grid queued) for workers started elsewhere with --worker")  # fmt: skip
    p.add_argument("--storage", metavar="URL",
                   help="the study's storage: a journal file path (default <work-dir>/study.journal), postgresql://, mysql://, "
                        "sqlite:/// or redis:// (workers on many machines share it)")  # fmt: skip
    p.add_argument("--study-name", default="sweep", help="the study's name in the storage (default: sweep)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--worker", action="store_true",
                      help="join the started study and take trials until it is done (a job of a scheduler's array); no results written")  # fmt: skip
    mode.add_argument("--report", action="store_true", help="only write trials.csv, best_config.yaml and sweep.html from the study")
    return p.parse_args(argv)


@cli_main
def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        import optuna
    except ImportError:
        raise ConfigError("tools/sweep.py runs on Optuna: pip install optuna (or pip install -e '.[sweep]')") from None
    from mlcls.apis.sweep import Space, apply_params, open_study, recover_stopped, retry_failed, run_trials
    from mlcls.utils.misc import get_logger

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # mlcls's log says what each trial did
    get_logger()
    work_dir = Path(args.work_dir or Path("work_dirs") / f"sweep_{Path(args.config).stem}")
    cfg = prepare_config(args.config, args.cfg_options, work_dir=str(work_dir))
    space = Space.from_file(args.space)
    for param in space.params:  # every value applies to this config, checked before any training
        for stored in param.labels if param.choices is not None else [param.low, param.high]:
            apply_params(cfg, space, {param.key: stored}, source=f"{args.space}: space.{param.key}")
    folds = args.folds
    ci = args.ci if folds else None
    study = open_study(space, cfg, folds, args.storage, args.study_name, work_dir, create=not (args.worker or args.report))
    if not args.report:  # each process that takes trials, once: a requeued worker takes over what its last run left
        recover_stopped(study)
    if not (args.worker or args.report):  # a sweep started again: its failed trials run again (once per start)
        retry_failed(study)
    if args.worker or (not args.report and args.workers == 1):
        run_trials(study, space, cfg, work_dir, folds, ci)
    elif not args.report and args.workers > 1:
        from mlcls.apis.parts import run_workers

        storage = args.storage or str(work_dir / "study.journal")
        cmd = [sys.executable, str(Path(__file__).resolve()), args.config, args.space, "--work-dir", str(work_dir), "--worker",
               "--storage", storage, "--study-name", args.study_name, *(["--folds", str(folds), "--ci", str(ci)] if folds else []),
               *(["--cfg-options", *args.cfg_options] if args.cfg_options else [])]  # fmt: skip
        run_workers([cmd] * args.workers, args.workers, work_dir / "workers", [f"worker {i}" for i in range(args.workers)])
    if not args.worker:
        write_results(study, space, cfg, work_dir)


def write_results(study, space, cfg: dict, work_dir: Path) -> None:
    """trials.csv, best_config.yaml and sweep.html in ``work_dir``; the table printed."""
    from mlcls.apis.sweep import best_config, trials_table
    from mlcls.config import dump_config
    from mlcls.report.sweep_page import write_sweep_page
    from mlcls.utils.fileio import atomic_open

    rows = trials_table(study, space)
    keys = [p.key for p in space.params]
    cols = ["trial", "state", *keys, space.metric, "low", "high", "seconds", "work_dir", "error"]
    with atomic_open(work_dir / "trials.csv", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    write_sweep_page(rows, keys, [p.key for p in space.params if p.log], space.metric, space.direction, work_dir / "sweep.html",
                     f"mlcls sweep: {work_dir.name}")  # fmt: skip
    best = best_config(study, space, cfg)
    for r in rows:
        value = "" if r[space.metric] is None else f"{r[space.metric]:.2f}"
        interval = f" [{r['low']:.2f}, {r['high']:.2f}]" if r["low"] is not None else ""
        print(f"trial {r['trial']:>3} {r['state']:<8} {value:>7}{interval}  " + "  ".join(f"{k}={r.get(k)}" for k in keys))
    if best is None:
        print(f"no trial finished yet; wrote {work_dir}/trials.csv and sweep.html")
        return
    dump_config(best, work_dir / "best_config.yaml")
    print(f"wrote {work_dir}/trials.csv, sweep.html and best_config.yaml (train it: python tools/train.py {work_dir}/best_config.yaml)")


if __name__ == "__main__":
    main()
