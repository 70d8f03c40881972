"""Label errors on the demo set: how well the folds + cleanlab workflow finds injected noise, and
which way of using its flags trains the best model.

python benchmarks/bench_label_issues.py [--images 4000] [--noise missing=0.15,extra=0.03] [--folds 5]
                                        [--epochs 12] [--fold-epochs N] [--fold-tta flip4] [--seeds 0 1 2] [--fold-seeds 0]
                                        [--recipe demo|plain]
                                        [--policies noisy missing_ignore ...] [--second-round reviewed]
                                        [--out work_dirs/bench_label_issues]

1. Generates the shapes set (``--images`` training images, 48 px; val and test clean), drops
   each positive of the training labels with probability ``missing`` and adds ``extra`` x N wrong
   positives (the truth is kept in train_noise.csv).
2. ``--folds K`` on the noisy labels (the quick start's ResNet-18 recipe, BCE), timed: the fold
   overhead is the run's time beyond the time its K trainings took. ``--fold-epochs N``: the fold
   models train N epochs (default ``--epochs``): a fold sees (K - 1) / K of the data, so fewer
   steps per epoch than the final model, and a model short of convergence scores the samples it
   holds out worse than it could. ``--fold-seeds a b ...``: K
   folds per seed, and the finder reads the mean of their out-of-fold scores (each seed alone is
   measured too). ``--fold-tta flip4``: the held-out folds are scored with test-time augmentation
   (kept folds scored otherwise are scored again, not retrained).
3. The finder on the out-of-fold scores: precision and recall of the flagged pairs against the truth,
   and of the same number of pairs ranked by |label - score| (the plain baseline); the same for
   each of cleanlab's filter methods, alone and with ``min_class_ap`` 0.7 and 0.8.
4. Test mAP (clean test labels) of a model trained per seed on: the noisy labels; every flag
   flipped; only "missing" flags flipped; only "missing" flags made unknown (-1); every flagged
   pair made unknown; the flags reviewed by someone who knows the truth (the wrong labels among
   them flipped, the rest kept); the true labels; and ``noisy_asl``: the noisy labels with the
   asymmetric loss (made for missing positives).
5. ``--second-round POLICY``: folds again on the labels with that policy's fixes, the finder on the
   new out-of-fold scores (precision and recall against the wrong labels left), and a training on
   both rounds' fixes (``POLICY_round2``).

Prints a table and writes results.json. Run again with the same --out, it keeps the finished folds
and trainings. Measured figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from mlcls.apis import test_model, train_model  # noqa: E402
from mlcls.apis.config import prepare_config  # noqa: E402
from mlcls.apis.folds import combine_seeds, run_folds  # noqa: E402
from mlcls.datasets.label_fixes import write_label_fixes  # noqa: E402
from mlcls.datasets.shapes import inject_label_noise, make_shapes_dataset  # noqa: E402
from mlcls.evaluation.label_issues import FILTERS, find_label_issues, policy_fixes  # noqa: E402
from mlcls.report.store import load_eval_scores  # noqa: E402
from mlcls.utils.misc import get_logger  # noqa: E402


def config(
    root: Path,
    work_dir: Path,
    ann_file: str,
    epochs: int,
    seed: int,
    fixes: Path | None = None,
    loss: str = "BCEWithLogitsLoss",
    recipe: str = "demo",
) -> dict:
    """The training config of one run: ``demo`` is the quick start's own config
    (configs/demo/resnet18_shapes.yaml: batch 64, AdamW 2e-3, wd 0.05, flips, repeat-factor
    sampling) pointed at the benchmark's data; ``plain`` a plain recipe (batch 32, AdamW 1e-3,
    default sampler), the one the first measurements used. Both validate once, at the end, and
    use the final weights: the benchmark's validation labels are clean, a user's would not be."""
    if recipe == "demo":
        cfg = prepare_config(ROOT / "configs/demo/resnet18_shapes.yaml", work_dir=str(work_dir), seed=seed)
        for split, ann in (("train", ann_file), ("val", "val.csv"), ("test", "test.csv")):
            dl = cfg[f"{split}_dataloader"]
            dl["persistent_workers"] = False
            dl["dataset"].update(data_root=str(root), ann_file=ann)
            if fixes is not None and split == "train":
                dl["dataset"]["label_fixes"] = str(fixes)
        cfg["model"]["head"]["loss"] = {"type": loss}
        cfg["train_cfg"] = {"max_epochs": epochs, "val_interval": epochs}
        cfg["default_hooks"]["logger"].update(interval=50, progress_bar=False, tensorboard=False)
        cfg["default_hooks"]["checkpoint"].update(interval=epochs, save_best=None)
        return cfg
    pipe = [{"type": "ToFloatNormalize"}]

    def loader(split, ann, shuffle, pipeline):
        ds = {"type": "CSVDataset", "data_root": str(root), "ann_file": ann, "classes": "classes.txt", "pipeline": pipeline}
        if fixes is not None and split == "train":
            ds["label_fixes"] = str(fixes)
        return {"batch_size": 32, "num_workers": "auto", "sampler": {"type": "DefaultSampler", "shuffle": shuffle}, "dataset": ds}

    return {
        "model": {"type": "ImageClassifier", "backbone": {"type": "ResNet", "depth": 18},
                  "head": {"type": "MultiLabelLinearClsHead", "loss": {"type": loss}}},
        "train_dataloader": loader("train", ann_file, True, [{"type": "RandomHorizontalFlip"}, *pipe]),
        "val_dataloader": loader("val", "val.csv", False, pipe),
        "test_dataloader": loader("test", "test.csv", False, pipe),
        "val_evaluator": {"type": "MultiLabelMetric"},
        "optimizer": {"type": "AdamW", "lr": 1e-3, "weight_decay": 1e-4},
        "param_scheduler": [{"type": "LinearLR", "start_factor": 0.1, "end": 1}, {"type": "CosineAnnealingLR"}],
        "train_cfg": {"max_epochs": epochs, "val_interval": epochs},
        "default_hooks": {"logger": {"type": "LoggerHook", "interval": 50, "progress_bar": False},
                          "checkpoint": {"type": "CheckpointHook", "interval": epochs, "save_best": None}},
        "work_dir": str(work_dir), "seed": seed, "device": "auto",
    }  # fmt: skip


def precision_recall(found: set, wrong: set) -> dict:
    """How many of the ``found`` pairs are ``wrong`` labels, and how many of those were found."""
    hit = len(found & wrong)
    return {"precision": hit / max(len(found), 1), "recall": hit / max(len(wrong), 1)}


def fix_rows(pairs, paths, classes, given, policy: str, truth: set | None = None) -> dict:
    """``{(path, class): label}``: the fixes of the flagged pairs under one policy: the library's
    automatic ones (:data:`~mlcls.evaluation.label_issues.FIX_POLICIES`: ``all``, ``missing_only``,
    ``ignore``, ``missing_ignore``), or ``reviewed``: a reviewer who looks at every flag and knows
    the truth (the flags that are wrong labels flipped, the others rejected). The ceiling of the
    review workflow."""
    if policy == "reviewed":
        return {(paths[r], classes[c]): 1 - g for r, c, g, *_ in pairs if (r, c) in truth}
    return {(paths[r], classes[c]): label for r, c, label in policy_fixes(pairs, policy)}


def write_fixes(path: Path, fixes: dict) -> Path:
    """``label_fixes.csv`` (path, class, label) of :func:`fix_rows`' fixes."""
    return write_label_fixes(path, ((pth, c, label) for (pth, c), label in fixes.items()))


