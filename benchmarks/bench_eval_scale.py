"""Evaluation at Open Images test scale: 125,436 images x 9,600 classes with partial labels.

python benchmarks/bench_eval_scale.py [--n 125436] [--c 9600] [--sample 0.1] [--ddp 2]

Scores are float32 (4.8 GB at full size), targets int8 with about 6 verified positives and 4
verified negatives per image over Zipf-like classes; every other entry is unknown (-1), as the
Open Images protocol has it. Measures, in this process:

1. ``compute_metrics`` (per-class AP over known entries, mAP over classes with a positive, the
   threshold metrics): time and peak resident memory above the loaded data, against the goal of
   1.5x the score matrix.
2. A scikit-learn loop (``average_precision_score`` on each class's known entries) on a random
   ``--sample`` of the classes, extrapolated to all classes (stated as such), and the largest AP
   difference on that sample.
3. With ``--ddp W``: the class-sharded evaluation (``sharded_compute_metrics``) in W gloo
   processes, each generating only its rows; time, each rank's peak memory, and whether the
   metrics equal step 1's exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcls.evaluation import compute_metrics  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def reset_peak() -> None:
    """Start the kernel's resident high-water mark (VmHWM) afresh from the current size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mb() -> float:
    """Peak resident memory since the last :func:`reset_peak` (VmHWM)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def make_rows(start: int, stop: int, c: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [start, stop) of the synthetic set (the same rows whichever process makes them)."""
    n = stop - start
    scores = torch.empty(n, c, dtype=torch.float32)
    targets = torch.full((n, c), -1, dtype=torch.int8)
    p = 1.0 / np.arange(1, c + 1)
    cdf = np.cumsum(p / p.sum())
    block = 4096
    for lo in range(start - start % block, stop, block):  # blocks of a fixed grid: reproducible per row
        hi = lo + block
        rng = np.random.default_rng([seed, lo])
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        s = torch.rand(block, c, generator=g) * 0.6
        t = torch.full((block, c), -1, dtype=torch.int8)
        k_neg, k_pos = rng.poisson(4, block), np.clip(rng.poisson(6, block), 1, None)
        rows = np.repeat(np.arange(block), k_neg)
        t[rows, np.searchsorted(cdf, rng.random(len(rows)))] = 0
        rows = np.repeat(np.arange(block), k_pos)
        cls = np.searchsorted(cdf, rng.random(len(rows)))
        t[rows, cls] = 1
        bump = torch.from_numpy(rng.random(len(rows)).astype(np.float32)) * 0.4
        # accumulate: a class drawn twice for one image gets both bumps whatever the thread count
        # (a plain indexed += would keep whichever write came last)
        s.index_put_((torch.from_numpy(rows), torch.from_numpy(cls)), bump, accumulate=True)
        a, b = max(lo, start), min(hi, stop)
        if a < b:
            scores[a - start : b - start] = s[a - lo : b - lo]
            targets[a - start : b - start] = t[a - lo : b - lo]
    return scores, targets


