"""Samples made of many images: mlcls against a plain PyTorch loop of the same model, and the memory
that ``instance_chunk`` saves in evaluation.

python benchmarks/bench_bags.py speed    [--epochs 2]             # slices/s, same work, same run
python benchmarks/bench_bags.py accuracy [--seeds 0 1 2]          # mean AUROC / mAP of the plain loop
python benchmarks/bench_bags.py memory   [--slices 60 --size 256] # eval peak RSS, VGG16, with/without chunks

The plain loop is what a user writes by hand for the knee-MRI model: a Dataset that loads each
exam's sagittal ``.npy`` volume, flips/shifts it as a whole, a loop over exams that runs
torchvision's ResNet-18 (no fc) on the slices of each exam, global average pooling, the maximum
over the slices, a linear layer; BCE-with-logits with pos_weight = negatives / positives, AdamW,
linear warm-up then cosine per iteration. mlcls trains ``configs/bags/sagittal_max.yaml`` (the same
model, data, augmentation and schedule) through its Trainer with packed batches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision.transforms.v2 as T  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from mlcls.datasets.mrnet import MRNET_CLASSES, make_mrnet_demo  # noqa: E402

DATA = ROOT / "data" / "mrnet_demo"
MEAN, STD = 0.35, 0.1
BATCH, LR, WD, EPOCHS = 16, 1e-3, 0.01, 8


class Exams(Dataset):
    def __init__(self, root: Path, split: str, train: bool) -> None:
        labels = [np.loadtxt(root / f"{split}-{c}.csv", delimiter=",", dtype=np.int64, ndmin=2) for c in MRNET_CLASSES]
        self.ids = [f"{i:04d}" for i in labels[0][:, 0]]
        self.y = torch.tensor(np.stack([lab[:, 1] for lab in labels], 1), dtype=torch.float32)
        self.root, self.split = root, split
        self.aug = T.Compose([T.RandomHorizontalFlip(), T.RandomAffine(degrees=0, translate=(0.1, 0.1))]) if train else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        vol = torch.from_numpy(np.load(self.root / self.split / "sagittal" / f"{self.ids[i]}.npy"))  # [S, H, W] uint8
        x = vol[:, None].expand(-1, 3, -1, -1)
        if self.aug is not None:
            x = self.aug(x)  # one draw for the whole volume
        return (x.float() / 255 - MEAN) / STD, self.y[i]


class MaxOverSlices(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        net.fc = nn.Identity()
        self.backbone, self.fc = net, nn.Linear(512, len(MRNET_CLASSES))

    def forward(self, exams: list[torch.Tensor]) -> torch.Tensor:
        sizes = [x.shape[0] for x in exams]
        feats = self.backbone(torch.cat(exams))  # [sum S, 512], pooled per slice
        return self.fc(torch.stack([f.amax(0) for f in feats.split(sizes)]))


def plain_loop(seed: int, epochs: int, evaluate: bool = True) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    train, valid = Exams(DATA, "train", True), Exams(DATA, "valid", False)
    loader = DataLoader(train, batch_size=BATCH, shuffle=True, num_workers=1, collate_fn=lambda b: b, persistent_workers=True)
    model = MaxOverSlices()
    pos = train.y.sum(0)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=(len(train) - pos) / pos)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    steps = epochs * len(loader)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=len(loader))
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps - len(loader), eta_min=1e-5)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[len(loader)])
    times, slices = [], []
    for _ in range(epochs):
        model.train()
        t0, n = time.perf_counter(), 0
        for batch in loader:
            xs, ys = [b[0] for b in batch], torch.stack([b[1] for b in batch])
            loss = loss_fn(model(xs), ys)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            n += sum(x.shape[0] for x in xs)
        times.append(time.perf_counter() - t0)
        slices.append(n)
    out = {"slices_per_s": sum(slices[1:]) / sum(times[1:]) if epochs > 1 else slices[0] / times[0]}
    if evaluate:
        from mlcls.evaluation.functional import compute_metrics

        model.eval()
        with torch.no_grad():
            scores = torch.cat([torch.sigmoid(model([valid[i][0]])) for i in range(len(valid))])
        m = compute_metrics(scores, valid.y)
        out.update({"mAUROC": m["mAUROC"], "mAP": m["mAP"], "AUROC": m["AUROC"]})
    return out


def mlcls_run(config: str, seed: int, epochs: int, work_dir: Path) -> dict:
    from mlcls.apis import prepare_config, train_model

    cfg = prepare_config(ROOT / config, [f"train_cfg.max_epochs={epochs}", "train_cfg.val_interval=100"], work_dir=str(work_dir), seed=seed)
    cfg["val_dataloader"] = None
    cfg["default_hooks"]["checkpoint"] = None
    cfg["default_hooks"]["logger"] = {"type": "LoggerHook", "interval": 20, "progress_bar": False, "tensorboard": False}
    train_model(cfg, overwrite=True)
    # per-epoch wall time from the run's own log (LoggerHook: "mode": "epoch", seconds since the epoch began)
    times = [json.loads(x)["time"] for x in (work_dir / "scalars.jsonl").read_text().splitlines() if '"mode": "epoch"' in x]
    ds = Exams(DATA, "train", False)
    n = sum(np.load(DATA / "train" / "sagittal" / f"{i}.npy", mmap_mode="r").shape[0] for i in ds.ids)
    return {"slices_per_s": n * (len(times) - 1) / sum(times[1:]) if len(times) > 1 else n / times[0]}


def peak_rss_mb(code: str) -> float:
    """Peak resident memory of a fresh interpreter running ``code`` (MB)."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return float(r.stdout.strip().splitlines()[-1])


