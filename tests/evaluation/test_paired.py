"""Paired comparisons of two models on the same samples: DeLong's test against the direct
O(m*n) formula of DeLong et al. (1988), AUCs against scikit-learn, and the paired bootstrap."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mlcls.evaluation.paired import delong_test, midranks, paired_bootstrap


def delong_direct(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(AUC A, AUC B, two-sided p) from DeLong et al.'s placement values, every (positive, negative)
    pair compared directly (psi = 1, 1/2 for a tie, 0): the textbook definition, no ranks."""

    def placements(s):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None]).astype(float) + 0.5 * (pos[:, None] == neg[None])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)  # AUC, V10 per positive, V01 per negative

    auc_a, v10a, v01a = placements(a)
    auc_b, v10b, v01b = placements(b)
    m, n = len(v10a), len(v01a)
    s10, s01 = np.cov(np.stack([v10a, v10b])), np.cov(np.stack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (auc_b - auc_a) / math.sqrt(var)
    return auc_a, auc_b, math.erfc(abs(z) / math.sqrt(2))


def test_midranks_average_tied_ranks():
    assert midranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_delong_matches_the_direct_formula_and_sklearn():
    rng = np.random.default_rng(0)
    n, c = 300, 4
    y = (rng.random((n, c)) < [0.1, 0.3, 0.5, 0.05]).astype(np.float32)
    a = (y * rng.normal(1.0, 1, (n, c)) + rng.normal(0, 1, (n, c))).astype(np.float32)
    b = (a + y * 0.8 + rng.normal(0, 0.5, (n, c))).astype(np.float32)
    a[:, 2] = np.round(a[:, 2], 1)  # ties, within and across the classes' positives and negatives
    y[:7, 3] = -1  # unknown entries take no part
    out = delong_test(a, b, y)
    for k in range(c):
        keep = y[:, k] >= 0
        ref_a, ref_b, ref_p = delong_direct(a[keep, k], b[keep, k], y[keep, k])
        assert out["AUROC_a"][k] == pytest.approx(100 * roc_auc_score(y[keep, k], a[keep, k]), abs=1e-9)
        assert out["AUROC_b"][k] == pytest.approx(100 * ref_b, abs=1e-9) and out["AUROC_a"][k] == pytest.approx(100 * ref_a, abs=1e-9)
        assert out["p"][k] == pytest.approx(ref_p, rel=1e-9, abs=1e-12)
        assert out["diff"][k] == pytest.approx(out["AUROC_b"][k] - out["AUROC_a"][k])
    assert min(out["p"]) < 0.05  # B really is better somewhere: the test can find it


def test_identical_models_and_classes_without_negatives():
    rng = np.random.default_rng(1)
    y = (rng.random((50, 2)) < 0.3).astype(np.float32)
    y[:, 1] = 1  # no negatives: no AUROC
    s = rng.random((50, 2)).astype(np.float32)
    out = delong_test(s, s, y)
    assert out["diff"][0] == 0 and out["p"][0] == 1.0
    assert all(math.isnan(out[k][1]) for k in out)


def test_paired_bootstrap_intervals_contain_the_difference_and_vanish_for_equal_models():
    rng = np.random.default_rng(2)
    y = (rng.random((200, 3)) < 0.3).astype(np.float32)
    a = rng.random((200, 3)).astype(np.float32)
    b = np.clip(a + 0.4 * y * rng.random((200, 3)), 0, 1).astype(np.float32)
    res = paired_bootstrap(a, b, y, n=200, seed=0)
    dl = delong_test(a, b, y)
    for k in range(3):
        lo, hi = res["per_class"]["AUROC"][k]
        assert lo <= dl["diff"][k] <= hi and lo > 0  # B is better, and the paired interval says so
    same = paired_bootstrap(a, a, y, n=50, seed=0)
    assert all(v == [0.0, 0.0] for key in ("AUROC", "AP", "F1") for v in same["per_class"][key])
    assert paired_bootstrap(a, b, y, n=50, seed=3) == paired_bootstrap(a, b, y, n=50, seed=3)  # seeded


def test_paired_statistics_need_the_same_samples():
    import torch

    from mlcls.errors import DataError
    from mlcls.report.data import paired_comparison, same_samples_problem
    from mlcls.report.store import Evaluation

    t = torch.tensor([[1.0, 0], [0, 1], [1, 1]])
    run = Evaluation(torch.rand(3, 2), t, ["x", "y", "z"], ["a", "b"], [0.5, 0.5])
    assert same_samples_problem(run, replace(run)) is None
    assert same_samples_problem(run, replace(run, paths=["x", "q", "z"])) == "their samples differ (row 1: y in A, q in B)"
    assert same_samples_problem(run, replace(run, paths=["x"])) == "A has 3 samples, B 1"
    assert same_samples_problem(run, replace(run, targets=1 - t)) == "the same samples carry different labels in A and B"
    with pytest.raises(DataError, match="paired statistics need both evaluations on the same samples"):
        paired_comparison(run, replace(run, classes=["b", "a"]))


def test_the_comparison_cautions_classes_with_few_samples_and_gives_no_f1_interval_without_positives():
    from mlcls.report.data import format_paired, paired_comparison
    from mlcls.report.store import Evaluation

    g = torch.Generator().manual_seed(0)
    t = torch.zeros(60, 3, dtype=torch.int8)
    t[:3, 0] = 1  # 3 positives: a p-value to read with care
    t[:30, 2] = 1
    a = Evaluation(torch.rand(60, 3, generator=g), t, [f"{i}.png" for i in range(60)], ["x", "y", "z"], [0.5] * 3)
    b = replace(a, scores=torch.rand(60, 3, generator=g))
    paired = paired_comparison(a, b, resamples=30)
    x, y, z = paired["classes"]
    assert x["few"] and x["positives"] == 3 and not z["few"]
    assert y["dF1_ci"] == [None, None]  # no positive: F1 is 0 whatever either model does
    assert z["tests_disagree"] in (True, False) and y["tests_disagree"] is None
    text = format_paired(paired, "A", "B")
    assert "(few: 3 positives, 57 negatives)" in text and "Classes marked 'few'" in text and "sig.: p < 0.05 in DeLong's test" in text


def test_classes_without_negatives_are_counted_and_said():
    from mlcls.apis.test import format_report
    from mlcls.evaluation import compute_metrics

    t = torch.tensor([[1, 0], [1, 1], [1, 0]]).float()
    m = compute_metrics(torch.rand(3, 2), t)
    assert m["ap_trivial"] == 1 and m["AP"][0] == 100.0
    assert "1 classes without negatives score AP 100 whatever the model; mAP counts them" in format_report(m, ["a", "b"])
