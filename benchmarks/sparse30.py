"""The sparse-30 experiment: plain BCE vs its remedies on 30 sparse, noisy labels.

python benchmarks/sparse30.py [--variants bce focal ...] [--out work_dirs/sparse30] [--epochs N]

Generates data/sparse30 if needed, trains every config of configs/sparse30/, evaluates each on the
test split at thr 0.5 and writes results.md / results.json (the table in docs/imbalance.md).
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
    args = p.parse_args()
    make_sparse30_dataset(ROOT / "data/sparse30")
    out = Path(args.out)
    rows = []
    for name in args.variants:
        opts = [f"train_cfg.max_epochs={args.epochs}", f"train_cfg.val_interval={args.epochs}"] if args.epochs else []
        opts += ["+default_hooks.logger.progress_bar=false"]
        cfg = prepare_config(ROOT / f"configs/sparse30/{name}.yaml", opts, work_dir=str(out / name))
        t0 = time.time()
        train_model(cfg)
        m = test_model(cfg, str(out / name / "latest.pth"), work_dir=str(out / name))
        rows.append({"variant": name, **{k: round(m[k], 2) for k in KEYS}, "minutes": round((time.time() - t0) / 60, 1)})
        get_logger().info("%s: %s", name, rows[-1])
    # what a model that predicts nothing scores: the collapse plain BCE drifts towards at thr 0.5
    test = build_dataset(dict(prepare_config(ROOT / "configs/sparse30/bce.yaml")["test_dataloader"]["dataset"], pipeline=[]))
    targets = test.label_matrix().astype("float32")
    z = compute_metrics(np.zeros_like(targets), targets)
    acc = float((targets == 0).mean() * 100)
    rows.append({"variant": f"predict nothing (element accuracy {acc:.1f}%)", **{k: round(z[k], 2) for k in KEYS}, "minutes": 0})
    header = "| variant | " + " | ".join(KEYS) + " | train+test min |\n|" + "---|" * (len(KEYS) + 2) + "\n"
    body = "".join(f"| {r['variant']} | " + " | ".join(f"{r[k]:.1f}" for k in KEYS) + f" | {r['minutes']} |\n" for r in rows)
    (out / "results.md").write_text(header + body)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(header + body)


if __name__ == "__main__":
    main()
