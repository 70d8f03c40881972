"""Many trainings at once: the same --folds run (and optionally a sweep) serial and over N workers.

python benchmarks/bench_workers.py [--images 3000] [--epochs 12] [--folds 3] [--workers 2] [--sweep]
                                   [--out work_dirs/bench_workers]

Trains the quick start's recipe (configs/demo/resnet18_shapes.yaml) on the demo data as
``tools/train.py --folds K`` in one process, then with ``--workers N``, each a fresh command
as a user runs it (the serial run with torch's default threads, the workers with their share).
Prints the wall time of each, their ratio against the goal (at most 1/N + 5 % of the serial
time where cores or GPUs are to spare; on a CPU machine whose cores one training already uses,
not slower than serial), and how far the merged outputs are from the serial run's
(out-of-fold rows, largest score difference, pooled mAP). With ``--sweep``: the same for
``tools/sweep.py`` over configs/spaces/losses.yaml scored by the folds, and the pick of each.
Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlcls.datasets.shapes import make_shapes_dataset  # noqa: E402
from mlcls.report.store import load_eval_scores  # noqa: E402


def timed(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` (its output to ``log``) with the machine's default threads; its wall time in seconds."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    start = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {r.returncode}); see {log}")
    return time.perf_counter() - start


def compare_folds(a: Path, b: Path) -> str:
    one, two = load_eval_scores(a / "oof_scores.npz"), load_eval_scores(b / "oof_scores.npz")
    same_rows = one.paths == two.paths
    diff = float((one.scores - two.scores).abs().max())
    pa, pb = (json.loads((d / "folds_summary.json").read_text())["pooled"]["mAP"] for d in (a, b))
    return f"rows in the same order: {same_rows}; largest score difference {diff:.2e}; pooled mAP {pa:.2f} vs {pb:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sweep", action="store_true", help="also tools/sweep.py over configs/spaces/losses.yaml, serial and over the workers")
    p.add_argument("--out", default="work_dirs/bench_workers")
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = make_shapes_dataset(out / "data", seed=0, size=48, splits={"train": args.images, "val": 450, "test": 450})
    config = str(ROOT / "configs/demo/resnet18_shapes.yaml")
    opts = ["--cfg-options", f"train_dataloader.dataset.data_root={root}", f"val_dataloader.dataset.data_root={root}",
            f"test_dataloader.dataset.data_root={root}", f"train_cfg.max_epochs={args.epochs}", f"train_cfg.val_interval={args.epochs}",
            "default_hooks.checkpoint.max_keep_ckpts=1"]  # fmt: skip
    lines = [f"{args.images} images, {args.epochs} epochs, {args.folds} folds, {os.cpu_count()} cores"]
    runs = {}
    for name, extra in (("serial", []), (f"{args.workers} workers", ["--workers", str(args.workers)])):
        wd = out / f"folds_{name.replace(' ', '_')}"
        runs[name] = (wd, timed([sys.executable, "tools/train.py", config, "--folds", str(args.folds), "--work-dir", str(wd),
                                 "--overwrite", *extra, *opts], out / f"folds_{name.replace(' ', '_')}.log"))  # fmt: skip
    (a, ta), (b, tb) = runs.values()
    goal = 1 / args.workers + 0.05
    lines += [f"--folds {args.folds}: serial {ta:.0f} s, {args.workers} workers {tb:.0f} s: ratio {tb / ta:.2f} (goal with cores to "
              f"spare: <= {goal:.2f}; on a CPU one training fills: <= 1.00)", "  " + compare_folds(a, b)]  # fmt: skip
    if args.sweep:
        space = str(ROOT / "configs/spaces/losses.yaml")
        for name, extra in (("serial", ["--workers", "1"]), (f"{args.workers} workers", ["--workers", str(args.workers)])):
            wd = out / f"sweep_{name.replace(' ', '_')}"
            t = timed([sys.executable, "tools/sweep.py", config, space, "--folds", str(args.folds), "--work-dir", str(wd), *extra, *opts],
                      out / f"sweep_{name.replace(' ', '_')}.log")  # fmt: skip
            best = (wd / "best_config.yaml").read_text()
            pick = next((ln.strip() for ln in best.splitlines() if ln.strip().startswith("loss:")), "?")
            lines.append(f"sweep ({name}): {t:.0f} s; its pick: {pick} (table: {wd / 'trials.csv'})")
    print("\n".join(lines))
    (out / "results.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
