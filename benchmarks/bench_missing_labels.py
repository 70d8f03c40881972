"""Learning through missing labels without a reviewer: the missing-label losses side by side.

python benchmarks/bench_missing_labels.py [--images 3000] [--epochs 12] [--seeds 0 1 2]
                                          [--settings missing15 missing60 single partial30]
                                          [--methods bce asl focal hill splc ll_r ll_ct ll_cp selective]
                                          [--finder missing_ignore] [--folds 5] [--out work_dirs/bench_missing_labels]

Each setting corrupts the demo's training labels (val and test stay clean):

- ``missing15``: 15 % of positives dropped and 3 % x N wrong positives added;
- ``missing60``: 60 % of positives dropped ("40 % of labels left", as the Hill / SPLC paper);
- ``single``: one positive per image kept (single positive labels);
- ``partialQ``: each entry left unannotated (-1) with probability Q % (as Open Images).

Every method trains the quick start's recipe (configs/demo/resnet18_shapes.yaml) for the same
epochs on each setting, per seed, plus BCE on the true labels (``clean``). ``--finder POLICY``
adds the folds + finder + ``--write-fixes POLICY`` without review (K more trainings per seed).
Prints, per setting: test mAP (clean test labels) mean ± std over the seeds, the share of the
noise's cost recovered ((method - noisy BCE) / (clean BCE - noisy BCE)), and each method's time
per epoch against BCE's in the same run. Writes results.json; a run again with the same --out
keeps finished trainings. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from bench_label_issues import config  # noqa: E402

from mlcls.apis import test_model, train_model  # noqa: E402
from mlcls.apis.folds import run_folds  # noqa: E402
from mlcls.datasets.label_fixes import write_label_fixes  # noqa: E402
from mlcls.datasets.shapes import inject_label_noise, make_shapes_dataset  # noqa: E402
from mlcls.evaluation.label_issues import find_label_issues, policy_fixes  # noqa: E402
from mlcls.report.store import load_eval_scores  # noqa: E402
from mlcls.utils.misc import get_logger, write_json  # noqa: E402

#: each method's loss (the head's ``loss``); the paper's settings where they give one
METHODS = {
    "bce": {"type": "BCEWithLogitsLoss"},
    "asl": {"type": "AsymmetricLoss"},
    "focal": {"type": "FocalLoss"},
    "hill": {"type": "HillLoss"},
    "splc": {"type": "SPLCLoss", "tau": 0.6, "warmup": 1},
    "ll_r": {"type": "LargeLoss", "mode": "reject", "delta_rel": 0.002},
    "ll_ct": {"type": "LargeLoss", "mode": "correct", "delta_rel": 0.002},
    "ll_cp": {"type": "LargeLoss", "mode": "correct_permanent", "delta_rel": 0.002},
    "selective": {"type": "SelectiveLoss"},
}


def setting_noise(name: str) -> dict:
    """inject_label_noise's arguments for a setting name."""
    if name == "missing15":
        return {"missing": 0.15, "extra": 0.03}
    if name == "missing60":
        return {"missing": 0.6}
    if name == "single":
        return {"single": True}
    if name.startswith("partial"):
        return {"unknown": int(name[len("partial") :]) / 100}
    raise SystemExit(f"--settings: unknown setting {name!r} (missing15, missing60, single, partialQ)")


def train_and_test(root: Path, wd: Path, ann: str, epochs: int, seed: int, loss: dict, fixes: Path | None) -> dict:
    """Test mAP of one training (kept when finished) and its time per epoch."""
    done = wd / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = config(root, wd, ann, epochs, seed, fixes=fixes)
    cfg["model"]["head"]["loss"] = loss
    start = time.perf_counter()
    train_model(cfg, overwrite=True)
    seconds = time.perf_counter() - start
    metrics = test_model(None, str(wd / "latest.pth"), work_dir=str(wd / "test"), report=False)
    result = {"mAP": metrics["mAP"], "seconds_per_epoch": seconds / epochs}
    write_json(result, done)
    return result


