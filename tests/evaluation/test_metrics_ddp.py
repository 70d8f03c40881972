"""MultiLabelMetric across 2 real gloo processes with uneven, padded shards."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from mlcls.datasets import DefaultSampler
from mlcls.evaluation import MultiLabelMetric, compute_metrics
from tests.ddp import spawn

N, C = 11, 4  # 11 samples over 2 ranks: the sampler pads one duplicate


def data():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((N, C)), 1).astype(np.float32)
    targets = (rng.random((N, C)) < 0.4).astype(np.float32)
    targets[0, 0] = targets[1, 0] = 1
    targets[2, 1] = -1
    return torch.from_numpy(scores), torch.from_numpy(targets)


def worker(rank, world, out):
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


def test_gather_equals_single_process(tmp_path):
    out = tmp_path / "res.json"
    spawn(worker, 2, (str(out),))
    got = json.loads(out.read_text())
    scores, targets = data()
    ref = compute_metrics(scores, targets, thr=0.5)
    assert got["shard"] == 6  # each rank had 6 samples: one was a padding duplicate
    assert got["n"] == N
    assert got["mAP"] == pytest.approx(ref["mAP"], abs=1e-9) and got["CF1"] == pytest.approx(ref["CF1"], abs=1e-9)
    np.testing.assert_allclose(got["AP"], ref["AP"], atol=1e-9)
