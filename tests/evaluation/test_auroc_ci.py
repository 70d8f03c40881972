"""ROC AUC, specificity, sensitivity-at-specificity thresholds and bootstrap intervals, against
scikit-learn and direct computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mlcls.evaluation.functional import bootstrap_ci, compute_metrics, roc_auc, tune_thresholds


def data(n=300, c=6, seed=0, unknown=0.1):
    rng = np.random.default_rng(seed)
    t = (rng.random((n, c)) < 0.3).astype(np.float32)
    s = np.round(np.clip(0.35 * t + rng.random((n, c)) * 0.65, 0, 1), 2).astype(np.float32)  # rounded: many ties
    t[:, 2] = 0  # no positives
    t[:, 3] = 1  # no negatives
    t[rng.random((n, c)) < unknown] = -1
    return s, t


def sklearn_auc(s, t):
    out = []
    for c in range(s.shape[1]):
        m = t[:, c] >= 0
        y = t[m, c]
        out.append(roc_auc_score(y, s[m, c]) * 100 if 0 < y.sum() < len(y) else math.nan)
    return np.array(out)


@pytest.mark.parametrize("unknown", [0.0, 0.1, 0.97])  # dense, some unknown, mostly unknown (the known-entries path)
def test_auroc_equals_scikit_learn_with_ties_skipped_classes_and_unknown_targets(unknown):
    s, t = data(n=2000 if unknown > 0.9 else 300, unknown=unknown)
    ref = sklearn_auc(s, t)
    m = compute_metrics(s, t)
    np.testing.assert_allclose(np.array(m["AUROC"]), ref, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(roc_auc(s, t).numpy() * 100, ref, rtol=1e-12, equal_nan=True)
    assert m["auroc_skipped"] == int(np.isnan(ref).sum()) >= 2
    assert m["mAUROC"] == pytest.approx(np.nanmean(ref), rel=1e-12)


def test_specificity_at_the_thresholds_in_use():
    s, t = data(unknown=0.1)
    thr = [0.3, 0.5, 0.5, 0.5, 0.6, 0.7]
    m = compute_metrics(s, t, thr=thr)
    for c in range(6):
        neg = t[:, c] == 0
        expected = (s[neg, c] < thr[c]).mean() * 100 if neg.any() else math.nan
        assert m["specificity"][c] == pytest.approx(expected, nan_ok=True)
        assert m["num_neg"][c] == int(neg.sum())
    assert m["mSpec"] == pytest.approx(np.nanmean(m["specificity"]))


def test_highest_sensitivity_at_a_specificity_goal():
    s, t = data(unknown=0.0)
    thr, info = tune_thresholds(s, t, objective="specificity", target=0.9)
    for c in (0, 1, 4, 5):
        neg, pos = t[:, c] == 0, t[:, c] == 1
        # brute force over every distinct score: the lowest threshold whose specificity is >= 0.9
        ok = [x for x in np.unique(s[:, c]) if (s[neg, c] < x).mean() >= 0.9]
        best = min(ok)
        chosen = float(thr[c])
        assert (s[pos, c] >= chosen).mean() == pytest.approx((s[pos, c] >= best).mean()) and (s[neg, c] < chosen).mean() >= 0.9
    assert 2 in info["fallback"] and 3 in info["fallback"]  # a class without positives or negatives cannot be tuned


def test_bootstrap_intervals_are_reproducible_and_cover_the_estimate():
    s, t = data(n=120, unknown=0.0)
    a = bootstrap_ci(s, t, n=200, seed=7)
    b = bootstrap_ci(s, t, n=200, seed=7)
    c = bootstrap_ci(s, t, n=200, seed=8)
    assert json.dumps(a) == json.dumps(b) and json.dumps(a) != json.dumps(c)
    m = compute_metrics(s, t)
    for key in ("mAP", "mAUROC", "CF1", "OF1"):
        lo, hi = a["summary"][key]
        assert lo < m[key] < hi and hi - lo > 1  # 120 samples: a visible uncertainty
    for c_ in (0, 1, 4, 5):
        lo, hi = a["per_class"]["AUROC"][c_]
        assert lo < m["AUROC"][c_] < hi
    assert all(math.isnan(v) for v in a["per_class"]["AUROC"][2])  # never defined: no interval
    # the same resamples written out: percentiles of the resampled mAPs
    g = torch.Generator().manual_seed(7)
    maps = []
    for _ in range(30):
        idx = torch.randint(120, (120,), generator=g).numpy()
        maps.append(compute_metrics(s[idx], t[idx])["mAP"])
    assert bootstrap_ci(s, t, n=30, seed=7)["summary"]["mAP"] == pytest.approx(np.quantile(maps, [0.025, 0.975]).tolist())
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_ci(s, t, n=10, level=1.5)
