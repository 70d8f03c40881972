"""The sparse-30 experiment: plain BCE vs its remedies on 30 sparse, noisy labels.

python benchmarks/sparse30.py [--variants bce focal ...] [--out work_dirs/sparse30] [--epochs N] [--seeds 0 1 2]

Generates data/sparse30 if needed, trains every config of configs/sparse30/ once per seed,
evaluates each on the test split at thr 0.5 and writes results.md / results.json: mean ± standard
deviation over the seeds (the table in docs/imbalance.md). A difference between two variants
smaller than their seed spread is not a difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from mlcls.apis import prepare_config, test_model, train_model  # noqa: E402
from mlcls.datasets import build_dataset  # noqa: E402
from mlcls.datasets.shapes import make_sparse30_dataset  # noqa: E402
from mlcls.evaluation import compute_metrics  # noqa: E402
from mlcls.utils.misc import get_logger  # noqa: E402

VARIANTS = ["bce", "bce_pos_weight_auto", "balanced_bce", "focal", "asl", "repeat_factor"]
KEYS = ["mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "F1_macro"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--out", default="work_dirs/sparse30")
    p.add_argument("--epochs", type=int, help="override train_cfg.max_epochs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="train each variant once per seed")
    args = p.parse_args()
    make_sparse30_dataset(ROOT / "data/sparse30")
    out = Path(args.out)
    rows = []
    for name in args.variants:
        runs = []
        for seed in args.seeds:
            opts = [f"train_cfg.max_epochs={args.epochs}", f"train_cfg.val_interval={args.epochs}"] if args.epochs else []
            opts += ["+default_hooks.logger.progress_bar=false"]
            wd = out / name / f"seed_{seed}"
            cfg = prepare_config(ROOT / f"configs/sparse30/{name}.yaml", opts, work_dir=str(wd), seed=seed)
            t0 = time.time()
            train_model(cfg, overwrite=True)  # a rerun replaces the previous one
            m = test_model(cfg, str(wd / "latest.pth"), work_dir=str(wd / "test"))
            runs.append({**{k: m[k] for k in KEYS}, "minutes": (time.time() - t0) / 60})
            get_logger().info("%s seed %d: %s", name, seed, {k: round(v, 2) for k, v in runs[-1].items()})
        row = {"variant": name, "seeds": args.seeds, "minutes": round(float(np.mean([r["minutes"] for r in runs])), 1)}
        for k in KEYS:
            values = np.array([r[k] for r in runs])
            row[k], row[f"{k}_std"] = round(float(values.mean()), 2), round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 2)
        rows.append(row)
    # what a model that predicts nothing scores: the collapse plain BCE drifts towards at thr 0.5
    test = build_dataset(dict(prepare_config(ROOT / "configs/sparse30/bce.yaml")["test_dataloader"]["dataset"], pipeline=[]))
    targets = test.dense_targets(range(len(test))).astype("float32")
    z = compute_metrics(np.zeros_like(targets), targets)
    acc = float((targets == 0).mean() * 100)
    rows.append({"variant": f"predict nothing (element accuracy {acc:.1f}%)", **{k: round(z[k], 2) for k in KEYS}, "minutes": 0})
    n = len(args.seeds)
    header = (
        f"| variant ({n} seed{'s' if n > 1 else ''}: mean ± std) | "
        + " | ".join(KEYS)
        + " | train+test min |\n|"
        + "---|" * (len(KEYS) + 2)
        + "\n"
    )

    def cell(r, k):
        return f"{r[k]:.1f} ± {r[k + '_std']:.1f}" if f"{k}_std" in r and n > 1 else f"{r[k]:.1f}"

    body = "".join(f"| {r['variant']} | " + " | ".join(cell(r, k) for k in KEYS) + f" | {r['minutes']} |\n" for r in rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(header + body)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(header + body)


if __name__ == "__main__":
    main()
