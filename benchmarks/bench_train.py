"""Training throughput: mlcls's Trainer vs a plain PyTorch loop (and mmpretrain when installed).

python benchmarks/bench_train.py [--images 1024] [--epochs 2] [--mmpretrain-python /tmp/venv_mm/bin/python]

The same work every way: ResNet-18 from scratch, 10 classes, the demo images (48 px PNG), batch
32, 2 DataLoader workers, AdamW lr 1e-3, BCE-with-logits, shuffled. Each way trains ``--epochs``
epochs; the first is warm-up and the images/s of the later ones are reported, with the ratio to
the plain loop measured in the same run. mlcls runs with its default hooks (progress, text log,
scalars.jsonl, TensorBoard every 20 iterations) and no validation or checkpoints; the plain loop
decodes with PIL + ``ToTensor`` + ``Normalize``, the way an ImageFolder-style script does.
``mlcls_channels_last`` adds ``train_cfg.channels_last``, ``mlcls_cache`` adds ``cache: true`` and
``mlcls_fast`` both.
mmpretrain runs in its own interpreter (a separate venv: see ../shared/notes/peers.md) on an
OpenMMLab 2.0 JSON written from the same CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from mlcls.datasets.shapes import make_shapes_dataset  # noqa: E402

BATCH, WORKERS, LR = 32, 2, 1e-3
DEVICE, AMP = torch.device("cpu"), False  # set from --device / --amp
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def subset_csv(root: Path, n: int, out: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    classes = (root / "classes.txt").read_text().split()
    with open(root / "train.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1 : n + 1]
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows([header, *body])
    items = [(r[0], r[1].split() if len(r) > 1 else []) for r in body]
    return classes, items


def as_jpeg(root: Path, items, out: Path) -> tuple[Path, list]:
    """The same images re-encoded as JPEG (quality 95) under ``out``, with a train.csv and classes.txt."""
    from PIL import Image

    rows, jpeg_items = [["filename", "labels"]], []
    for path, labels in items:
        dst = Path(path).with_suffix(".jpg")
        (out / dst).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(root / path) as im:
            im.convert("RGB").save(out / dst, quality=95)
        rows.append([str(dst), " ".join(labels)])
        jpeg_items.append((str(dst), labels))
    with open(out / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (out / "classes.txt").write_text((root / "classes.txt").read_text())
    return out, jpeg_items


class PILListDataset(Dataset):
    """What a hand-written script does: PIL open, RGB, ToTensor, Normalize."""

    def __init__(self, root: Path, items, classes):
        from torchvision import transforms

        self.root, self.items = root, items
        self.index = {c: i for i, c in enumerate(classes)}
        self.num_classes = len(classes)
        self.tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        path, labels = self.items[i]
        with Image.open(self.root / path) as img:
            x = self.tf(img.convert("RGB"))
        y = torch.zeros(self.num_classes)
        for c in labels:
            y[self.index[c]] = 1.0
        return x, y


def plain_loop(root, items, classes, epochs) -> list[float]:
    import torchvision

    torch.manual_seed(0)
    cuda = DEVICE.type == "cuda"
    loader = DataLoader(PILListDataset(root, items, classes), batch_size=BATCH, shuffle=True, num_workers=WORKERS, pin_memory=cuda)
    model = torchvision.models.resnet18(num_classes=len(classes)).to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    step = make_step(model, opt, nn.BCEWithLogitsLoss())
    times = []
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for x, y in loader:
            step(x.to(DEVICE, non_blocking=cuda), y.to(DEVICE, non_blocking=cuda))
        sync()
        times.append(time.perf_counter() - t0)
    return times


def compute_only(classes, n, epochs) -> list[float]:
    """The model's own step (same model, batch, optimizer, loss, threads) on batches already in memory:
    the ceiling any data path can reach."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=len(classes)).to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    crit = nn.BCEWithLogitsLoss()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(BATCH, 3, 48, 48, generator=g).to(DEVICE), (torch.rand(BATCH, len(classes), generator=g) > 0.8).float().to(DEVICE))
               for _ in range(8)]  # fmt: skip
    step = make_step(model, opt, crit)
    times = []
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for b in range(-(-n // BATCH)):
            step(*batches[b % len(batches)])
        sync()
        times.append(time.perf_counter() - t0)
    return times


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def make_step(model, opt, crit):
    """One training step as a hand-written script does it (with --amp: fp16 autocast + GradScaler on CUDA, bf16 on CPU)."""
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=AMP and DEVICE.type == "cuda")
    dtype = torch.float16 if DEVICE.type == "cuda" else torch.bfloat16

    def step(x, y):
        with torch.autocast(DEVICE.type, dtype=dtype, enabled=AMP):
            out = model(x)
        loss = crit(out.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def mlcls_config(root, ann, epochs, work_dir, channels_last=False, cache=False, workers=None, on_device=False) -> dict:
    return {
        "model": {
            "type": "ImageClassifier",
            "backbone": {"type": "ResNet", "depth": 18},
            "head": {"type": "MultiLabelLinearClsHead", "loss": {"type": "BCEWithLogitsLoss"}},
        },
        "train_dataloader": {
            "batch_size": BATCH,
            **({} if workers is None else {"num_workers": workers}),  # default: auto
            "decode_on_device": on_device,
            "sampler": {"type": "DefaultSampler", "shuffle": True},
            "dataset": {
                "type": "CSVDataset",
                "data_root": str(root),
                "ann_file": str(ann),
                "classes": str(root / "classes.txt"),
                "pipeline": [{"type": "ToFloatNormalize", "mean": MEAN, "std": STD}],
                "cache": cache,
            },
        },
        "optimizer": {"type": "AdamW", "lr": LR},
        "train_cfg": {"max_epochs": epochs, "channels_last": channels_last, "amp": AMP},
        "default_hooks": {
            "logger": {"type": "LoggerHook", "interval": 20, "progress_bar": False},
            "checkpoint": {"type": "CheckpointHook", "interval": 0, "save_best": None},
        },
        "work_dir": str(work_dir),
        "seed": 0,
        "device": str(DEVICE),
    }


def mlcls_run(
    root, ann, epochs, work_dir, channels_last=False, cache=False, breakdown: dict | None = None, workers=None, on_device=False
) -> list[float]:
    from mlcls.apis import build_trainer
    from mlcls.engine import Hook

    cfg = mlcls_config(root, ann, epochs, work_dir, channels_last, cache, workers, on_device)
    times: list[float] = []

    parts = {"wait for the loader": [], "hooks and logging": []}

    class Timer(Hook):
        def before_epoch(self, trainer):
            self.t0 = time.perf_counter()
            for v in parts.values():
                v.append(0.0)

        def after_step(self, trainer, outputs):
            parts["wait for the loader"][-1] += outputs["data_time"]

        def after_epoch(self, trainer):
            sync()
            times.append(time.perf_counter() - self.t0)

    trainer = build_trainer(cfg)
    trainer.hooks = [h for h in trainer.hooks if type(h).__name__ != "CheckpointHook"]  # the plain loop saves nothing
    trainer.hooks.insert(0, Timer())
    call_hooks = trainer.call_hooks

    def timed_hooks(name, *args):  # the time every hook takes at each step, the Timer's own included
        t0 = time.perf_counter()
        call_hooks(name, *args)
        if name == "after_step":
            parts["hooks and logging"][-1] += time.perf_counter() - t0

    trainer.call_hooks = timed_hooks
    trainer.train()
    if breakdown is not None:  # seconds per timed epoch; the step is the rest (copy to the device included)
        timed = slice(1, None) if len(times) > 1 else slice(None)
        means = {k: sum(v[timed]) / len(v[timed]) for k, v in parts.items()}
        breakdown.clear()  # the latest round's
        breakdown.update(means)
        breakdown["forward, backward, optimizer"] = sum(times[timed]) / len(times[timed]) - sum(means.values())
    return times


def per_image_costs(root, items, classes, reps: int = 3) -> dict[str, float]:
    """Microseconds per image of each part of the data path, in one process: decode, the transforms,
    collate (per image of a batch) and the transfer of a batch from a worker process."""
    from torch.utils.data import default_collate

    from mlcls.datasets import CSVDataset
    from mlcls.datasets.image_io import load_image

    ds = CSVDataset(str(root / "train.csv"), str(root / "classes.txt"), data_root=str(root),
                    pipeline=[{"type": "ToFloatNormalize", "mean": MEAN, "std": STD}])  # fmt: skip
    paths = [ds.image_path(i) for i in range(min(len(ds), 512))]
    out = {}
    t0 = time.perf_counter()
    for _ in range(reps):
        decoded = [load_image(p) for p in paths]
    out["decode (torchvision)"] = (time.perf_counter() - t0) / (reps * len(paths)) * 1e6
    t0 = time.perf_counter()
    for _ in range(reps):
        normed = [ds.pipeline(x) for x in decoded]
    out["transforms (ToFloatNormalize)"] = (time.perf_counter() - t0) / (reps * len(paths)) * 1e6
    samples = [(x, ds.get_target(i)) for i, x in enumerate(normed)]
    t0 = time.perf_counter()
    for _ in range(reps):
        for b in range(0, len(samples), BATCH):
            default_collate(samples[b : b + BATCH])
    out["collate"] = (time.perf_counter() - t0) / (reps * len(samples)) * 1e6

    def transfer(items) -> float:
        class Ready(Dataset):  # samples that cost nothing to make: what remains is collate + transfer
            def __len__(self):
                return len(items)

            def __getitem__(self, i):
                return items[i]

        loader = DataLoader(Ready(), batch_size=BATCH, num_workers=1)
        for _ in loader:  # start the worker
            break
        t0 = time.perf_counter()
        for _ in range(reps):
            for _ in loader:
                pass
        return max((time.perf_counter() - t0) / (reps * len(items)) * 1e6 - out["collate"], 0.0)

    out["worker -> main transfer, float32 samples"] = transfer(samples)
    out["worker -> main transfer, uint8 samples (mlcls)"] = transfer([(x, t) for x, (_, t) in zip(decoded, samples)])
    return out


MM_SCRIPT = r"""
import json, sys, time
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

root, ann, work_dir, epochs, classes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5].split(",")
times = []

@HOOKS.register_module()
class EpochTimer(Hook):
    def before_train_epoch(self, runner):
        self.t0 = time.perf_counter()
    def after_train_epoch(self, runner):
        times.append(time.perf_counter() - self.t0)

cfg = Config(dict(
    default_scope="mmpretrain",
    model=dict(type="ImageClassifier", backbone=dict(type="ResNet", depth=18), neck=dict(type="GlobalAveragePooling"),
               head=dict(type="MultiLabelLinearClsHead", num_classes=len(classes), in_channels=512,
                         loss=dict(type="CrossEntropyLoss", use_sigmoid=True))),
    data_preprocessor=dict(num_classes=len(classes), mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           to_rgb=True, to_onehot=True),
    train_dataloader=dict(batch_size=%(batch)d, num_workers=%(workers)d, sampler=dict(type="DefaultSampler", shuffle=True),
                          dataset=dict(type="MultiLabelDataset", data_root=root, ann_file=ann,
                                       pipeline=[dict(type="LoadImageFromFile"), dict(type="PackInputs")])),
    train_cfg=dict(by_epoch=True, max_epochs=epochs),
    optim_wrapper=dict(optimizer=dict(type="AdamW", lr=%(lr)g)),
    default_hooks=dict(logger=dict(type="LoggerHook", interval=20), checkpoint=dict(type="CheckpointHook", interval=10**6, save_last=False),
                       timer=dict(type="IterTimerHook"), param_scheduler=dict(type="ParamSchedulerHook"),
                       sampler_seed=dict(type="DistSamplerSeedHook")),
    custom_hooks=[dict(type="EpochTimer")],
    env_cfg=dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork"), dist_cfg=dict(backend="gloo")),
    randomness=dict(seed=0),
    work_dir=work_dir,
    launcher="none",
))
Runner.from_cfg(cfg).train()
print("EPOCH_TIMES " + json.dumps(times))
""" % {"batch": BATCH, "workers": WORKERS, "lr": LR}  # noqa: UP031 - the script has its own braces


def mmpretrain_run(python, root, items, classes, epochs, work_dir) -> list[float] | str:
    ann = work_dir / "train_mm.json"
    ann.write_text(
        json.dumps({
            "metainfo": {"classes": classes},
            "data_list": [{"img_path": str(root / p), "gt_label": [classes.index(c) for c in labels]} for p, labels in items],
        })
    )  # fmt: skip
    script = work_dir / "mm_train.py"
    script.write_text(MM_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    r = subprocess.run(
        [python, str(script), str(root), str(ann), str(work_dir / "mm"), str(epochs), ",".join(classes)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    for line in r.stdout.splitlines():
        if line.startswith("EPOCH_TIMES "):
            return json.loads(line[len("EPOCH_TIMES ") :])
    return f"failed: {(r.stderr.strip().splitlines() or ['no output'])[-1]}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1024, help="training images per epoch (from the demo train split)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per way; the first is warm-up")
    p.add_argument("--mmpretrain-python", default="/tmp/venv_mm/bin/python", help="interpreter with mmpretrain installed")
    p.add_argument("--ways", nargs="+",
                   default=["compute_only", "plain", "mlcls", "mlcls_workers", "mlcls_cache", "mlcls_channels_last", "mmpretrain"])  # fmt: skip
    p.add_argument("--jpeg", action="store_true", help="the images re-encoded as JPEG (quality 95), for mlcls_decode_on_device")
    p.add_argument("--rounds", type=int, default=3, help="every way once per round, in rotated order")
    p.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/bench_gpu.sh)")
    p.add_argument("--amp", action="store_true", help="mixed precision: fp16 + GradScaler on CUDA, bf16 on CPU, for every way")
    args = p.parse_args()
    global DEVICE, AMP
    DEVICE, AMP = torch.device(args.device), args.amp
    root = make_shapes_dataset(ROOT / "data/shapes")
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    classes, items = subset_csv(root, args.images, work / "train_subset.csv")
    ann = work / "train_subset.csv"
    if args.jpeg:
        root, items = as_jpeg(root, items, work / "jpeg")
        ann = root / "train.csv"
    n = len(items)
    runs = {
        "compute_only": lambda r: compute_only(classes, n, args.epochs),
        "plain": lambda r: plain_loop(root, items, classes, args.epochs),
        "mlcls": lambda r: mlcls_run(root, ann, args.epochs, work / f"mlcls{r}", breakdown=breakdown),
        "mlcls_channels_last": lambda r: mlcls_run(root, ann, args.epochs, work / f"cl{r}", channels_last=True),
        "mlcls_cache": lambda r: mlcls_run(root, ann, args.epochs, work / f"cache{r}", cache=True),
        "mlcls_fast": lambda r: mlcls_run(root, ann, args.epochs, work / f"fast{r}", channels_last=True, cache=True),
        "mlcls_workers": lambda r: mlcls_run(root, ann, args.epochs, work / f"w{r}", workers=WORKERS),
        "mlcls_cache_workers": lambda r: mlcls_run(root, ann, args.epochs, work / f"cw{r}", cache=True, workers=WORKERS),
        "mlcls_decode_on_device": lambda r: mlcls_run(root, ann, args.epochs, work / f"od{r}", on_device=True),
        "mmpretrain": lambda r: (
            mmpretrain_run(args.mmpretrain_python, root, items, classes, args.epochs, work / f"mm{r}")
            if Path(args.mmpretrain_python).is_file()
            else f"skipped: no {args.mmpretrain_python}"
        ),
    }
    # Rounds: every way once per round, the order rotated between rounds, so a slow spell of this
    # shared machine hits every way alike; ratios are taken within a round, then summarised.
    results: dict[str, list] = {way: [] for way in args.ways}
    breakdown: dict[str, float] = {}
    for r in range(args.rounds):
        order = args.ways[r % len(args.ways) :] + args.ways[: r % len(args.ways)]
        for way in order:
            (work / f"mm{r}").mkdir(exist_ok=True)
            results[way].append(runs[way](r))
            print(f"round {r + 1} {way}: {results[way][-1]}", flush=True)

    def ips(times):
        timed = times[1:] or times
        return n * len(timed) / sum(timed)

    def spread(values: list[float], fmt: str) -> str:
        values = sorted(values)
        mid = values[len(values) // 2]
        return f"{mid:{fmt}}" + (f" ({values[0]:{fmt}}-{values[-1]:{fmt}})" if len(values) > 1 else "")

    gpu = f", {torch.cuda.get_device_name()}" if DEVICE.type == "cuda" else ""
    print(f"\nmachine: {platform.processor() or platform.machine()}{gpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"device {DEVICE}{' with AMP' if AMP else ''}, {torch.get_num_threads()} threads; {n} images/epoch at 48 px, "
          f"batch {BATCH}, {WORKERS} workers, {args.epochs - 1} timed epoch(s) after 1 warm-up, {args.rounds} round(s); "
          "median (min-max) over rounds, ratios within each round")  # fmt: skip
    print("| way | images/s | vs plain loop | vs compute_only | best epoch, vs plain's best |\n|---|---|---|---|---|")

    def best(res) -> float:  # the fastest timed epoch of any round: the least disturbed by the machine's slow spells
        return max(n / t for x in res if isinstance(x, list) for t in (x[1:] or x))

    for way, res in results.items():
        ok = [i for i, x in enumerate(res) if isinstance(x, list)]
        if not ok:
            print(f"| {way} | {res[0]} | - | - |")
            continue
        v = [ips(res[i]) for i in ok]
        vs = {}
        for base in ("plain", "compute_only"):
            rounds = [i for i in ok if base in results and isinstance(results[base][i], list)]
            vs[base] = spread([ips(res[i]) / ips(results[base][i]) for i in rounds], ".3f") + "x" if rounds else "-"
        vs_best = (
            f"{best(res):.1f}, {best(res) / best(results['plain']):.3f}x"
            if any(isinstance(x, list) for x in results.get("plain", []))
            else "-"
        )
        print(f"| {way} | {spread(v, '.1f')} | {vs['plain']} | {vs['compute_only']} | {vs_best} |")
    if breakdown:
        total = sum(breakdown.values())
        print("\nwhere an mlcls epoch's time goes (default data path, mean of the timed epochs):")
        print("| part | s/epoch | share |\n|---|---|---|")
        for k, v in breakdown.items():
            print(f"| {k} | {v:.2f} | {100 * v / total:.0f}% |")
    costs = per_image_costs(root, items, classes)
    print("\nper image, in one process (us):")
    print("| part | us/image |\n|---|---|")
    for k, v in costs.items():
        print(f"| {k} | {v:.1f} |")


if __name__ == "__main__":
    main()
