"""Label counts of a multi-label dataset from its CSR arrays (no dense N x C matrix); the full
statistics report is :func:`mlcls.apis.analyze.dataset_statistics`."""

from __future__ import annotations

import numpy as np

from mlcls.datasets.labels import segment_reduce


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


def known_per_image(dataset) -> np.ndarray:
    """Known (verified or implied) label entries of each image, int64 [N]: every class minus the
    stored -1 entries when unlisted classes are negatives, else the stored 0/1 entries only."""
    if getattr(dataset, "unlisted", 0) == 0:
        return dataset.num_classes - segment_reduce(np.add, (dataset.label_vals < 0).astype(np.int64), dataset.offsets)
    return segment_reduce(np.add, (dataset.label_vals >= 0).astype(np.int64), dataset.offsets)
