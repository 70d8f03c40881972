"""Train a model from a config: python tools/train.py CONFIG [--work-dir DIR] [--cfg-options k=v ...]."""

from __future__ import annotations

import argparse
import sys

from mlcls.apis import prepare_config, train_model
from mlcls.cli import cli_main, int_at_least, resamples_arg, seed_arg
from mlcls.errors import ConfigError, DataError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a multi-label classifier")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--work-dir", help="output folder (default: work_dirs/<config name>)")
    p.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. optimizer.lr=0.01; '+key=v' adds a key",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="PATH",
        help="resume from PATH, or from work_dir/latest.pth when given without a value",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in the work dir (default: refuse)")
    p.add_argument("--seed", type=seed_arg(), help="random seed (overrides the config)")
    p.add_argument(
        "--seeds", type=seed_arg(), nargs="+", metavar="K",
        help="train once per seed in <work_dir>/seed_<K>, then write seeds_summary.json/.txt (mean ± std); with --folds, "
        "K folds per seed and the mean of the seeds' out-of-fold scores in <work_dir>/oof_scores.npz",
    )  # fmt: skip
    p.add_argument(
        "--folds", type=int_at_least(2), metavar="K",
        help="K-fold cross-validation of the training split: fold k trains in <work_dir>/fold_<k>; writes folds.csv, "
        "oof_scores.npz (every sample scored by a model that never saw it) and folds_summary.json/.txt",
    )  # fmt: skip
    p.add_argument("--ci", type=resamples_arg(), metavar="N", help="with --folds: bootstrap intervals of the pooled out-of-fold metrics")
    p.add_argument(
        "--tta", metavar="VIEWS",
        help="with --folds: score each held-out fold with test-time augmentation, 'flip' (image + horizontal flip), 'flip4' "
        "(+ vertical, both) or 'config' (the config's test_cfg.tta); with --resume, finished folds scored otherwise are scored again",
    )  # fmt: skip
    p.add_argument("--amp", action="store_true", help="mixed precision (train_cfg.amp=true)")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument(
        "--launcher",
        choices=["none", "pytorch"],
        default="none",
        help="'pytorch' under torchrun: torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch",
    )
    p.add_argument("--check-data", action="store_true", help="verify every image of every split first (tools/check_dataset.py)")
    p.add_argument(
        "--auto-scale-lr",
        action="store_true",
        help="scale optimizer.lr by total batch size / auto_scale_lr.base_batch_size",
    )
    args = p.parse_args(argv)
    if args.seeds and len(set(args.seeds)) != len(args.seeds):  # before seed 0 trains twice
        p.error(f"--seeds: each seed once, got {' '.join(map(str, args.seeds))}")
    if args.ci and not args.folds:
        p.error("--ci: only with --folds (intervals of the pooled out-of-fold metrics); tools/test.py --ci N for a test split")
    return args


@cli_main
def main(argv=None) -> None:
    args = parse_args(argv)
    if args.tta and not args.folds:
        raise ConfigError("--tta: only with --folds (it scores the held-out folds); tools/test.py --tta scores a test split")
    opts = list(args.cfg_options)
    if args.amp:
        opts.append("+train_cfg.amp=true")
    if args.device:
        opts.append(f"+device={args.device}")
    if args.auto_scale_lr:
        opts.append("+auto_scale_lr.enable=true")
    cfg = prepare_config(args.config, opts, work_dir=args.work_dir, seed=args.seed)
    if args.check_data:
        from check_dataset import check_config

        n = check_config(cfg, ["train", "val", "test"], out=sys.stderr)
        if n:
            raise DataError(f"--check-data: {n} problem(s) in the datasets (listed above); fix them or set on_bad_image: skip")
    from mlcls.utils.dist import shutdown

    clean = False
    try:
        if args.folds:
            from mlcls.apis.folds import combine_seeds, format_folds_summary, run_folds
            from mlcls.schema import get
            from mlcls.utils.dist import init_distributed

            if args.launcher == "pytorch":  # the folds' own checks and files are shared by the ranks from the start
                init_distributed(get(cfg, "dist_backend"))

            if args.seeds:
                base = cfg["work_dir"]
                for seed in args.seeds:  # each seed its own split and models
                    run = {**cfg, "seed": seed, "work_dir": f"{base}/seed_{seed}"}
                    summary = run_folds(run, args.folds, lambda c, r: train_model(c, resume="auto" if r else None, launcher=args.launcher,
                                                                                  overwrite=args.overwrite), resume=bool(args.resume), ci=args.ci,
                                        tta=args.tta, overwrite=args.overwrite)  # fmt: skip
                    print(f"seed {seed}: " + format_folds_summary(summary))
                # the seeds' out-of-fold scores averaged: an ensemble's, still out of fold, for the finder and the report
                print(format_folds_summary(combine_seeds(base, args.seeds)))
            else:
                summary = run_folds(
                    cfg, args.folds, lambda c, r: train_model(c, resume="auto" if r else None, launcher=args.launcher, overwrite=args.overwrite),
                    resume=bool(args.resume), ci=args.ci, tta=args.tta, overwrite=args.overwrite,
                )  # fmt: skip
                print(format_folds_summary(summary))
            where = f"{cfg['work_dir']}/seed_<s> (and their mean oof_scores.npz in {cfg['work_dir']})" if args.seeds else cfg["work_dir"]
            print(f"wrote folds.csv, oof_scores.npz and folds_summary.json/.txt in {where}")
        elif args.seeds:
            from mlcls.apis.seeds import format_summary, run_seeds

            if args.launcher != "none" or args.resume:
                raise DataError("--seeds runs the seeds one after the other in this process: start one torchrun job per --seed instead")
            summary = run_seeds(cfg, args.seeds, lambda c: train_model(c, overwrite=args.overwrite))
            print(format_summary(summary))
            print(f"wrote {cfg['work_dir']}/seeds_summary.json and seeds_summary.txt")
        else:
            train_model(cfg, resume=args.resume, launcher=args.launcher, overwrite=args.overwrite)
        clean = True
    finally:
        shutdown(clean)


if __name__ == "__main__":
    main()
