"""Class-sharded evaluation in 2 real gloo processes: equal to the single-process metrics, and each
rank holds about half of the score matrix."""

from __future__ import annotations

import json
import math

import torch
from torch.utils.data import TensorDataset

from mlcls.datasets import DefaultSampler
from mlcls.evaluation import MultiLabelMetric, compute_metrics
from mlcls.evaluation.sharded import class_blocks, sharded_compute_metrics
from tests.ddp import spawn

N, C = 1001, 37  # odd: the sampler pads one duplicate, the class blocks are 19 + 18


def data(n=N, c=C, seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, c, generator=g) < 0.15).float()
    scores = (torch.rand(n, c, generator=g) * 0.7 + targets * 0.3).mul(20).round().div(20)  # many ties
    targets[torch.rand(n, c, generator=g) < 0.1] = -1  # unknown entries
    targets[:, 5] = torch.where(targets[:, 5] == 1, torch.zeros(()), targets[:, 5])  # a class without positives
    return scores, targets


def worker(rank, world, out):
    scores, targets = data()
    idx = torch.tensor(list(DefaultSampler(TensorDataset(scores), shuffle=True, seed=3)))
    metric = MultiLabelMetric(thr=[0.3 + 0.01 * i for i in range(C)], topk=3, gather="classes")
    for chunk in idx.split(64):
        metric.process(scores[chunk], targets[chunk], chunk)
    result = metric.compute()
    local = sharded_compute_metrics(scores[idx[:10]], targets[idx[:10]].to(torch.int8), thr=0.5, sample_metrics=True)
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"metric": result, "sample": local, "shard": len(idx)}, f)


def clean(d: dict) -> dict:
    return {
        k: (
            None
            if isinstance(v, float) and math.isnan(v)
            else [None if isinstance(x, float) and math.isnan(x) else x for x in v]
            if isinstance(v, list)
            else v
        )
        for k, v in d.items()
    }


def test_sharded_equals_single_process_exactly(tmp_path):
    out = tmp_path / "res"
    spawn(worker, 2, (str(out),))
    scores, targets = data()
    ref = clean(compute_metrics(scores, targets, thr=[0.3 + 0.01 * i for i in range(C)], topk=3))
    for rank in (0, 1):
        got = json.loads((tmp_path / f"res.{rank}").read_text())
        assert got["shard"] == 501  # 1001 samples: one padding duplicate, left out
        m = clean(got["metric"])
        assert m["held_block"] == [2 * 501, 19 if rank == 0 else 18]  # rows of both ranks, half of the classes
        for key, value in ref.items():
            assert m[key] == value, key  # exactly: the same entries, the same integer counts
    # per-image metrics (hamming loss, exact match, one-error): on the 10 + 10 rows the ranks passed
    from torch.utils.data import DistributedSampler

    rows = torch.cat([torch.tensor(list(DistributedSampler(TensorDataset(scores), 2, r, shuffle=True, seed=3)))[:10] for r in (0, 1)])
    ref = clean(compute_metrics(scores[rows], targets[rows], thr=0.5, sample_metrics=True))
    got = clean(json.loads((tmp_path / "res.0").read_text())["sample"])
    for key in ("hamming_loss", "subset_accuracy", "one_error", "mAP", "CF1", "OF1", "AP", "num_samples"):
        assert got[key] == ref[key], key


def test_class_blocks_cover_every_class_once():
    for c, w in ((37, 2), (10, 3), (3, 3), (20000, 8)):
        blocks = class_blocks(c, w)
        assert [i for b in blocks for i in range(b.start, b.stop)] == list(range(c))
        assert max(b.stop - b.start for b in blocks) - min(b.stop - b.start for b in blocks) <= 1


def memory_worker(rank, world, out, n, c, sharded):
    g = torch.Generator().manual_seed(rank)
    scores = torch.rand(n // world, c, generator=g)
    targets = (torch.rand(n // world, c, generator=g) < 0.05).to(torch.int8)
    # the kernel's high-water mark of this process, restarted here (getrusage's ru_maxrss would
    # also count the parent's memory from before this process exec'd)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS") * 1024
    if sharded:
        sharded_compute_metrics(scores, targets)
    else:  # what gather='all' does: every rank concatenates every rank's rows
        from mlcls.utils.dist import all_gather_cat

        compute_metrics(all_gather_cat(scores), all_gather_cat(targets))
    grown = _status_kb("VmHWM") * 1024 - before
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"grown": grown}, f)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def test_a_rank_holds_about_half_of_the_matrix(tmp_path):
    n, c = 40_000, 1_000  # 160 MB of float32 scores in all, 80 MB per rank
    matrix = n * c * 4
    spawn(memory_worker, 2, (str(tmp_path / "s"), n, c, True))
    spawn(memory_worker, 2, (str(tmp_path / "g"), n, c, False))
    for rank in (0, 1):
        sharded = json.loads((tmp_path / f"s.{rank}").read_text())["grown"]
        gathered = json.loads((tmp_path / f"g.{rank}").read_text())["grown"]
        # its class block of scores (0.5x the matrix), of int8 targets (0.125x), a slice in
        # flight and the metric's work (measured 0.85-0.9x in all): never the whole matrix,
        # against 2.5x for gathering every rank's rows (the gathered copy, padding and the cat)
        assert sharded < 1.0 * matrix, (sharded / matrix, gathered / matrix)
        assert gathered > 2.0 * matrix and sharded < 0.4 * gathered, (sharded / matrix, gathered / matrix)
