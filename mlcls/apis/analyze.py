"""What ``tools/analyze_dataset.py`` reports about a dataset's labels, as plain data."""

from __future__ import annotations

import numpy as np
import torch

from mlcls.datasets.samplers import repeat_factors
from mlcls.datasets.stats import MAX_PAIR_CLASSES, cooccurrence, known_per_image, positives_per_image, suggest_oversample_thr
from mlcls.evaluation.functional import ImageCounts, image_metrics, image_sums


def predict_nothing_baseline(pos_per_image: np.ndarray, known: np.ndarray) -> dict:
    """What a model that predicts no label scores, by the evaluation's own per-image finaliser.

    Args:
        pos_per_image: positive entries of each image [N]; known: its known entries [N].

    Returns:
        ``element_accuracy`` (100 - hamming loss), ``exact_match`` (subset accuracy), ``recall``,
        ``CR``, ``OR`` (all 0), every :data:`~mlcls.evaluation.functional.IMAGE_METRICS` entry
        but ``one_error`` (which needs scores), and a note.
    """
    n = len(pos_per_image)
    pos = torch.as_tensor(pos_per_image, dtype=torch.long)
    zeros = torch.zeros(n, dtype=torch.long)
    counts = ImageCounts(tp=zeros, fp=zeros, fn=pos, known=torch.as_tensor(known, dtype=torch.long), pos=pos,
                         top_is_pos=torch.zeros(n, dtype=torch.bool))  # fmt: skip
    m = image_metrics(image_sums(counts), n)
    return {
        "element_accuracy": 100.0 - m["hamming_loss"] if n else 0.0,
        "exact_match": m["subset_accuracy"] if n else 0.0,
        "recall": 0.0,
        "CR": 0.0,
        "OR": 0.0,
        **{k: v for k, v in m.items() if k != "one_error"},  # every per-image metric but the one that needs scores
        "note": "a model predicting no label scores this 'accuracy' with zero recall",
    }


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
                # a class without positives has nothing to repeat: no factor (was 1/sqrt(1e-12))
                "repeat_factor": float(r_class[i]) if pos[i] else None,
            }
            for i in order_cls
        ],
        "top_pairs": [
            {"pair": [dataset.classes[pair_classes[iu[0][k]]], dataset.classes[pair_classes[iu[1][k]]]], "count": int(pair_counts[k])}
            for k in order
            if pair_counts[k] > 0
        ],
        "all_zeros_baseline": predict_nothing_baseline(per_image, known_per_image(dataset)),
        "top_pairs_note": (
            f"pairs among the {MAX_PAIR_CLASSES} most frequent of {c} classes" if c > MAX_PAIR_CLASSES else "pairs among all classes"
        ),
        "labels": "verified labels only (unlisted entries are unknown)"
        if getattr(dataset, "unlisted", 0)
        else "unlisted entries are negatives",
        "oversample_thr": thr,
        "repeat_factor_epoch_size": float(r_image.sum()),
    }