def sklearn_sample(scores: torch.Tensor, targets: torch.Tensor, classes: np.ndarray) -> tuple[float, np.ndarray]:
    from sklearn.metrics import average_precision_score

    t0 = time.perf_counter()
    ap = np.full(len(classes), math.nan)
    for i, c in enumerate(classes):
        y, s = targets[:, c].numpy(), scores[:, c].numpy()
        known = y >= 0
        if (y[known] == 1).any():
            ap[i] = average_precision_score(y[known], s[known]) * 100
    return time.perf_counter() - t0, ap


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world: int, port: int, n: int, c: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from mlcls.evaluation.sharded import sharded_compute_metrics
    from mlcls.utils.dist import init_distributed, shutdown

    per = -(-n // world)
    scores, targets = make_rows(rank * per, min(n, (rank + 1) * per), c)
    init_distributed(timeout_s=3600)
    data = rss_mb()
    reset_peak()
    t0 = time.perf_counter()
    m = sharded_compute_metrics(scores, targets)
    seconds = time.perf_counter() - t0
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"seconds": seconds, "peak_mb": peak_mb(), "data_mb": data, "held": m["held_block"], "mAP": m["mAP"], "AP": m["AP"],
                   "CF1": m["CF1"], "OF1": m["OF1"]}, f)  # fmt: skip
    shutdown(True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=125_436)
    p.add_argument("--c", type=int, default=9_600)
    p.add_argument("--sample", type=float, default=0.1)
    p.add_argument("--ddp", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    base = rss_mb()
    t0 = time.perf_counter()
    scores, targets = make_rows(0, args.n, args.c)
    matrix_mb = scores.numel() * 4 / 2**20
    print(f"{args.n:,} x {args.c:,}: scores {matrix_mb:.0f} MB float32, targets {targets.numel() / 2**20:.0f} MB int8 "
          f"(known entries {float((targets >= 0).float().mean()) * 100:.2f}%), made in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    loaded = rss_mb()
    reset_peak()
    t0 = time.perf_counter()
    m = compute_metrics(scores, targets, thr=0.5)
    t_ml = time.perf_counter() - t0
    extra = peak_mb() - loaded
    print(f"1. compute_metrics: {t_ml:.1f} s; mAP {m['mAP']:.2f} over {args.c - m['num_classes_skipped']:,} classes with positives; "
          f"peak memory {(loaded - base + extra) / matrix_mb:.2f}x the score matrix incl. scores and targets "
          f"(goal <= 1.5x), {extra:.0f} MB above the loaded data")  # fmt: skip
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(args.c, size=max(1, int(args.c * args.sample)), replace=False))
    t_sk, ap_sk = sklearn_sample(scores, targets, sample)
    ours = np.asarray(m["AP"])[sample]
    both = ~np.isnan(ap_sk)
    print(f"2. scikit-learn AP loop on {len(sample):,} classes ({args.sample:.0%}): {t_sk:.1f} s -> {t_sk / args.sample:.0f} s for all "
          f"classes (extrapolated); mlcls {t_sk / args.sample / t_ml:.1f}x faster; max |AP diff| {np.abs(ours[both] - ap_sk[both]).max():.1e} points")  # fmt: skip
    if args.ddp:
        del scores, targets
        import torch.multiprocessing as mp

        with tempfile.TemporaryDirectory() as d:
            out = str(Path(d) / "r")
            t0 = time.perf_counter()
            mp.spawn(ddp_worker, args=(args.ddp, _free_port(), args.n, args.c, out), nprocs=args.ddp, join=True)
            results = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(args.ddp)]
        ref_ap = np.asarray(m["AP"], dtype=float)
        same = all(
            np.array_equal(np.asarray(r["AP"], dtype=float), ref_ap, equal_nan=True) and all(r[k] == m[k] for k in ("mAP", "CF1", "OF1"))
            for r in results
        )
        for r, res in enumerate(results):
            print(f"3. rank {r}/{args.ddp}: sharded evaluation {res['seconds']:.1f} s, held a block of {res['held'][0]:,} x {res['held'][1]:,} "
                  f"({res['held'][0] * res['held'][1] / (args.n * args.c):.2f} of the matrix); its rows {res['data_mb'] - base:.0f} MB, "
                  f"peak {res['peak_mb'] - res['data_mb']:.0f} MB above them = {(res['peak_mb'] - res['data_mb']) / matrix_mb:.2f}x "
                  "the whole score matrix")  # fmt: skip
        print(f"   metrics equal to the single-process run exactly: {same}")
        if not same:
            r = results[0]
            print(
                "   differences:",
                {k: (r[k], m[k]) for k in ("mAP", "CF1", "OF1") if r[k] != m[k]},
                int((~((np.asarray(r["AP"], dtype=float) == ref_ap) | np.isnan(ref_ap))).sum()),
                "AP values",
            )


if __name__ == "__main__":
    main()
