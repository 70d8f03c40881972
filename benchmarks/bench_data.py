"""Data-loading throughput: mlcls's loader vs an ImageFolder-style PIL loader on the same files.

python benchmarks/bench_data.py [--epochs 3] [--workers 2] [--jpeg-size 224] [--jpeg-images 1000]

Two sets: the demo images (3,000 PNG, 48 px) with the demo training pipeline (flips +
normalisation), and JPEG copies of them upscaled to ``--jpeg-size`` (a photo-like workload) with a
224 crop pipeline. Each way iterates the whole set ``--epochs`` times with the same batch size
and workers and no model; the first epoch (worker start-up, page cache) is not timed. Ways:
``pil`` = PIL open/convert + torchvision v1 transforms (``ToTensor``, ``Normalize``); ``mlcls`` =
CSVDataset (torchvision decode, v2 transforms on uint8); ``mlcls_cache`` = the same with
``cache: true`` (cache build time reported separately). Goal (issue #4): mlcls >= 1.3x pil.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from mlcls.datasets import CSVDataset  # noqa: E402
from mlcls.datasets.builder import build_dataloader  # noqa: E402
from mlcls.datasets.shapes import make_shapes_dataset  # noqa: E402

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


class PILDataset(Dataset):
    def __init__(self, root: Path, csv_file: Path, classes: list[str], tf):
        with open(csv_file, newline="") as f:
            rows = list(csv.reader(f))[1:]
        self.root, self.rows, self.tf = root, rows, tf
        self.index = {c: i for i, c in enumerate(classes)}

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        from PIL import Image

        path, labels = self.rows[i][0], self.rows[i][1].split()
        with Image.open(self.root / path) as img:
            x = self.tf(img.convert("RGB"))
        y = torch.zeros(len(self.index))
        y[[self.index[c] for c in labels]] = 1.0
        return x, y


def timed(loader, epochs: int) -> float:
    n, t = 0, 0.0
    for e in range(epochs):
        t0 = time.perf_counter()
        count = sum(len(x) for x, _ in loader)
        if e:  # the first epoch warms up workers and the page cache
            n, t = n + count, t + time.perf_counter() - t0
    return n / t


def make_jpeg_set(src: Path, dst: Path, size: int, count: int) -> None:
    from PIL import Image

    (dst / "images").mkdir(parents=True, exist_ok=True)
    with open(src / "train.csv", newline="") as f:
        rows = list(csv.reader(f))[1 : count + 1]
    out = [["filename", "labels"]]
    for path, labels in rows:
        name = Path(path).stem + ".jpg"
        with Image.open(src / path) as img:
            img.convert("RGB").resize((size, size), Image.BICUBIC).save(dst / "images" / name, quality=90)
        out.append([f"images/{name}", labels])
    with open(dst / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows(out)
    (dst / "classes.txt").write_text((src / "classes.txt").read_text())


def run_set(name, root, pil_tf, mlcls_pipeline, args) -> None:
    from torchvision import transforms  # noqa: F401

    classes = (root / "classes.txt").read_text().split()
    kw = {"batch_size": args.batch_size, "num_workers": args.workers, "persistent_workers": True}
    results = {}
    pil = DataLoader(PILDataset(root, root / "train.csv", classes, pil_tf), shuffle=True, **kw)
    results["pil"] = timed(pil, args.epochs)
    ds = CSVDataset("train.csv", "classes.txt", mlcls_pipeline, data_root=str(root))
    results["mlcls"] = timed(build_dataloader({**kw, "sampler": {"type": "DefaultSampler", "shuffle": True}}, dataset=ds), args.epochs)
    t0 = time.perf_counter()
    cached = CSVDataset("train.csv", "classes.txt", mlcls_pipeline, data_root=str(root), cache=True)
    build = time.perf_counter() - t0
    results["mlcls_cache"] = timed(
        build_dataloader({**kw, "sampler": {"type": "DefaultSampler", "shuffle": True}}, dataset=cached), args.epochs
    )
    print(f"\n{name}: {len(ds)} images, batch {args.batch_size}, {args.workers} workers, {args.epochs - 1} timed epochs "
          f"(cache built in {build:.1f} s, {cached._cache.nbytes / 2**20:.0f} MiB)")  # fmt: skip
    print("| way | images/s | vs pil |\n|---|---|---|")
    for way, v in results.items():
        print(f"| {way} | {v:.0f} | {v / results['pil']:.2f}x |")


def main() -> None:
    from torchvision import transforms as T1

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--jpeg-size", type=int, default=256)
    p.add_argument("--jpeg-images", type=int, default=1000)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}")
    demo = make_shapes_dataset(ROOT / "data/shapes")
    pil_tf = T1.Compose([T1.RandomHorizontalFlip(), T1.RandomVerticalFlip(), T1.ToTensor(), T1.Normalize(MEAN, STD)])
    pipe = [{"type": "RandomHorizontalFlip"}, {"type": "RandomVerticalFlip"}, {"type": "ToFloatNormalize", "mean": MEAN, "std": STD}]
    run_set("demo PNG 48 px, demo pipeline", demo, pil_tf, pipe, args)
    with tempfile.TemporaryDirectory() as d:
        make_jpeg_set(demo, Path(d), args.jpeg_size, args.jpeg_images)
        pil_tf = T1.Compose([T1.Resize(224), T1.RandomHorizontalFlip(), T1.ToTensor(), T1.Normalize(MEAN, STD)])
        pipe = [{"type": "Resize", "size": 224}, {"type": "RandomHorizontalFlip"}, {"type": "ToFloatNormalize", "mean": MEAN, "std": STD}]
        run_set(f"JPEG {args.jpeg_size} px, resize 224 + flip", Path(d), pil_tf, pipe, args)


if __name__ == "__main__":
    main()
