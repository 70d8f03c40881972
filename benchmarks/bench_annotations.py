"""Annotation index at scale: a 1,000,000-image, 500-class CSV parsed by CSVDataset, or Open Images.

python benchmarks/bench_annotations.py [--images 1000000] [--classes 500]
python benchmarks/bench_annotations.py --openimages [--images 9000000] [--classes 20000] [--keep DIR]

--openimages writes a synthetic image-level label file with the real column layout
(ImageID,Source,LabelName,Confidence; 16-hex-digit ImageIDs sorted as in the official files) and
the real statistics of Open Images V4 train (9M images, 20k classes with a Zipf-like frequency
tail, about 6 verified positives and 4 verified negatives per image), then measures, in a fresh
process, OpenImagesDataset's parse time and resident memory, class counts + repeat factors,
and building the RepeatFactorSampler with one epoch of indices. Goals: parse < 90 s, resident
memory of the index < 2 GB, counts + repeat factors < 5 s, sampler + one epoch < 10 s.

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


def write_openimages(folder: Path, n: int, c: int, pos: float = 6.0, neg: float = 4.0, seed: int = 0, chunk: int = 500_000) -> Path:
    """The synthetic Open Images files in ``folder``; returns the label file (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, c + 1)  # Zipf-like: class k has frequency ~ 1/k
    cdf = np.cumsum(p / p.sum())
    digits36 = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    hexd = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    mid = np.zeros((c, 9), dtype=np.uint8)  # "/m/0" + 5 base-36 digits
    mid[:, :4] = np.frombuffer(b"/m/0", dtype=np.uint8)
    for k in range(5):
        mid[:, 8 - k] = digits36[(np.arange(c) // 36**k) % 36]
    with open(folder / "class-descriptions.csv", "w") as f:
        f.writelines(f"{bytes(mid[i]).decode()},Synthetic class {i}\n" for i in range(c))
    source = np.frombuffer(b",verification,", dtype=np.uint8)
    width = 16 + len(source) + 9 + 3  # id, ",verification,", mid, ",", conf, "\n"
    path = folder / "train-annotations-human-imagelabels.csv"
    with open(path, "wb") as f:
        f.write(b"ImageID,Source,LabelName,Confidence\n")
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            npos = np.clip(rng.poisson(pos, m), 1, None)
            nneg = rng.poisson(neg, m)
            k = npos + nneg
            image = np.repeat(np.arange(m), k)
            cls = np.searchsorted(cdf, rng.random(len(image)))
            conf = np.ones(len(image), dtype=np.uint8)
            first = np.repeat(np.cumsum(k) - k, k)
            conf[np.arange(len(image)) - first >= np.repeat(npos, k)] = 0  # the last nneg of each image
            order = np.lexsort((-conf.astype(np.int16), cls, image))  # sorted; a positive before a negative
            image, cls, conf = image[order], cls[order], conf[order]
            keep = np.ones(len(image), dtype=bool)
            keep[1:] = (image[1:] != image[:-1]) | (cls[1:] != cls[:-1])  # one row per (image, class)
            image, cls, conf = image[keep], cls[keep], conf[keep]
            ids = (start + image).astype(np.uint64) * np.uint64(2_000_003)  # increasing, 16 hex digits
            rows = np.empty((len(image), width), dtype=np.uint8)
            for d in range(16):
                rows[:, d] = hexd[((ids >> np.uint64(4 * (15 - d))) & np.uint64(15)).astype(np.int64)]
            rows[:, 16 : 16 + len(source)] = source
            rows[:, 16 + len(source) : 25 + len(source)] = mid[cls]
            rows[:, -3] = ord(",")
            rows[:, -2] = ord("0") + conf
            rows[:, -1] = ord("\n")
            f.write(rows.tobytes())
    return path


# frequencies here are among the images where a class was verified (about 0.6 for every class of
# the synthetic set, whose negatives follow the positives' distribution): 0.8 makes every class repeat
RF_THR = 0.8


def measure_openimages(path: str) -> None:
    import numpy as np  # noqa: F401 - imported before the baseline so it is not counted
    import torch  # noqa: F401

    from mlcls.datasets import OpenImagesDataset, RepeatFactorSampler, repeat_factors

    folder = Path(path).parent
    gc.collect()
    base = rss_mb()
    t0 = time.perf_counter()
    ds = OpenImagesDataset(path, str(folder / "class-descriptions.csv"), unlisted_as="ignore")
    parse = time.perf_counter() - t0
    gc.collect()
    grown = rss_mb() - base
    arrays = ds.offsets.nbytes + ds.label_ids.nbytes + ds.label_vals.nbytes + ds.label_index.paths.nbytes + ds.label_index.lines.nbytes
    print(f"images {len(ds):,}, classes {ds.num_classes:,}, stored labels {len(ds.label_ids):,} "
          f"({float((ds.label_vals == 1).mean()) * len(ds.label_ids) / len(ds):.2f} positive, "
          f"{float((ds.label_vals == 0).mean()) * len(ds.label_ids) / len(ds):.2f} verified negative per image)")  # fmt: skip
    print(f"parse: {parse:.1f} s (goal < 90 s)")
    print(f"resident memory growth: {grown:.0f} MB (goal < 2048 MB); arrays themselves: {arrays / 2**20:.0f} MB")
    t0 = time.perf_counter()
    pos, neg = ds.verified_counts()
    rf = repeat_factors(ds, RF_THR)
    t_stats = time.perf_counter() - t0
    print(f"verified class counts + repeat factors: {t_stats:.2f} s (goal < 5 s); "
          f"top class {pos.max():,} positives, rarest {pos[pos > 0].min():,}; max factor {rf.max():.1f}")  # fmt: skip
    t0 = time.perf_counter()
    sampler = RepeatFactorSampler(ds, oversample_thr=RF_THR, seed=0)
    sampler.set_epoch(0)
    epoch = sampler.epoch_indices()
    t_sampler = time.perf_counter() - t0
    print(f"RepeatFactorSampler + one epoch of indices: {t_sampler:.2f} s (goal < 10 s); {len(epoch):,} samples per epoch")
    print(f"peak resident memory of this process: {peak_mb():.0f} MB")


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    arrays = ds.offsets.nbytes + ds.label_ids.nbytes + ds.label_vals.nbytes + ds.label_index.paths.nbytes + ds.label_index.lines.nbytes
    print(f"images {len(ds):,}, classes {ds.num_classes}, labels {len(ds.label_ids):,} ({len(ds.label_ids) / len(ds):.2f} per image)")
    print(f"parse: {parse:.1f} s (goal < 30 s)")
    print(f"resident memory growth: {grown:.0f} MB (goal < 300 MB); arrays themselves: {arrays / 2**20:.0f} MB")
    print(f"class counts + repeat factors from CSR: {stats_t:.2f} s (max count {counts.max():,}, max factor {rf.max():.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--classes", type=int, default=500)
    p.add_argument("--openimages", action="store_true", help="Open Images layout and scale (default 9M images x 20k classes)")
    p.add_argument("--keep", help="--openimages: write the files to this folder and keep them (reused when present)")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    p.add_argument("--measure-openimages", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        measure(args.measure)
        return
    if args.measure_openimages:
        measure_openimages(args.measure_openimages)
        return
    if args.openimages:
        n = 9_000_000 if args.images == 1_000_000 else args.images
        c = 20_000 if args.classes == 500 else args.classes
        with tempfile.TemporaryDirectory() as d:
            folder = Path(args.keep or d)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "train-annotations-human-imagelabels.csv"
            if not (args.keep and path.is_file()):
                t0 = time.perf_counter()
                write_openimages(folder, n, c)
                print(f"wrote {path.stat().st_size / 2**30:.2f} GB ({n:,} images, {c:,} classes) in {time.perf_counter() - t0:.0f} s")
            subprocess.run([sys.executable, __file__, "--measure-openimages", str(path)], check=True)
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