MEMORY_CODE = """
import resource, torch
from mlcls.models import build_model
from mlcls.datasets.bags import pack
torch.set_num_threads(2)
m = build_model({{"type": "ImageClassifier", "backbone": {{"type": "VGG", "depth": 16}}, "instance_chunk": {chunk},
    "checkpoint_instances": {ckpt}, "neck": {{"type": "InstancePooling", "mode": "max"}},
    "head": {{"type": "MultiLabelLinearClsHead", "loss": {{"type": "BCEWithLogitsLoss"}}}}}}, num_classes=3)
x = pack([torch.randn({slices}, 3, {size}, {size})])
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # restart the kernel's high-water mark here: the model's construction does not count
base = status("VmRSS")
if {train}:
    m.train()
    m(x, torch.ones(1, 3), mode="loss")["loss"].backward()
else:
    m.eval()
    with torch.no_grad():
        m(x, mode="predict")
print(status("VmHWM") - base)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["speed", "accuracy", "memory"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--slices", type=int, default=60)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    make_mrnet_demo(DATA)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    if args.what == "speed":
        import tempfile

        plain = plain_loop(0, args.epochs, evaluate=False)
        with tempfile.TemporaryDirectory() as d:
            ours = mlcls_run("configs/bags/sagittal_max.yaml", 0, args.epochs, Path(d) / "w")
        print(json.dumps({"plain_slices_per_s": plain["slices_per_s"], "mlcls_slices_per_s": ours["slices_per_s"],
                          "ratio": ours["slices_per_s"] / plain["slices_per_s"]}, indent=1))  # fmt: skip
    elif args.what == "accuracy":
        runs = [plain_loop(s, EPOCHS) for s in args.seeds]
        for key in ("mAUROC", "mAP"):
            v = [r[key] for r in runs]
            print(f"plain loop {key}: {np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}  ({', '.join(f'{x:.2f}' for x in v)})")
        print(json.dumps(runs))
    else:
        for train, chunk, ckpt in ((False, "None", False), (False, "8", False), (True, "None", False), (True, "8", True)):
            mb = peak_rss_mb(MEMORY_CODE.format(chunk=chunk, ckpt=ckpt, train=train, slices=args.slices, size=args.size))
            what = "training step" if train else "evaluation"
            print(f"VGG16, one exam of {args.slices} slices of {args.size} px, {what}, instance_chunk={chunk}, "
                  f"checkpoint_instances={ckpt}: peak memory above the loaded model and input {mb:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
