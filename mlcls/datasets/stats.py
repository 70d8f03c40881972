"""Label statistics of a multi-label dataset, computed from its CSR arrays (no dense N x C matrix)."""

from __future__ import annotations

import numpy as np

from mlcls.datasets.labels import segment_reduce
from mlcls.datasets.samplers import repeat_factors


def cooccurrence(dataset, chunk: int = 1 << 15, classes: np.ndarray | None = None) -> np.ndarray:
    """Images where both classes are positive, int64 [K, K] (diagonal: the class counts).

    X^T X of the [N, K] positive-label matrix, built ``chunk`` images at a time from the CSR arrays.
    ``classes``: only these K class indices (default all C; a 20k-class set asks for its top ones).
    """
    n, c = len(dataset), dataset.num_classes
    column = np.arange(c) if classes is None else np.full(c, -1)
    if classes is not None:
        column[np.asarray(classes)] = np.arange(len(classes))
    k = c if classes is None else len(classes)
    out = np.zeros((k, k), dtype=np.float64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        lo, hi = dataset.offsets[start], dataset.offsets[stop]
        rows = np.repeat(np.arange(stop - start), np.diff(dataset.offsets[start : stop + 1]))
        col = column[dataset.label_ids[lo:hi]]
        keep = (dataset.label_vals[lo:hi] == 1) & (col >= 0)
        x = np.zeros((stop - start, k), dtype=np.float32)
        x[rows[keep], col[keep]] = 1.0
        out += x.T.astype(np.float64) @ x
    return np.rint(out).astype(np.int64)


def positives_per_image(dataset) -> np.ndarray:
    """Positive labels of each image, int64 [N] (one reduceat over the CSR segments)."""
    return segment_reduce(np.add, (dataset.label_vals == 1).astype(np.int64), dataset.offsets)


#: co-occurrence pairs are counted among at most this many classes (the most frequent)
MAX_PAIR_CLASSES = 500


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
    per_image = positives_per_image(dataset)
    hist = np.bincount(per_image)
    freq = dataset.class_frequency()
    thr = suggest_oversample_thr(freq) if oversample_thr is None else float(oversample_thr)
    r_class = np.maximum(1.0, np.sqrt(thr / np.maximum(freq, 1e-12))) if thr > 0 else np.ones(c)
    r_image = repeat_factors(dataset, thr) if thr > 0 else np.ones(n)
    order_cls = np.argsort(-pos, kind="stable")
    # pairs among the most frequent classes only: a C x C matrix of 20k classes would be 3 GB
    pair_classes = order_cls[:MAX_PAIR_CLASSES] if c > MAX_PAIR_CLASSES else np.arange(c)
    co = cooccurrence(dataset, classes=pair_classes)
    iu = np.triu_indices(len(pair_classes), k=1)
    pair_counts = co[iu]
    order = np.argsort(-pair_counts, kind="stable")[:top_pairs]
    total_entries = int(pos.sum() + neg.sum())
    nz = pos[pos > 0]
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
            {"pair": [dataset.classes[pair_classes[iu[0][k]]], dataset.classes[pair_classes[iu[1][k]]]], "count": int(pair_counts[k])}
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
        "top_pairs_note": (
            f"pairs among the {MAX_PAIR_CLASSES} most frequent of {c} classes" if c > MAX_PAIR_CLASSES else "pairs among all classes"
        ),
        "labels": "verified labels only (unlisted entries are unknown)"
        if getattr(dataset, "unlisted", 0)
        else "unlisted entries are negatives",
        "oversample_thr": thr,
        "repeat_factor_epoch_size": float(r_image.sum()),
    }
