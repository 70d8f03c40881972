"""Repeat factors and one epoch of RepeatFactorSampler for 1,000,000 images x 500 classes.

python benchmarks/bench_repeat_factors.py [--images 1000000] [--classes 500]

Labels are drawn long-tailed (Zipf-like, ~3 per image) straight into CSR arrays; the timing
covers mlcls's vectorised code against a per-image Python loop over the same arrays (on a
100,000-image slice, scaled), and checks that both give the same factors.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcls.datasets import MultiLabelDataset, RepeatFactorSampler, repeat_factors  # noqa: E402
from mlcls.datasets.labels import LabelIndex  # noqa: E402


def make(n: int, c: int, seed: int = 0) -> MultiLabelDataset:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, n)
    p = 1.0 / np.arange(1, c + 1) ** 1.1
    ids = rng.choice(c, size=int(counts.sum()), p=p / p.sum()).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return MultiLabelDataset.from_index(
        LabelIndex(np.array([b"x.png"] * n), offsets, ids, np.ones(len(ids), np.int8)), [f"c{i}" for i in range(c)]
    )


def loop_factors(ds: MultiLabelDataset, t: float) -> np.ndarray:
    freq = ds.class_counts() / len(ds)
    out = np.ones(len(ds))
    for i in range(len(ds)):
        for cid in ds.label_ids[ds.offsets[i] : ds.offsets[i + 1]]:
            out[i] = max(out[i], math.sqrt(t / freq[cid]) if freq[cid] else 1.0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--classes", type=int, default=500)
    p.add_argument("--thr", type=float, default=0.01)
    args = p.parse_args()
    ds = make(args.images, args.classes)
    t0 = time.perf_counter()
    r = repeat_factors(ds, args.thr)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampler = RepeatFactorSampler(ds, args.thr)
    sampler.set_epoch(3)
    epoch = sampler.epoch_indices()
    t_epoch = time.perf_counter() - t0
    k = min(100_000, args.images)
    sub = MultiLabelDataset.from_index(
        LabelIndex(np.array([b"x.png"] * k), ds.offsets[: k + 1], ds.label_ids[: ds.offsets[k]], ds.label_vals[: ds.offsets[k]]), ds.classes
    )
    t0 = time.perf_counter()
    ref = loop_factors(sub, args.thr)
    t_loop = (time.perf_counter() - t0) * args.images / k
    diff = float(np.abs(repeat_factors(sub, args.thr) - ref).max())
    print(f"{args.images:,} images, {args.classes} classes, {len(ds.label_ids):,} labels, t={args.thr}")
    print(f"repeat factors (vectorised):        {t_vec:.3f} s")
    print(f"sampler build + one epoch list:      {t_epoch:.3f} s ({len(epoch):,} samples, mean factor {r.mean():.3f})")
    print(f"per-image Python loop (extrapolated): {t_loop:.1f} s  -> {t_loop / t_vec:.0f}x slower; max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
