"""WebDataset shards vs one file per image: throughput and files opened per epoch.

python benchmarks/bench_shards.py [--jpegs 10000] [--size 256] [--workers 2] [--cold]

Two data sets: the demo set (3,000 PNGs at 48 px) and ``--jpegs`` JPEGs at ``--size`` px
(generated: noise plus shapes, quality 90). Each is read for one epoch by the file-per-image
loader (CSVDataset) and by WebDatasetShards over shards made with tools/make_shards.py' writer,
with the same DataLoader settings (``--workers`` workers, batch 64, decode + normalise only);
shards of 1 MB (demo) and 8 MB (JPEGs), so that each worker has several.
Prints images/s of each and their ratio, and the files opened per epoch (one per image vs one
per shard; counted from the data, not traced). ``--cold`` drops the page cache before every
read (needs root), which is closer to data on a network or object store than a warm cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcls.datasets import CSVDataset, WebDatasetShards, build_dataloader  # noqa: E402
from mlcls.datasets.shapes import make_shapes_dataset  # noqa: E402
from mlcls.datasets.shards import write_shards  # noqa: E402

PIPE = [{"type": "ToFloatNormalize", "mean": [0.5] * 3, "std": [0.25] * 3}]


def make_jpegs(root: Path, n: int, size: int) -> Path:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    classes = [f"c{i}" for i in range(20)]
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    lines = ["filename,labels"]
    for i in range(n):
        img = Image.fromarray((rng.random((size, size, 3)) * 60 + 90).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        labels = sorted(set(rng.choice(20, size=int(rng.integers(1, 4))).tolist()))
        for _ in labels:
            x, y = rng.integers(0, size - 40, 2)
            draw.ellipse([x, y, x + 40, y + 40], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        img.save(root / "images" / f"{i:06d}.jpg", quality=90)
        lines.append(f"images/{i:06d}.jpg,{' '.join(classes[c] for c in labels)}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def drop_cache() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def epoch(dataset, workers: int, cold: bool) -> float:
    loader = build_dataloader({"batch_size": 64, "num_workers": workers}, dataset=dataset)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    if cold:
        drop_cache()
    t0 = time.perf_counter()
    n = sum(len(batch[0]) for batch in loader)
    return n / (time.perf_counter() - t0)


def compare(name: str, root: Path, shard_dir: Path, shard_size: int, workers: int, cold: bool) -> None:
    files = CSVDataset(str(root / "train.csv"), str(root / "classes.txt"), data_root=str(root), pipeline=PIPE)
    index = write_shards(files, shard_dir, shard_size)
    shards = WebDatasetShards(str(shard_dir / "index.json"), pipeline=PIPE, shuffle_buffer=1000)
    epoch(files, workers, False)  # warm-up (and the page cache for the warm case)
    epoch(shards, workers, False)
    a, b = epoch(files, workers, cold), epoch(shards, workers, cold)
    size = sum(os.path.getsize(files.image_path(i)) for i in range(len(files))) / 2**20
    print(f"{name}: {len(files):,} images, {size:.0f} MB; {len(index['shards'])} shards")
    print(f"  file per image: {a:8.0f} img/s, {len(files):,} files opened per epoch")
    print(f"  shards:         {b:8.0f} img/s, {len(index['shards'])} files opened per epoch  -> {b / a:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jpegs", type=int, default=10_000)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cold", action="store_true")
    args = p.parse_args()
    if args.cold and not drop_cache():
        sys.exit("--cold needs root (writes /proc/sys/vm/drop_caches)")
    print(f"page cache: {'dropped before each read (cold)' if args.cold else 'warm'}; {args.workers} workers, batch 64")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        demo = make_shapes_dataset(d / "demo", seed=0, size=48)
        compare("demo set (48 px PNG)", demo, d / "demo_shards", 1 << 20, args.workers, args.cold)
        jpegs = make_jpegs(d / "jpegs", args.jpegs, args.size)
        compare(f"{args.jpegs:,} JPEGs at {args.size} px", jpegs, d / "jpeg_shards", 8 << 20, args.workers, args.cold)


if __name__ == "__main__":
    main()
