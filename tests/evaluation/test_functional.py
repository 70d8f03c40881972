"""Metrics against scikit-learn on random data with ties, empty classes and ignored entries."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support

from mlcls.evaluation import compute_metrics, tune_thresholds
from mlcls.evaluation.functional import average_precision, global_f1_threshold


@pytest.fixture(params=["blocks", "one_class"])
def both_paths(request, monkeypatch):
    """Run a test through the multi-class block path and the single-class path (used for large N)."""
    from mlcls.evaluation import functional

    if request.param == "one_class":
        monkeypatch.setattr(functional, "_CHUNK_ELEMS", 1)
    return request.param


def random_case(n=300, c=9, seed=0, ties=True, ignore=0.1):
    rng = np.random.default_rng(seed)
    scores = rng.random((n, c))
    if ties:
        scores = np.round(scores, 1)  # heavy ties
    targets = (rng.random((n, c)) < 0.25).astype(np.float32)
    targets[:, 1] = 0  # a class without positives
    targets[:, 2] = 1  # a class without negatives
    targets[rng.random((n, c)) < ignore] = -1
    return scores, targets


def sk_ap(scores, targets):
    out = []
    for j in range(scores.shape[1]):
        v = targets[:, j] >= 0
        y = targets[v, j]
        out.append(average_precision_score(y, scores[v, j]) * 100 if y.sum() > 0 else math.nan)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.usefixtures("both_paths")
def test_ap_matches_sklearn(seed, ties):
    scores, targets = random_case(seed=seed, ties=ties)
    ap = average_precision(scores, targets).numpy()
    ref = sk_ap(scores, targets)
    assert np.isnan(ap[1]) and np.isnan(ref[1])
    np.testing.assert_allclose(ap, ref, atol=1e-9, equal_nan=True)


@pytest.mark.usefixtures("both_paths")
def test_map_skips_classes_without_positives_and_counts_them():
    scores, targets = random_case()
    m = compute_metrics(scores, targets)
    ref = sk_ap(scores, targets)
    assert m["num_classes_skipped"] == 1
    assert m["mAP"] == pytest.approx(np.nanmean(ref), abs=1e-9)  # not counted as 0


@pytest.mark.usefixtures("both_paths")
def test_ap_float32_scores_and_large_blocks():
    rng = np.random.default_rng(5)
    scores = rng.random((5000, 60)).astype(np.float32)
    targets = (rng.random((5000, 60)) < 0.03).astype(np.float32)
    np.testing.assert_allclose(average_precision(scores, targets).numpy(), sk_ap(scores, targets), atol=1e-9)


@pytest.mark.usefixtures("both_paths")
def test_threshold_metrics_match_definitions_and_sklearn():
    scores, targets = random_case(ties=False, ignore=0.0)
    thr = 0.5
    m = compute_metrics(scores, targets, thr=thr)
    pred = (scores >= thr).astype(int)
    p, r, f, _ = precision_recall_fscore_support(targets, pred, average=None, zero_division=0)
    cp, cr = p.mean() * 100, r.mean() * 100
    assert m["CP"] == pytest.approx(cp)
    assert m["CR"] == pytest.approx(cr)
    assert m["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))  # harmonic mean of CP and CR ...
    assert m["F1_macro"] == pytest.approx(f.mean() * 100)  # ... is not the mean per-class F1
    assert m["CF1"] != pytest.approx(m["F1_macro"])
    op, or_, of1, _ = precision_recall_fscore_support(targets, pred, average="micro", zero_division=0)
    assert (m["OP"], m["OR"], m["OF1"]) == pytest.approx((op * 100, or_ * 100, of1 * 100))
    assert m["F1_micro"] == pytest.approx(f1_score(targets, pred, average="micro") * 100)
    np.testing.assert_allclose(m["F1"], f * 100)


@pytest.mark.usefixtures("both_paths")
def test_ignored_entries_take_no_part_in_threshold_metrics():
    scores, targets = random_case(ties=False, ignore=0.2)
    m = compute_metrics(scores, targets, thr=0.4)
    for j in range(scores.shape[1]):
        v = targets[:, j] >= 0
        pred = scores[v, j] >= 0.4
        y = targets[v, j] == 1
        assert m["tp"][j] == int((pred & y).sum()) and m["fp"][j] == int((pred & ~y).sum()) and m["fn"][j] == int((~pred & y).sum())


def test_per_class_thresholds_and_topk():
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.7, 0.6], [0.3, 0.2, 0.5]])
    targets = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0]], dtype=np.float32)
    m = compute_metrics(scores, targets, thr=[0.25, 0.75, 0.55], topk=1)
    # per-class thresholds: class0 predicts rows 0,2 (tp 2); class1 row 0 (fp); class2 row 1 (tp)
    assert (m["tp"], m["fp"], m["fn"]) == ([2, 0, 1], [0, 1, 0], [0, 1, 0])
    # top-1 predictions by hand: row0 -> c0 (tp), row1 -> c1 (tp), row2 -> c2 (fp); c0 row2 missed, c2 row1 missed
    assert m["OP@1"] == pytest.approx(200 / 3)
    assert m["OR@1"] == pytest.approx(50.0)
    assert m["CP@1"] == pytest.approx((100 + 100 + 0) / 3)
    with pytest.raises(ValueError, match="one value per class"):
        compute_metrics(scores, targets, thr=[0.5, 0.5])


@pytest.mark.usefixtures("both_paths")
def test_single_sample_and_single_class():
    m = compute_metrics(np.array([[0.7]]), np.array([[1.0]]))
    assert m["mAP"] == 100 and m["CP"] == 100 and m["OR"] == 100
    rng = np.random.default_rng(3)
    scores, targets = np.round(rng.random((300, 1)), 1), (rng.random((300, 1)) < 0.3).astype(np.float32)
    m = compute_metrics(scores[:, 0], targets[:, 0])  # 1-D input is one class
    assert m["AP"][0] == pytest.approx(average_precision_score(targets[:, 0], scores[:, 0]) * 100)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        compute_metrics(np.array([[np.nan, 0.1]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        compute_metrics(np.zeros((3, 2)), np.zeros((3, 3)))


def brute_best_f1(s, y):
    cands = np.unique(s)
    f1s = [f1_score(y, s >= t, zero_division=0) for t in cands]
    return max(f1s)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.usefixtures("both_paths")
def test_tuned_f1_thresholds_are_optimal(seed):
    scores, targets = random_case(seed=seed, ignore=0.05)
    thr, info = tune_thresholds(scores, targets, objective="f1")
    assert info["fallback"] == [1]  # the class without positives
    for j in range(scores.shape[1]):
        v = targets[:, j] >= 0
        s, y = scores[v, j], targets[v, j]
        if y.sum() == 0:
            continue
        got = f1_score(y, s >= thr[j].item(), zero_division=0)
        assert got == pytest.approx(brute_best_f1(s, y), abs=1e-12)  # no candidate does better


@pytest.mark.usefixtures("both_paths")
def test_precision_and_recall_targets():
    scores, targets = random_case(ties=False, ignore=0.0, seed=4)
    scores = scores + 0.5 * targets  # informative scores: both goals are reachable
    thr_p, info_p = tune_thresholds(scores, targets, objective="precision", target=0.4)
    thr_r, info_r = tune_thresholds(scores, targets, objective="recall", target=0.8)
    assert info_p["fallback"] == [1] and info_r["fallback"] == [1]
    for j in (0, 3, 4):
        s, y = scores[:, j], targets[:, j]
        p, r, _, _ = precision_recall_fscore_support(y, s >= thr_p[j].item(), average="binary", zero_division=0)
        assert p >= 0.4
        # it is the lowest such threshold: any lower candidate misses the precision goal
        lower = np.unique(s[(s < thr_p[j].item()) & (y == 1)])
        for t in lower:
            assert precision_recall_fscore_support(y, s >= t, average="binary", zero_division=0)[0] < 0.4
        _, r, _, _ = precision_recall_fscore_support(y, s >= thr_r[j].item(), average="binary", zero_division=0)
        assert r >= 0.8
        higher = np.unique(s[(s > thr_r[j].item()) & (y == 1)])
        for t in higher:
            assert precision_recall_fscore_support(y, s >= t, average="binary", zero_division=0)[1] < 0.8


@pytest.mark.usefixtures("both_paths")
def test_min_pos_falls_back_to_global_micro_f1_threshold():
    scores, targets = random_case(ties=False, ignore=0.0, seed=6)
    targets[:, 5] = 0
    targets[:3, 5] = 1
    thr, info = tune_thresholds(scores, targets, min_pos=5)
    assert 5 in info["fallback"] and thr[5].item() == info["global_thr"]
    g = global_f1_threshold(scores, targets)
    best = max(f1_score(targets.ravel(), scores.ravel() >= t, zero_division=0) for t in np.unique(scores))
    assert f1_score(targets.ravel(), scores.ravel() >= g) == pytest.approx(best)


def test_accepts_tensors():
    scores, targets = random_case()
    a = compute_metrics(torch.from_numpy(scores).float(), torch.from_numpy(targets))
    b = compute_metrics(scores.astype(np.float32), targets)
    assert a["mAP"] == pytest.approx(b["mAP"])


@pytest.mark.usefixtures("both_paths")
def test_compute_metrics_tune_matches_tune_thresholds():
    scores, targets = random_case(seed=7, ignore=0.05)
    m = compute_metrics(scores, targets, tune="f1")
    thr, _ = tune_thresholds(scores, targets, min_pos=1)
    got = np.asarray(m["tuned_thr"])
    assert np.isnan(got[1])  # no positives
    keep = ~np.isnan(got)
    np.testing.assert_allclose(got[keep], thr.numpy()[keep])


def test_single_class_path_with_all_entries_ignored_or_constant(monkeypatch):
    from mlcls.evaluation import functional

    monkeypatch.setattr(functional, "_CHUNK_ELEMS", 1)
    t = np.full((20, 2), -1, dtype=np.float32)
    t[:, 1] = [1, 0] * 10
    s = np.full((20, 2), 0.3, dtype=np.float32)  # one score for everything: a single tied point
    m = compute_metrics(s, t)
    assert math.isnan(m["AP"][0]) and m["AP"][1] == pytest.approx(50.0)


@pytest.mark.usefixtures("both_paths")
def test_sample_metrics_match_sklearn():
    from sklearn.metrics import accuracy_score, hamming_loss

    scores, targets = random_case(ties=False, ignore=0.0, seed=8)
    m = compute_metrics(scores, targets, thr=0.5, sample_metrics=True)
    pred = (scores >= 0.5).astype(int)
    assert m["hamming_loss"] == pytest.approx(hamming_loss(targets, pred) * 100)
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(targets, pred) * 100)
    has = targets.sum(1) > 0
    top = scores.argmax(1)
    assert m["one_error"] == pytest.approx((targets[np.arange(len(top)), top][has] == 0).mean() * 100)


def test_mostly_unknown_entries_take_the_sparse_path_with_the_same_results(monkeypatch):
    """Open Images-like targets (about 1 % known): the known entries alone are sorted per class;
    every output equals the binned path's and AP equals scikit-learn's on the known entries."""
    import math

    from sklearn.metrics import average_precision_score

    import mlcls.evaluation.functional as F

    g = torch.Generator().manual_seed(0)
    n, c = 3000, 40
    targets = torch.full((n, c), -1, dtype=torch.int8)
    known = torch.rand(n, c, generator=g) < 0.01
    targets[known] = (torch.rand(int(known.sum()), generator=g) < 0.6).to(torch.int8)
    scores = (torch.rand(n, c, generator=g) * 0.7 + (targets == 1) * 0.3).mul(50).round().div(50)  # ties
    assert float((targets >= 0).float().mean()) < F.SPARSE_FRACTION
    sparse = F.compute_metrics(scores, targets, thr=0.5, tune="f1", topk=2, sample_metrics=True)
    monkeypatch.setattr(F, "SPARSE_FRACTION", 0.0)
    dense = F.compute_metrics(scores, targets, thr=0.5, tune="f1", topk=2, sample_metrics=True)
    for key, value in dense.items():
        if isinstance(value, list):
            assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(sparse[key], value)), key
        else:
            assert sparse[key] == value or (math.isnan(value) and math.isnan(sparse[key])), key
    for j in range(c):
        y = targets[:, j].numpy()
        m = y >= 0
        if (y[m] == 1).any():
            assert sparse["AP"][j] == pytest.approx(100 * average_precision_score(y[m], scores[:, j].numpy()[m]), abs=1e-9)