def folds_scores(make_cfg, base: Path, k: int, seeds: list[int], train, tta: str | None = None) -> dict:
    """K folds per seed in ``base/seed_<s>`` (finished ones kept) and the out-of-fold scores: the
    one seed's, or with several the mean of theirs (``combine_seeds``, as ``--folds --seeds``)."""
    for seed in seeds:
        wd = base / f"seed_{seed}"
        run_folds(make_cfg(wd, seed), k, train, resume=(wd / "folds.csv").exists(), tta=tta)
    if len(seeds) == 1:
        return load_eval_scores(base / f"seed_{seeds[0]}" / "oof_scores.npz")
    combine_seeds(base, seeds)
    return load_eval_scores(base / "oof_scores.npz")


POLICIES = ("noisy", "flip_all", "missing_only", "missing_ignore", "ignore", "reviewed", "true")


def print_finder(results: dict, folds: str) -> None:
    f = results["finder"]
    print(
        f"folds: {results['folds_time_s']:.0f} s for {folds} folds, of which training {results['fold_trainings_s']:.0f} s: "
        f"overhead {100 * results['fold_overhead']:.1f} %"
    )
    print(f"finder: {f['flagged']} flagged of {f['wrong_labels']} wrong labels: precision {100 * f['precision']:.1f} %, recall {100 * f['recall']:.1f} %"
          f" (|label - score| at the same count: {100 * results['baseline_abs_diff']['precision']:.1f} % / {100 * results['baseline_abs_diff']['recall']:.1f} %)",
          flush=True)  # fmt: skip
    for name in ("top_precision", "top_precision_by_quality"):
        if name in f:
            print(f"  {name}: " + ", ".join(f"first {k}: {100 * v:.1f} %" for k, v in f[name].items()))
    for seed, m in results.get("finder_per_fold_seed", {}).items():
        print(
            f"  folds of seed {seed} alone: {m['flagged']} flagged: precision {100 * m['precision']:.1f} %, recall {100 * m['recall']:.1f} %"
        )
    for name, m in results.get("finder_methods", {}).items():
        print(f"  {name:<40} {m['flagged']:>5} flagged: precision {100 * m['precision']:.1f} %, recall {100 * m['recall']:.1f} %")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--noise", default="missing=0.15,extra=0.03")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--fold-epochs", type=int, help="the fold models' epochs (default: --epochs)")
    p.add_argument("--fold-tta", help="score the held-out folds with test-time augmentation (flip, flip4), as --folds K --tta")
    p.add_argument(
        "--recipe", choices=("demo", "plain"), default="demo", help="demo: the quick start's config; plain: batch 32, AdamW 1e-3"
    )
    p.add_argument(
        "--policies",
        nargs="+",
        default=list(POLICIES),
        choices=list(POLICIES) + ["noisy_asl"],
        help="the trainings to compare (noisy_asl: the noisy labels with the asymmetric loss)",
    )
    p.add_argument(
        "--second-round", choices=[q for q in POLICIES if q not in ("noisy", "true")],
        help="after this policy's fixes, folds and the finder again on the fixed labels; trains <policy>_round2 on both rounds' fixes",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--fold-seeds", type=int, nargs="+", default=[0],
        help="K folds per seed; with several, the finder reads the mean of their out-of-fold scores (as --folds --seeds)",
    )  # fmt: skip
    p.add_argument("--out", default="work_dirs/bench_label_issues")
    args = p.parse_args()
    get_logger()
    out = Path(args.out)
    noise = dict((k, float(v)) for k, v in (part.split("=") for part in args.noise.split(",")))
    root = make_shapes_dataset(
        out / "data", seed=0, splits={"train": args.images, "val": max(200, args.images // 8), "test": max(400, args.images // 4)}
    )
    inject_label_noise(root, "train", seed=0, **noise)
    results: dict = {"config": vars(args)}

    # 2. folds, timed
    trained = []

    def train(c, resume):
        t = time.perf_counter()
        train_model(c, resume="auto" if resume else None, overwrite=True)
        trained.append(time.perf_counter() - t)

    folds_label = f"{len(args.fold_seeds)} x {args.folds}" if len(args.fold_seeds) > 1 else str(args.folds)
    fold_epochs = args.fold_epochs or args.epochs
    folds_dir = "folds" if fold_epochs == args.epochs else f"folds_{fold_epochs}ep"
    t0 = time.perf_counter()
    oof = folds_scores(lambda wd, seed: config(root, wd, "train_noisy.csv", fold_epochs, seed, recipe=args.recipe), out / folds_dir,
                       args.folds, args.fold_seeds, train, args.fold_tta)  # fmt: skip
    total = time.perf_counter() - t0
    earlier = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    if trained:
        results["folds_time_s"] = total
        results["fold_trainings_s"] = sum(trained)
        results["fold_overhead"] = total / sum(trained) - 1
    else:  # every fold was finished by an earlier run: its timing stands
        results.update({k: earlier[k] for k in ("folds_time_s", "fold_trainings_s", "fold_overhead")})

    # 3. the finder against the truth
    classes, paths = oof.classes, oof.paths
    given = oof.targets.numpy().astype(int)
    res = find_label_issues(oof.scores.numpy(), given)
    row_of = {Path(pth).name: i for i, pth in enumerate(paths)}
    truth = set()
    with open(root / "train_noise.csv", newline="") as f:
        for r in csv.DictReader(f):
            truth.add((row_of[Path(r["path"]).name], classes.index(r["class"])))
    flagged = {(r, c) for r, c, *_ in res["pairs"]}
    n = len(flagged)
    results["finder"] = {"flagged": n, "wrong_labels": len(truth), **precision_recall(flagged, truth)}
    if len(args.fold_seeds) > 1:  # each seed's folds alone, against the mean of their scores above
        results["finder_per_fold_seed"] = {}
        for seed in args.fold_seeds:
            one = load_eval_scores(out / folds_dir / f"seed_{seed}" / "oof_scores.npz")
            found = {(r, c) for r, c, *_ in find_label_issues(one.scores.numpy(), given)["pairs"]}
            results["finder_per_fold_seed"][seed] = {"flagged": len(found), **precision_recall(found, truth)}
    # how often the first k pairs of the ranking (what a reviewer looks at first) are wrong labels
    by_quality = sorted(res["pairs"], key=lambda x: x[4])
    for name, ranked in (("top_precision", res["pairs"]), ("top_precision_by_quality", by_quality)):
        results["finder"][name] = {k: sum((r, c) in truth for r, c, *_ in ranked[:k]) / k for k in (100, 200, 400, 800) if k <= n}
    # cleanlab's other methods, with and without leaving out the classes the model has not learned
    results["finder_methods"] = {}
    for method in FILTERS:
        for floor in (0.0, 0.7, 0.8):
            found = {(r, c) for r, c, *_ in find_label_issues(oof.scores.numpy(), given, min_class_ap=floor, filter_by=method)["pairs"]}
            results["finder_methods"][f"{method} min_class_ap={floor:g}"] = {"flagged": len(found), **precision_recall(found, truth)}
    diff = np.abs(given - oof.scores.numpy())
    top = {divmod(int(i), given.shape[1]) for i in np.argsort(-diff, axis=None)[:n]}
    results["baseline_abs_diff"] = precision_recall(top, truth)
    (out / "results.json").write_text(json.dumps(results, indent=1))  # the finder's figures before the long part
    print_finder(results, folds_label)

    # 5 (before the trainings, which it adds to). A second round: folds again on the labels the first
    # round's fixes left, the finder on their scores, and the fixes of both rounds together.
    round2_fixes = {}
    if args.second_round:
        pol = args.second_round
        first = fix_rows(res["pairs"], paths, classes, given, pol, truth)
        r2 = out / f"round2_{pol}" / folds_dir
        before, t0 = len(trained), time.perf_counter()
        first_csv = write_fixes((out / f"fixes_{pol}.csv").resolve(), first)
        oof2 = folds_scores(lambda wd, seed: config(root, wd, "train_noisy.csv", fold_epochs, seed, first_csv, recipe=args.recipe),
                            r2, args.folds, args.fold_seeds, train, args.fold_tta)  # fmt: skip
        if list(oof2.paths) != list(paths):
            raise SystemExit(f"{r2}: the second round scored other samples than the first")
        given2 = oof2.targets.numpy().astype(int)  # the first round's fixes applied (-1: made unknown)
        true = given.copy()
        for r, c in truth:
            true[r, c] = 1 - given[r, c]
        left = {(int(r), int(c)) for r, c in zip(*np.nonzero((given2 >= 0) & (given2 != true)))}
        res2 = find_label_issues(oof2.scores.numpy(), given2)
        found = {(r, c) for r, c, *_ in res2["pairs"]}
        results["second_round"] = {
            "policy": pol,
            "folds_time_s": time.perf_counter() - t0 if len(trained) > before else None,
            "wrong_labels_left": len(left),
            "flagged": len(found),
            **precision_recall(found, left),
        }
        # a pair fixed in both rounds keeps the second round's label
        both = {**first, **fix_rows(res2["pairs"], paths, classes, given2, pol, left)}
        round2_fixes[f"{pol}_round2"] = write_fixes((out / f"fixes_{pol}_round2.csv").resolve(), both)
        (out / "results.json").write_text(json.dumps(results, indent=1))

    # 4. policies, test mAP per seed
    policies = args.policies + list(round2_fixes)
    # policies this run does not train keep the figures an earlier run measured
    results["test_mAP"] = {k: v for k, v in earlier.get("test_mAP", {}).items() if k not in policies}
    for policy in policies:
        maps = []
        for seed in args.seeds:
            wd = out / policy / f"seed_{seed}"
            fixes = round2_fixes.get(policy)
            if fixes is None and policy not in ("noisy", "true", "noisy_asl"):
                rows = fix_rows(res["pairs"], paths, classes, given, {"flip_all": "all"}.get(policy, policy), truth)
                fixes = write_fixes((out / f"fixes_{policy}.csv").resolve(), rows)
            ann = "train.csv" if policy == "true" else "train_noisy.csv"
            loss = "AsymmetricLoss" if policy == "noisy_asl" else "BCEWithLogitsLoss"
            done = wd / "test_mAP.json"
            if not done.exists():
                cfg = config(root, wd, ann, args.epochs, seed, fixes, loss, args.recipe)
                train_model(copy.deepcopy(cfg), overwrite=True)
                m = test_model(cfg, str(wd / "latest.pth"), work_dir=str(wd / "test"))
                done.write_text(json.dumps({"mAP": m["mAP"]}))
            maps.append(json.loads(done.read_text())["mAP"])
        results["test_mAP"][policy] = {
            "mean": float(np.mean(maps)),
            "std": float(np.std(maps, ddof=1)) if len(maps) > 1 else 0.0,
            "runs": maps,
        }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print_finder(results, folds_label)
    if "second_round" in results:
        r2 = results["second_round"]
        print(f"second round ({r2['policy']}): {r2['flagged']} flagged of {r2['wrong_labels_left']} wrong labels left: "
              f"precision {100 * r2['precision']:.1f} %, recall {100 * r2['recall']:.1f} %")  # fmt: skip
    for policy, v in results["test_mAP"].items():
        print(f"{policy:<13} test mAP {v['mean']:.2f} ± {v['std']:.2f}  ({', '.join(f'{x:.2f}' for x in v['runs'])})")


if __name__ == "__main__":
    main()
