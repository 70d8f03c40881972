"""MultiLabelMetric across 2 real gloo processes with uneven, padded shards."""

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mlcls.evaluation import MultiLabelMetric, compute_metrics

N, C = 11, 4  # 11 samples over 2 ranks: the sampler pads one duplicate


def data():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((N, C)), 1).astype(np.float32)
    targets = (rng.random((N, C)) < 0.4).astype(np.float32)
    targets[0, 0] = targets[1, 0] = 1
    targets[2, 1] = -1
    return torch.from_numpy(scores), torch.from_numpy(targets)


def worker(rank, world, store, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    from torch.utils.data import TensorDataset

    from mlcls.datasets import DefaultSampler

    scores, targets = data()
    sampler = DefaultSampler(TensorDataset(scores), shuffle=False)
    idx = torch.tensor(list(sampler))
    metric = MultiLabelMetric(thr=0.5)
    for chunk in idx.split(2):  # batches of 2 with dataset indices
        metric.process(scores[chunk], targets[chunk], chunk)
    result = metric.compute()
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"shard": len(idx), "mAP": result["mAP"], "CF1": result["CF1"], "AP": result["AP"], "n": result["num_samples"]}, f)
    dist.destroy_process_group()


def test_gather_equals_single_process(tmp_path):
    out = tmp_path / "res.json"
    mp.spawn(worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    got = json.loads(out.read_text())
    scores, targets = data()
    ref = compute_metrics(scores, targets, thr=0.5)
    assert got["shard"] == 6  # each rank had 6 samples: one was a padding duplicate
    assert got["n"] == N
    assert got["mAP"] == pytest.approx(ref["mAP"], abs=1e-9) and got["CF1"] == pytest.approx(ref["CF1"], abs=1e-9)
    np.testing.assert_allclose(got["AP"], ref["AP"], atol=1e-9)
