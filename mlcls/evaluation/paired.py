"""Two models scored on the same samples: is the difference real?

* :func:`delong_test`: DeLong, DeLong & Clarke-Pearson (1988)'s test for two correlated ROC AUCs,
  computed with Sun & Xu (2014)'s fast algorithm (midranks, O(N log N) per class);
* :func:`paired_bootstrap`: percentile intervals of the difference in AUROC, AP and F1 from
  resamples of the samples drawn once for both models (the pairing is what makes them narrow).

Both take ``scores_a``, ``scores_b``, ``targets`` of shape [N, C] (targets 1 / 0 / -1; entries of
-1 are left out, per class) and return per-class lists in percent.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mlcls.evaluation.functional import as_tensors, compute_metrics


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` [n], tied values sharing the mean of their ranks (float64 [n])."""
    order = np.argsort(x, kind="mergesort")
    sx = x[order]
    # runs of equal values: [start, end) in sorted order
    starts = np.flatnonzero(np.r_[True, sx[1:] != sx[:-1]])
    ends = np.r_[starts[1:], len(x)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _delong_components(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For K score rows on the same m positives [K, m] and n negatives [K, n]: the AUCs [K] and the
    structural components V10 [K, m], V01 [K, n] (Sun & Xu 2014, Algorithm 1)."""
    k, m = pos.shape
    n = neg.shape[1]
    aucs, v10, v01 = np.empty(k), np.empty((k, m)), np.empty((k, n))
    for r in range(k):
        tx, ty = midranks(pos[r]), midranks(neg[r])
        tz = midranks(np.concatenate([pos[r], neg[r]]))
        aucs[r] = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
        v10[r] = (tz[:m] - tx) / n
        v01[r] = 1.0 - (tz[m:] - ty) / m
    return aucs, v10, v01


def delong_test(scores_a, scores_b, targets) -> dict:
    """DeLong's test of AUROC(A) = AUROC(B), per class, on paired scores.

    Returns:
        ``{"AUROC_a", "AUROC_b", "diff" (B - A), "se" (of the difference), "z", "p"}``: lists of C
        values in percent (``z`` and ``p`` unitless), NaN for a class without both positives
        and negatives; ``p`` is two-sided. Two identical score sets give ``diff`` 0 and ``p`` 1.
    """
    sa, t = as_tensors(scores_a, targets)
    sb, _ = as_tensors(scores_b, targets)
    if sa.shape != sb.shape:
        raise ValueError(f"delong_test: the two score sets differ in shape: {tuple(sa.shape)} and {tuple(sb.shape)}")
    a, b, t = sa.double().numpy(), sb.double().numpy(), t.numpy()
    out = {key: [] for key in ("AUROC_a", "AUROC_b", "diff", "se", "z", "p")}
    for c in range(t.shape[1]):
        is_pos, is_neg = t[:, c] == 1, t[:, c] == 0
        m, n = int(is_pos.sum()), int(is_neg.sum())
        if m == 0 or n == 0:
            for key in out:
                out[key].append(math.nan)
            continue
        rows = np.stack([a[:, c], b[:, c]])
        aucs, v10, v01 = _delong_components(rows[:, is_pos], rows[:, is_neg])
        s10 = np.cov(v10) if m > 1 else np.zeros((2, 2))
        s01 = np.cov(v01) if n > 1 else np.zeros((2, 2))
        cov = s10 / m + s01 / n
        var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
        diff = aucs[1] - aucs[0]
        se = math.sqrt(max(var, 0.0))
        if se > 0:
            z = diff / se
            p = math.erfc(abs(z) / math.sqrt(2))
        else:  # no variance of the difference: equal curves (p = 1), or a difference with no spread
            z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
        for key, value in zip(out, (aucs[0] * 100, aucs[1] * 100, diff * 100, se * 100, z, p)):
            out[key].append(float(value))
    return out


def paired_bootstrap(scores_a, scores_b, targets, thr_a=0.5, thr_b=0.5, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile intervals of B - A for AUROC, AP and F1 per class (and mAP, mAUROC): each resample
    draws the same samples for both models.

    Args:
        thr_a, thr_b: each model's thresholds (its F1 is taken at its own operating point).
        n: resamples; ``seed``: their generator's seed.

    Returns:
        ``{"level", "resamples", "seed", "per_class": {"AUROC"|"AP"|"F1": [[low, high] per class]},
        "summary": {"mAP"|"mAUROC": [low, high]}}`` in percentage points; a class whose resample
        lacks positives (or negatives for AUROC) is left out of that resample.
    """
    sa, t = as_tensors(scores_a, targets)
    sb, _ = as_tensors(scores_b, targets)
    if not 0 < level < 1 or n < 1:
        raise ValueError(f"paired_bootstrap: level must be in (0, 1) and n >= 1, got {level}, {n}")
    g = torch.Generator().manual_seed(int(seed))
    rows, c = sa.shape
    keys, summary = ("AUROC", "AP", "F1"), ("mAP", "mAUROC")
    per = torch.empty(n, len(keys), c, dtype=torch.float64)
    summ = torch.empty(n, len(summary), dtype=torch.float64)
    for i in range(n):
        idx = torch.randint(rows, (rows,), generator=g)
        ma = compute_metrics(sa[idx], t[idx], thr=thr_a)
        mb = compute_metrics(sb[idx], t[idx], thr=thr_b)
        per[i] = torch.tensor([[y - x for x, y in zip(ma[k], mb[k])] for k in keys], dtype=torch.float64)
        summ[i] = torch.tensor([mb[k] - ma[k] for k in summary], dtype=torch.float64)
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)
    pc = torch.nanquantile(per, q, dim=0)  # [2, keys, C]
    sm = torch.nanquantile(summ, q, dim=0)
    return {
        "level": level,
        "resamples": n,
        "seed": int(seed),
        "per_class": {k: pc[:, j].T.tolist() for j, k in enumerate(keys)},
        "summary": {k: sm[:, j].tolist() for j, k in enumerate(summary)},
    }
