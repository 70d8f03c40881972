"""Annotation index at scale: a 1,000,000-image, 500-class CSV parsed by CSVDataset.

python benchmarks/bench_annotations.py [--images 1000000] [--classes 500]

Writes the CSV (about 3 labels per image, long-tailed class frequencies) to a temporary folder,
then in a fresh process measures the parse time and the resident-memory growth of the loaded
dataset, and the time of the statistics the samplers and losses use (class counts, repeat
factors), which work from the CSR arrays without a dense N x C matrix.
Goals (issue #4): < 300 MB resident for the index, < 30 s to parse.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def write_csv(path: Path, n: int, c: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, c + 1) ** 0.8  # long tail
    p /= p.sum()
    k = np.clip(rng.poisson(3.0, n), 1, 12)
    labels = rng.choice(c, size=int(k.sum()), p=p)
    names = [f"class_{i:03d}" for i in range(c)]
    (path.parent / "classes.txt").write_text("\n".join(names) + "\n")
    ends = np.cumsum(k)
    with open(path, "w") as f:
        f.write("filename,labels\n")
        start = 0
        for i, end in enumerate(ends):
            f.write(f"images/{i // 1000:04d}/{i:07d}.jpg,{' '.join(names[j] for j in sorted(set(labels[start:end].tolist())))}\n")
            start = end


def measure(csv_path: str) -> None:
    import numpy as np  # noqa: F401 - imported before the baseline so it is not counted
    import torch  # noqa: F401

    from mlcls.datasets import CSVDataset, repeat_factors

    gc.collect()
    base = rss_mb()
    t0 = time.perf_counter()
    ds = CSVDataset(csv_path, str(Path(csv_path).parent / "classes.txt"), check_files=False)
    parse = time.perf_counter() - t0
    gc.collect()
    grown = rss_mb() - base
    t0 = time.perf_counter()
    counts = ds.class_counts()
    rf = repeat_factors(ds, 0.01)
    stats_t = time.perf_counter() - t0
    arrays = ds.offsets.nbytes + ds.label_ids.nbytes + ds.label_vals.nbytes + ds._paths.nbytes + ds._lines.nbytes
    print(f"images {len(ds):,}, classes {ds.num_classes}, labels {len(ds.label_ids):,} ({len(ds.label_ids) / len(ds):.2f} per image)")
    print(f"parse: {parse:.1f} s (goal < 30 s)")
    print(f"resident memory growth: {grown:.0f} MB (goal < 300 MB); arrays themselves: {arrays / 2**20:.0f} MB")
    print(f"class counts + repeat factors from CSR: {stats_t:.2f} s (max count {counts.max():,}, max factor {rf.max():.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--classes", type=int, default=500)
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        measure(args.measure)
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.csv"
        t0 = time.perf_counter()
        write_csv(path, args.images, args.classes)
        print(f"wrote {path.stat().st_size / 2**20:.0f} MB CSV in {time.perf_counter() - t0:.1f} s")
        # a fresh interpreter, so the generator's memory does not blur the measurement
        subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True)


if __name__ == "__main__":
    main()
