"""mAP + mAUROC + threshold metrics + per-class F1-optimal thresholds: mlcls vs a scikit-learn per-class loop.

python benchmarks/bench_evaluator.py [--n 200000] [--c 80] [--pos 0.03] [--repeat 3]

Both sides get the same float32 arrays. The scikit-learn side is what users write today:
average_precision_score and roc_auc_score per class, precision_recall_curve per class for the
F1-optimal threshold, and precision_recall_fscore_support at 0.5. Prints both times (best of
--repeat), the ratio and the largest absolute difference of AP and AUROC (percent points) and of
the thresholds' F1. mlcls computes AUROC in the same O(N)-per-class pass as AP (no sort of all N).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcls.evaluation import compute_metrics  # noqa: E402


def sklearn_loop(scores: np.ndarray, targets: np.ndarray):
    from sklearn.metrics import average_precision_score, precision_recall_curve, precision_recall_fscore_support, roc_auc_score

    c = scores.shape[1]
    ap, auc, thr, best_f1 = np.zeros(c), np.zeros(c), np.zeros(c), np.zeros(c)
    for j in range(c):
        y, s = targets[:, j], scores[:, j]
        ap[j] = average_precision_score(y, s) * 100
        auc[j] = roc_auc_score(y, s) * 100
        p, r, t = precision_recall_curve(y, s)
        f1 = 2 * p[:-1] * r[:-1] / np.maximum(p[:-1] + r[:-1], 1e-12)
        k = int(np.argmax(f1))
        thr[j], best_f1[j] = t[k], f1[k]
    precision_recall_fscore_support(targets, scores >= 0.5, average=None, zero_division=0)
    return ap, auc, thr, best_f1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--c", type=int, default=80)
    p.add_argument("--pos", type=float, default=0.03)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    targets = (rng.random((args.n, args.c)) < args.pos).astype(np.float32)
    scores = np.clip(rng.random((args.n, args.c)) * 0.8 + targets * rng.random((args.n, args.c)) * 0.4, 0, 1).astype(np.float32)

    def best_of(fn):
        times, out = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    t_ml, m = best_of(lambda: compute_metrics(scores, targets, thr=0.5, tune="f1"))
    t_sk, (ap, auc, thr, best_f1) = best_of(lambda: sklearn_loop(scores, targets))
    from sklearn.metrics import average_precision_score, roc_auc_score

    t_ap, _ = best_of(
        lambda: [(average_precision_score(targets[:, j], scores[:, j]), roc_auc_score(targets[:, j], scores[:, j])) for j in range(args.c)]
    )
    ap_diff = float(np.abs(np.asarray(m["AP"]) - ap).max())
    auc_diff = float(np.abs(np.asarray(m["AUROC"]) - auc).max())
    # the F1 each side's threshold reaches (thresholds may differ where F1 ties)
    pred = scores >= np.asarray(m["tuned_thr"], dtype=np.float32)
    tp = (pred & (targets == 1)).sum(0)
    f1_ml = 2 * tp / np.maximum(pred.sum(0) + targets.sum(0), 1)
    f1_diff = float(np.abs(f1_ml - best_f1).max())
    print(f"N={args.n:,} C={args.c} positives {targets.mean() * 100:.1f}%  (best of {args.repeat})")
    print(f"scikit-learn per-class loop, same outputs (AP, AUROC, F1-optimal thr, metrics at 0.5): {t_sk:.3f} s")
    print(f"scikit-learn per-class loop, AP + AUROC only:                                      {t_ap:.3f} s")
    print(f"mlcls compute_metrics(thr=0.5, tune='f1'), all of the above:                        {t_ml:.3f} s")
    print(f"speed-up: {t_sk / t_ml:.1f}x (same outputs), {t_ap / t_ml:.1f}x (vs sklearn AP + AUROC alone)")
    print(f"max |AP diff| {ap_diff:.2e} points   max |AUROC diff| {auc_diff:.2e} points   max |F1 diff at tuned thr| {f1_diff:.2e}")


if __name__ == "__main__":
    main()
