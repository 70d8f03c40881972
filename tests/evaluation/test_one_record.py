"""One per-class record and one per-image finaliser: a metric added in one place reaches the dense
path, the known-entries path (partial labels), the class-sharded DDP path (2 real gloo processes)
and the dataset statistics, each checked against an independent computation."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_curve

from mlcls.apis.analyze import predict_nothing_baseline
from mlcls.evaluation.functional import CLASS_METRICS, IMAGE_METRICS, compute_metrics
from mlcls.evaluation.sharded import sharded_compute_metrics
from tests.ddp import spawn


def best_f1(stats, counts):
    """Per class: the best F1 over all thresholds (%), from the AP pass's counts."""
    f1 = 2 * stats.tp_ge.double() / (stats.n_ge + stats.num_pos[stats.rows]).double()
    return stats.per_class_max(f1) * 100


def false_alarm_images(c):
    """Images with at least one false positive, among all images."""
    return c.fp > 0, torch.ones_like(c.known)


@contextmanager
def added_metrics():
    CLASS_METRICS["bestF1"] = best_f1
    IMAGE_METRICS["false_alarm_images"] = false_alarm_images
    try:
        yield
    finally:
        CLASS_METRICS.pop("bestF1")
        IMAGE_METRICS.pop("false_alarm_images")


def data(n=400, c=9, unknown=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, c, generator=g) < 0.2).float()
    scores = (torch.rand(n, c, generator=g) * 0.6 + targets * 0.4).mul(25).round().div(25)  # ties
    targets[torch.rand(n, c, generator=g) < unknown] = -1
    return scores, targets


def reference(scores, targets, thr):
    """bestF1 per class by scikit-learn's PR curve on the known entries; false-alarm images directly."""
    s, t = scores.numpy(), targets.numpy()
    best = []
    for k in range(s.shape[1]):
        known = t[:, k] >= 0
        if not (t[known, k] == 1).any():
            best.append(math.nan)
            continue
        p, r, _ = precision_recall_curve(t[known, k], s[known, k])
        best.append(float(np.max(np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0))) * 100)
    false_alarm = ((s >= thr) & (t == 0)).any(1).mean() * 100
    return best, false_alarm


def check(m, scores, targets, thr):
    best, false_alarm = reference(scores, targets, thr)
    assert m["bestF1"] == pytest.approx(best, nan_ok=True, abs=1e-9)
    assert m["mbestF1"] == pytest.approx(np.nanmean(best), abs=1e-9)
    assert m["false_alarm_images"] == pytest.approx(false_alarm, abs=1e-9)


def test_an_added_metric_reaches_the_dense_and_the_known_entries_paths():
    with added_metrics():
        scores, targets = data()
        check(compute_metrics(scores, targets, thr=0.5, sample_metrics=True), scores, targets, 0.5)
        # partial labels: 97 % unknown takes the known-entries path
        scores, targets = data(n=3000, c=40, unknown=0.97, seed=1)
        check(compute_metrics(scores, targets, thr=0.5, sample_metrics=True), scores, targets, 0.5)
        # the dataset statistics' predict-nothing baseline goes through the same finaliser
        pos = np.array([2, 0, 1, 0]), np.array([5, 5, 3, 5])
        base = predict_nothing_baseline(*pos)
        assert base["false_alarm_images"] == 0.0 and base["element_accuracy"] == pytest.approx(15 / 18 * 100)
        assert base["exact_match"] == 50.0
    assert "bestF1" not in compute_metrics(*data(), sample_metrics=True)  # gone with the registration


def _worker(rank, world, out):
    scores, targets = data()
    with added_metrics():
        mine = slice(0, 150) if rank == 0 else slice(150, None)  # uneven rows per rank
        result = sharded_compute_metrics(scores[mine], targets[mine].to(torch.int8), thr=0.5, sample_metrics=True)
    with open(f"{out}.{rank}", "w") as f:
        json.dump({k: result[k] for k in ("bestF1", "mbestF1", "false_alarm_images", "mAP", "hamming_loss")}, f)


def test_an_added_metric_reaches_the_class_sharded_path(tmp_path):
    spawn(_worker, 2, (str(tmp_path / "res"),))
    scores, targets = data()
    with added_metrics():
        single = compute_metrics(scores, targets, thr=0.5, sample_metrics=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"res.{rank}").read_text())
        check(got, scores, targets, 0.5)
        assert got["mAP"] == single["mAP"] and got["hamming_loss"] == single["hamming_loss"]