def finder_fixes(root: Path, out: Path, ann: str, epochs: int, seed: int, folds: int, policy: str, base_fixes: Path | None) -> Path:
    """K folds on the noisy labels, the finder, and the fixes ``policy`` makes of its flags (no review)."""
    wd = out / f"folds_seed{seed}"
    cfg = config(root, wd, ann, epochs, seed, fixes=base_fixes)
    run_folds(cfg, folds, lambda c, r: train_model(c, resume="auto" if r else None, overwrite=not r), resume=(wd / "folds.csv").exists())
    run = load_eval_scores(wd / "oof_scores.npz")
    res = find_label_issues(run.scores.numpy(), run.targets.numpy())
    fixes = {}  # (path, class) -> label; the policy's fix wins over the base file's for the same pair
    if base_fixes is not None:  # partial annotation: the unannotated entries stay unknown beneath the policy's fixes
        fixes.update({(p, c): v for p, c, v in (line.rsplit(",", 2) for line in base_fixes.read_text(encoding="utf-8").splitlines()[1:])})
    fixes.update({(str(Path(run.paths[r]).relative_to(root)), run.classes[c]): v for r, c, v in policy_fixes(res["pairs"], policy)})
    path = write_label_fixes(out / f"fixes_{policy}_seed{seed}.csv", ((p, c, v) for (p, c), v in fixes.items()))
    return path


def summarise(results: dict, methods: list[str]) -> list[str]:
    """The table's lines for one setting."""
    noisy, clean = np.mean(results["bce"]["mAP"]), np.mean(results["clean"]["mAP"])
    bce_time = np.mean(results["bce"]["seconds_per_epoch"])
    lines = [f"  {'method':<22} {'test mAP':>16}  {'recovered':>9}  {'time/epoch vs BCE':>17}"]
    for name in [*methods, "clean"]:
        r = results.get(name)
        if not r:
            continue
        m, s = np.mean(r["mAP"]), np.std(r["mAP"], ddof=1) if len(r["mAP"]) > 1 else 0.0
        rec = (m - noisy) / (clean - noisy) if name not in ("bce", "clean") and clean != noisy else None
        lines.append(f"  {name:<22} {m:>8.2f} ± {s:<5.2f}  {'' if rec is None else f'{100 * rec:>8.0f}%':>9}  "
                     f"{np.mean(r['seconds_per_epoch']) / bce_time:>16.2f}x")  # fmt: skip
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--settings", nargs="+", default=["missing15", "missing60", "single", "partial30"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--finder", metavar="POLICY", help="also the folds + finder + this --write-fixes policy, no review")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", default="work_dirs/bench_missing_labels")
    args = p.parse_args()
    get_logger()
    out = Path(args.out)
    root = make_shapes_dataset(out / "data", seed=0, size=48, splits={"train": args.images, "val": 450, "test": 450})
    table, all_results = [], {}
    for setting in args.settings:
        noise = setting_noise(setting)
        ann = inject_label_noise(root, "train", seed=0, name=f"train_{setting}", **noise).name
        base_fixes = root / f"train_{setting}_unknown_fixes.csv" if noise.get("unknown") else None
        results: dict = {}
        runs = [(name, METHODS[name]) for name in args.methods] + [("clean", METHODS["bce"])]
        for seed in args.seeds:
            for name, loss in runs:
                # the clean run trains on the true labels: one per seed, shared by every setting
                wd = out / "clean" / f"seed{seed}" if name == "clean" else out / setting / f"{name}_seed{seed}"
                r = train_and_test(root, wd, "train.csv" if name == "clean" else ann, args.epochs, seed,
                                   loss, None if name == "clean" else base_fixes)  # fmt: skip
                for key, v in r.items():
                    results.setdefault(name, {}).setdefault(key, []).append(v)
            if args.finder:
                fixes = finder_fixes(root, out / setting, ann, args.epochs, seed, args.folds, args.finder, base_fixes)
                r = train_and_test(root, out / setting / f"finder_{args.finder}_seed{seed}", ann, args.epochs, seed, METHODS["bce"], fixes)
                for key, v in r.items():
                    results.setdefault(f"finder_{args.finder}", {}).setdefault(key, []).append(v)
        all_results[setting] = results
        names = args.methods + ([f"finder_{args.finder}"] if args.finder else [])
        table += [
            f"{setting} ({args.images} images, {args.epochs} epochs, seeds {' '.join(map(str, args.seeds))}):",
            *summarise(results, names),
        ]
        write_json(all_results, out / "results.json")
    print("\n".join(table))


if __name__ == "__main__":
    main()
