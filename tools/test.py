"""Evaluate a checkpoint: python tools/test.py CONFIG CHECKPOINT [--thr T] [--out FILE].

CONFIG may be left out (``tools/test.py CHECKPOINT``): the checkpoint carries its config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlcls.apis import prepare_config, test_model
from mlcls.apis.test import ReportOptions, ThresholdOptions
from mlcls.cli import cli_main, int_at_least, number_in, resamples_arg, seed_arg


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate a multi-label classifier checkpoint")
    p.add_argument("paths", nargs="+", metavar="CONFIG CHECKPOINT", help="config file (optional) and checkpoint")
    p.add_argument("--work-dir", help="where the results go (default: test_<checkpoint name> beside the checkpoint)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--thr", type=number_in(0, 1), help="global threshold (default: the checkpoint's tuned ones, else the evaluator's, 0.5)")
    g.add_argument(
        "--thr-file", help="per-class thresholds from a JSON file (thresholds.json, or 'Download thresholds' in the evaluation report)"
    )
    p.add_argument("--out", help="write per-image scores and targets (.csv or .json; relative to the current folder)")
    p.add_argument("--split", default="test", choices=["test", "val", "train"], help="which *_dataloader to evaluate")
    p.add_argument(
        "--tune-thr",
        choices=["f1", "precision", "recall", "specificity"],
        help="tune per-class thresholds first and store them in the checkpoint; specificity: the highest sensitivity "
        "at specificity >= --tune-target",
    )
    p.add_argument(
        "--tune-target",
        type=number_in(0, 1, low_open=True),
        help="precision/recall/specificity goal in (0, 1] for those --tune-thr objectives",
    )
    p.add_argument(
        "--ci", type=resamples_arg(), metavar="N", help="95%% bootstrap confidence intervals from N resamples of the samples (e.g. 1000)"
    )
    p.add_argument("--ci-seed", type=seed_arg(), default=0, help="seed of the bootstrap resamples (default 0)")
    p.add_argument("--tune-split", default="val", choices=["val", "train", "test"], help="split to tune on (default val)")
    p.add_argument("--min-pos", type=int_at_least(0), default=5, help="classes with fewer tuning positives use the global threshold")
    p.add_argument("--allow-same-split", action="store_true", help="allow tuning and reporting on the same split")
    p.add_argument("--tta", help="test-time augmentation: 'flip' (image + horizontal flip), 'flip4', or the config's test_cfg.tta")
    p.add_argument(
        "--report", action=argparse.BooleanOptionalAction, default=True, help="write report.html, the evaluation report (default: on)"
    )
    p.add_argument("--gallery-k", type=int_at_least(0), default=6, help="report: false positives and misses shown per class (default 6)")
    p.add_argument(
        "--gallery-classes", type=int_at_least(0), default=100, help="report: at most this many classes get a gallery, lowest AP first"
    )
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--trust-config",
        action="store_true",
        help="let the checkpoint's stored config import its custom_imports and open pipe:/URL shards (only for checkpoints you trust)",
    )
    args = p.parse_args(argv)
    if len(args.paths) > 2:
        p.error("expected CONFIG CHECKPOINT or CHECKPOINT")
    if args.tune_thr in ("precision", "recall", "specificity") and args.tune_target is None:
        p.error(f"--tune-thr {args.tune_thr} needs --tune-target (the {args.tune_thr} to reach, in (0, 1], e.g. 0.9)")
    if args.tune_target is not None and args.tune_thr in (None, "f1"):
        p.error("--tune-target is the goal of --tune-thr precision, recall or specificity; f1 has none (it takes the best F1)")
    return args


@cli_main
def main(argv=None) -> None:
    args = parse_args(argv)
    if len(args.paths) == 2:
        config, checkpoint = args.paths
        cfg = prepare_config(config, args.cfg_options, work_dir=args.work_dir)
    else:  # the checkpoint's own config (data: checked before use), with --cfg-options applied to it
        config, checkpoint, cfg = None, args.paths[0], None
    thresholds = ThresholdOptions(
        thr=args.thr if args.thr is not None else args.thr_file,
        tune=args.tune_thr,
        target=args.tune_target,
        split=args.tune_split,
        min_pos=args.min_pos,
        allow_same_split=args.allow_same_split,
    )
    page = ReportOptions(write=args.report, gallery_k=args.gallery_k, gallery_classes=args.gallery_classes, config=config)
    metrics = test_model(
        cfg,
        checkpoint,
        split=args.split,
        work_dir=args.work_dir,
        out=args.out,
        thresholds=thresholds,
        report=page,
        ci=args.ci,
        ci_seed=args.ci_seed,
        tta=args.tta,
        on_report=print,
        cfg_options=None if config else args.cfg_options,
        trust_config=args.trust_config,
    )
    print(f"wrote {len(metrics['written'])} files to {Path(metrics['written'][0]).parent}:")
    for path in metrics["written"]:
        print(f"  {path}")


if __name__ == "__main__":
    main()
