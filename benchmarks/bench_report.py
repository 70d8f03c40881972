"""The evaluation report's cost: extra time in tools/test.py and the size of report.html.

python benchmarks/bench_report.py [--images 5000] [--size 64] [--many-classes 1000] [--repeat 2]

1. A real evaluation: ResNet-18 trained 1 epoch on 300 sparse-30 images (30 classes, about one
   positive per image), then ``test_model`` on ``--images`` test images written as PNG files,
   without and with the report (best of ``--repeat`` each, alternating). Prints both times, the
   ratio and the sizes of report.html and eval_scores.npz. Goal: at most 1.2x, under 5 MB.
2. Many classes: ``--many-classes`` classes x the same images with synthetic scores (Zipf-like
   class frequencies), report data + page (galleries capped at 100 classes) written from them.
   Goal: under 30 MB.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcls.apis import test_model, train_model  # noqa: E402
from mlcls.datasets.shapes import make_sparse30_dataset  # noqa: E402
from mlcls.report import build_report, load_eval_scores  # noqa: E402
from mlcls.report.data import report_data  # noqa: E402
from mlcls.report.html import write_report  # noqa: E402


def config(root: Path, work_dir: Path) -> dict:
    pipeline = [{"type": "ToFloatNormalize", "mean": [0.5] * 3, "std": [0.25] * 3}]

    def loader(split: str, shuffle: bool) -> dict:
        return {
            "batch_size": 64,
            "num_workers": 2,
            "sampler": {"type": "DefaultSampler", "shuffle": shuffle},
            "dataset": {"type": "CSVDataset", "data_root": str(root), "ann_file": str(root / f"{split}.csv"),
                        "classes": str(root / "classes.txt"), "pipeline": copy.deepcopy(pipeline)},
        }  # fmt: skip

    return {
        "model": {"type": "ImageClassifier", "backbone": {"type": "ResNet", "depth": 18},
                  "head": {"type": "MultiLabelLinearClsHead", "loss": {"type": "BCEWithLogitsLoss"}}},
        "train_dataloader": loader("train", True), "val_dataloader": loader("val", False), "test_dataloader": loader("test", False),
        "val_evaluator": {"type": "MultiLabelMetric"}, "optimizer": {"type": "AdamW", "lr": 1e-3},
        "train_cfg": {"max_epochs": 1}, "default_hooks": {"logger": {"type": "LoggerHook", "progress_bar": False}},
        "work_dir": str(work_dir), "seed": 0, "device": "cpu",
    }  # fmt: skip


def mb(path: Path) -> float:
    return path.stat().st_size / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--many-classes", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        root = make_sparse30_dataset(tmp / "data", seed=0, size=args.size, splits={"train": 300, "val": 100, "test": args.images})
        print(f"data: {args.images} test images at {args.size} px, 30 classes ({time.perf_counter() - t0:.1f} s to write)")
        cfg = config(root, tmp / "run")
        train_model(copy.deepcopy(cfg))
        ckpt = str(tmp / "run" / "latest.pth")
        times = {False: [], True: []}
        for _ in range(args.repeat):
            for report in (False, True):
                t = time.perf_counter()
                test_model(copy.deepcopy(cfg), ckpt, work_dir=str(tmp / f"test_{report}"), report=report)
                times[report].append(time.perf_counter() - t)
        plain, with_report = min(times[False]), min(times[True])
        print(f"1. test_model on {args.images} images x 30 classes: {plain:.2f} s without the report, {with_report:.2f} s with it "
              f"-> {with_report / plain:.2f}x (goal <= 1.20x)")  # fmt: skip
        print(f"   report.html {mb(tmp / 'test_True' / 'report.html'):.2f} MB (goal < 5 MB), "
              f"eval_scores.npz {mb(tmp / 'test_True' / 'eval_scores.npz'):.2f} MB")  # fmt: skip
        saved = load_eval_scores(tmp / "test_True" / "eval_scores.npz")
        t = time.perf_counter()
        build_report(saved, tmp / "again.html")
        print(f"   the report alone (tools/report.py's work: data, thumbnails, page): {time.perf_counter() - t:.2f} s")

        c, n = args.many_classes, args.images
        g = torch.Generator().manual_seed(0)
        freq = 0.2 / torch.arange(1, c + 1).float() ** 0.8  # Zipf-like: the most frequent class on 20 % of images
        targets = (torch.rand(n, c, generator=g) < freq).to(torch.int8)
        scores = (torch.rand(n, c, generator=g) * 0.5 + targets * torch.rand(n, c, generator=g) * 0.5).clamp(0, 1)
        paths = [str(root / "images" / "test" / f"{i:05d}.png") for i in range(n)]
        t = time.perf_counter()
        data = report_data(scores, targets, [f"class_{i}" for i in range(c)], 0.5, meta={"split": "synthetic"})
        out = write_report(data, paths, targets, tmp / "many.html")
        print(f"2. {c} classes x {n} images (synthetic scores): report written in {time.perf_counter() - t:.1f} s, "
              f"{mb(out):.1f} MB (goal < 30 MB); galleries for {len(data['gallery'])} classes")  # fmt: skip


if __name__ == "__main__":
    main()
