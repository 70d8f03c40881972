"""Evaluation and folder inference throughput: mlcls against a plain PyTorch loop of the same model.

python benchmarks/bench_infer.py [--images 2048] [--reps 3]

The same work every way: ResNet-18 (10 classes, random weights), the demo images (48 px PNG),
batch 64, 2 DataLoader workers, no gradients. ``plain``: PIL decode + ``ToTensor`` +
``Normalize`` in the workers, ``model(x).sigmoid()``. ``mlcls_eval``: the evaluation loader
(``apis.loaders.build_loader(..., "eval")``) and ``predict_loader``, as ``tools/test.py`` runs
them. ``mlcls_infer``: ``predict_files`` over the image paths, as ``tools/infer.py DIR`` runs it
(labels decoded per image included). Each way runs ``--reps`` times after one warm-up pass;
the best images/s is reported with its ratio to the plain loop of the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from mlcls.datasets.shapes import make_shapes_dataset  # noqa: E402

BATCH, WORKERS = 64, 2
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class PILFiles(Dataset):
    def __init__(self, paths):
        from torchvision import transforms

        self.paths = paths
        self.tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return self.tf(img.convert("RGB"))


def timed(fn, reps: int, n: int) -> float:
    fn()  # warm-up: worker start, caches
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    root = make_shapes_dataset(ROOT / "data/shapes")
    classes = (root / "classes.txt").read_text().split()
    lines = (root / "train.csv").read_text().splitlines()[1 : args.images + 1]
    work = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    (work / "subset.csv").write_text("filename,labels\n" + "\n".join(lines) + "\n")
    paths = [str(root / ln.split(",")[0]) for ln in lines]
    n = len(paths)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=len(classes)).eval()

    def plain():
        with torch.no_grad():
            for x in DataLoader(PILFiles(paths), batch_size=BATCH, num_workers=WORKERS):
                net(x).sigmoid()

    from mlcls.apis.loaders import build_loader
    from mlcls.evaluation import MultiLabelMetric
    from mlcls.evaluation.loop import predict_loader
    from mlcls.models import build_model
    from mlcls.models.info import ModelInfo

    pipeline = [{"type": "ToFloatNormalize", "mean": MEAN, "std": STD}]
    cfg = {
        "test_dataloader": {
            "batch_size": BATCH,
            "num_workers": WORKERS,
            "dataset": {"type": "CSVDataset", "data_root": str(root), "ann_file": str(work / "subset.csv"),
                        "classes": str(root / "classes.txt"), "pipeline": pipeline},
        },
    }  # fmt: skip
    model = build_model({"type": "ImageClassifier", "backbone": {"type": "ResNet", "depth": 18},
                         "head": {"type": "MultiLabelLinearClsHead"}}, num_classes=len(classes)).eval()  # fmt: skip

    def mlcls_eval():
        loader = build_loader(cfg, "test", "eval", 0)
        predict_loader(model, loader, MultiLabelMetric(), torch.device("cpu"))

    auto_cfg = {"test_dataloader": {k: v for k, v in cfg["test_dataloader"].items() if k != "num_workers"}}

    def mlcls_eval_auto():  # num_workers: auto, the default (none on a CPU whose cores the compute uses)
        loader = build_loader(auto_cfg, "test", "eval", 0)
        predict_loader(model, loader, MultiLabelMetric(), torch.device("cpu"))

    from mlcls.apis.inference import predict_files
    from mlcls.datasets.transforms import build_pipeline

    model.info = ModelInfo(classes, torch.full((len(classes),), 0.5), "default 0.5", cfg, build_pipeline(pipeline))

    def mlcls_infer():
        predict_files(model, paths, model.info.thresholds, batch_size=BATCH, workers=WORKERS, progress=False)

    def mlcls_infer_in_process():
        predict_files(model, paths, model.info.thresholds, batch_size=BATCH, workers=0, progress=False)

    ways = [("plain", plain), ("mlcls_eval", mlcls_eval), ("mlcls_eval_auto", mlcls_eval_auto), ("mlcls_infer", mlcls_infer),
            ("mlcls_infer_in_process", mlcls_infer_in_process)]  # fmt: skip
    results = {way: timed(fn, args.reps, n) for way, fn in ways}
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {n} images at 48 px, batch {BATCH}, {WORKERS} workers, best of {args.reps}"
    )
    print("| way | images/s | vs plain loop |\n|---|---|---|")
    for way, v in results.items():
        print(f"| {way} | {v:.1f} | {v / results['plain']:.3f}x |")


if __name__ == "__main__":
    main()
