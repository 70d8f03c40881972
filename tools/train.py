"""Train a model from a config: python tools/train.py CONFIG [--work-dir DIR] [--cfg-options k=v ...]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    p.add_argument(
        "--workers", type=int_at_least(1), default=1, metavar="N",
        help="with --folds / --seeds: run the trainings in N worker processes side by side, each with 1/N of the cores as its "
        "threads (or one GPU each), then merge them; --resume keeps the finished ones",
    )  # fmt: skip
    p.add_argument(
        "--part", type=int_at_least(0), metavar="I",
        help="with --folds / --seeds: run only training I of them (seed-major: seed seeds[I // K], fold I %% K), e.g. "
        "--part $SLURM_ARRAY_TASK_ID in a job array; a finished part is kept, a stopped one resumes. Then --merge",
    )  # fmt: skip
    p.add_argument("--merge", action="store_true",
                   help="with --folds / --seeds: gather the parts run with --part (every part finished, from the same config, split "
                        "and labels) into the files a run in one process writes")  # fmt: skip
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
    many = [f for f, on in (("--workers", args.workers > 1), ("--part", args.part is not None), ("--merge", args.merge)) if on]
    if many and not (args.folds or args.seeds):
        p.error(f"{many[0]}: only with --folds K or --seeds ... (a single training spreads over GPUs with torchrun)")
    if len(many) > 1:
        p.error(f"{many[0]} and {many[1]}: one at a time (--workers runs the parts and merges them itself)")
    if many and args.launcher != "none" and not args.part:
        p.error(f"{many[0]}: not under torchrun (--launcher pytorch); a part (--part I) may be a torchrun job")
    if args.part is not None and args.overwrite:
        p.error("--part: not with --overwrite (a part would remove the other parts' work); start in a new --work-dir")
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
        if args.folds or args.seeds:
            many_trainings(args, cfg)
        else:
            train_model(cfg, resume=args.resume, launcher=args.launcher, overwrite=args.overwrite)
        clean = True
    finally:
        shutdown(clean)


def many_trainings(args: argparse.Namespace, cfg: dict) -> None:
    """--folds K and/or --seeds ...: in this process one after the other, over --workers, one --part, or --merge."""
    from mlcls.apis.parts import merge_parts, part_name, parts_of, run_workers, start_parts, train_part
    from mlcls.schema import get
    from mlcls.utils.dist import init_distributed

    def train(c: dict, resume: bool) -> dict:
        return train_model(c, resume="auto" if resume else None, launcher=args.launcher, overwrite=args.overwrite)

    if args.launcher == "pytorch":  # the folds' own checks and files are shared by the ranks from the start
        init_distributed(get(cfg, "dist_backend"))
    where = f"{cfg['work_dir']}/seed_<s>" if args.seeds and args.folds else cfg["work_dir"]
    if args.part is not None:
        name = train_part(cfg, args.folds, args.seeds, args.part, train, tta=args.tta)
        print(f"part {args.part} ({name}) is finished in {where}; once every part is: the same command with --merge instead of --part")
        return
    if args.workers > 1:
        parts = parts_of(args.folds, args.seeds)
        start_parts(cfg, args.folds, args.seeds, resume=bool(args.resume), overwrite=args.overwrite, tta=args.tta)
        run_workers([part_command(args, cfg, i) for i in range(len(parts))], min(args.workers, len(parts)),
                    Path(cfg["work_dir"]) / "parts", [part_name(p) for p in parts])  # fmt: skip
    if args.workers > 1 or args.merge:
        print(merge_parts(cfg, args.folds, args.seeds, ci=args.ci, tta=args.tta))
    elif args.folds:
        from mlcls.apis.folds import run_folds
        from mlcls.apis.parts import folds_of_seeds

        def run(c: dict) -> dict:
            return run_folds(c, args.folds, train, resume=bool(args.resume), ci=args.ci, tta=args.tta, overwrite=args.overwrite)

        for line in folds_of_seeds(cfg, args.seeds, run):
            print(line)
    else:
        from mlcls.apis.seeds import format_summary, run_seeds

        if args.launcher != "none" or args.resume:
            raise DataError("--seeds runs the seeds one after the other in this process: give --workers N (which takes --resume), "
                            "or start one torchrun job per --seed")  # fmt: skip
        print(format_summary(run_seeds(cfg, args.seeds, train)))
    if args.folds:
        print(f"wrote folds.csv, oof_scores.npz and folds_summary.json/.txt in {where}" +
              (f" (and their mean oof_scores.npz in {cfg['work_dir']})" if args.seeds else ""))  # fmt: skip
    else:
        print(f"wrote {cfg['work_dir']}/seeds_summary.json and seeds_summary.txt")


def part_command(args: argparse.Namespace, cfg: dict, index: int) -> list[str]:
    """The command line of part ``index``: this command's options (the work dir as resolved), run as that part alone."""
    cmd = [sys.executable, str(Path(__file__).resolve()), args.config, "--work-dir", str(cfg["work_dir"]), "--part", str(index)]
    if args.cfg_options:
        cmd += ["--cfg-options", *args.cfg_options]
    for flag, value in (("--seed", args.seed), ("--folds", args.folds), ("--tta", args.tta), ("--device", args.device)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.seeds:
        cmd += ["--seeds", *map(str, args.seeds)]
    cmd += [flag for flag, on in (("--amp", args.amp), ("--auto-scale-lr", args.auto_scale_lr)) if on]
    return cmd


if __name__ == "__main__":
    main()
