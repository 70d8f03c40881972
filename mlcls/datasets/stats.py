"""Label statistics of a multi-label dataset, computed from its CSR arrays (no dense N x C matrix)."""

from __future__ import annotations

import numpy as np

from mlcls.datasets.samplers import repeat_factors


def cooccurrence(dataset, chunk: int = 1 << 15) -> np.ndarray:
    """Images where both classes are positive, int64 [C, C] (diagonal: the class counts).

    X^T X of the [N, C] positive-label matrix, built ``chunk`` images at a time from the CSR arrays.
    """
    n, c = len(dataset), dataset.num_classes
    rows, ids = dataset.label_rows(), dataset.label_ids
    pos = dataset.label_vals == 1
    out = np.zeros((c, c), dtype=np.float64)
    for start in range(0, n, chunk):
        lo, hi = dataset.offsets[start], dataset.offsets[min(n, start + chunk)]
        keep = pos[lo:hi]
        x = np.zeros((min(chunk, n - start), c), dtype=np.float32)
        x[rows[lo:hi][keep] - start, ids[lo:hi][keep]] = 1.0
        out += x.T.astype(np.float64) @ x
    return np.rint(out).astype(np.int64)


def suggest_oversample_thr(freq: np.ndarray) -> float:
    """The median class frequency: classes rarer than the typical class get repeated."""
    nz = freq[freq > 0]
    return float(np.median(nz)) if len(nz) else 0.0


def dataset_statistics(dataset, oversample_thr: float | None = None, top_pairs: int = 20) -> dict:
    """Everything ``tools/analyze_dataset.py`` reports, as plain data.

    Keys: ``num_images``, ``num_classes``, ``labels_per_image`` (mean, max, histogram),
    ``images_without_labels``, ``classes`` (per class, most frequent first: count, frequency,
    suggested pos_weight = neg/pos, repeat factor), ``imbalance_ratio`` (max/min count over classes
    with positives), ``classes_without_positives``, ``top_pairs`` (co-occurring pairs),
    ``all_zeros_baseline`` (what predicting "no label" everywhere scores), ``oversample_thr`` and the
    epoch size it gives.
    """
    n, c = len(dataset), dataset.num_classes
    stats = dataset.label_stats()
    pos = np.asarray(stats["pos"], dtype=np.int64)
    neg = np.asarray(stats["neg"], dtype=np.int64)
    valid_pos = dataset.label_vals == 1
    per_image = np.bincount(dataset.label_rows()[valid_pos], minlength=n)
    hist = np.bincount(per_image)
    freq = pos / max(n, 1)
    thr = suggest_oversample_thr(freq) if oversample_thr is None else float(oversample_thr)
    r_class = np.maximum(1.0, np.sqrt(thr / np.maximum(freq, 1e-12))) if thr > 0 else np.ones(c)
    r_image = repeat_factors(dataset, thr) if thr > 0 else np.ones(n)
    co = cooccurrence(dataset)
    iu = np.triu_indices(c, k=1)
    pair_counts = co[iu]
    order = np.argsort(-pair_counts, kind="stable")[:top_pairs]
    total_entries = int(pos.sum() + neg.sum())
    nz = pos[pos > 0]
    order_cls = np.argsort(-pos, kind="stable")
    return {
        "num_images": n,
        "num_classes": c,
        "labels_per_image": {
            "mean": float(per_image.mean()) if n else 0.0,
            "max": int(per_image.max()) if n else 0,
            "histogram": hist.tolist(),
        },
        "images_without_labels": int((per_image == 0).sum()),
        "imbalance_ratio": float(nz.max() / nz.min()) if len(nz) else None,
        "classes_without_positives": [dataset.classes[i] for i in np.flatnonzero(pos == 0)],
        "classes": [
            {
                "name": dataset.classes[i],
                "count": int(pos[i]),
                "frequency": float(freq[i]),
                "pos_weight": float(neg[i] / pos[i]) if pos[i] else None,
                "repeat_factor": float(r_class[i]),
            }
            for i in order_cls
        ],
        "top_pairs": [
            {"pair": [dataset.classes[iu[0][k]], dataset.classes[iu[1][k]]], "count": int(pair_counts[k])}
            for k in order
            if pair_counts[k] > 0
        ],
        "all_zeros_baseline": {
            "element_accuracy": float(neg.sum() / max(total_entries, 1) * 100),
            "exact_match": float((per_image == 0).mean() * 100) if n else 0.0,
            "recall": 0.0,
            "CR": 0.0,
            "OR": 0.0,
            "note": "a model predicting no label scores this 'accuracy' with zero recall",
        },
        "oversample_thr": thr,
        "repeat_factor_epoch_size": float(r_image.sum()),
    }
