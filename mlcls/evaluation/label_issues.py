"""Which given labels are likely wrong: cleanlab on out-of-sample scores, one (sample, class) pair at a time.

Method (cleanlab's confident learning, applied per class as its multi-label module does): each class
is a one-vs-rest binary problem. How many of its 0s are really 1s (left-out positives) and how many
of its 1s are really 0s is estimated from the scores (:func:`recall_corrected_counts`: cleanlab's
confident joint, each count divided by its threshold's recall), and
``cleanlab.filter.find_label_issues(filter_by="prune_by_class", num_to_remove_per_class=...)`` flags
that many pairs of each label, those whose scores contradict it most, and only pairs the model
predicts the other way (a 0 scored above 0.5, a 1 below). cleanlab's own estimate
(``filter_by="prune_by_noise_rate"``, its multi-label default, or its other methods) counts only the
left-out positives that score above the mean of the labelled ones, about half of them, since a
left-out positive scores like the labelled ones. Each pair's ``quality`` is cleanlab's
self-confidence (the score of the given label: ``p`` for a 1, ``1 - p`` for a 0). Pairs are ranked
by how much the scores contradict the label, weighted by how well the model knows the class:
``(1 - quality) x AP`` of the class, highest first (within a class: lowest quality first); the
lowest qualities alone are mostly true positives of rare classes the model has not learned.
Unlike cleanlab's own multi-label entry point, entries whose label is unknown (-1) take no part at
all: they are never flagged and never counted in a class's estimate.

How far a class's flags can be trusted depends on how well the model learned the class: each
class's AP of the scores against the given labels is reported (``ap``), and ``min_class_ap``
leaves out the classes below it: a class the model has not learned contradicts its true labels as
often as its wrong ones. The measured figures are in docs/benchmarks.md.

The scores must be out-of-sample (``oof_scores.npz`` of ``tools/train.py --folds K``): a model
scoring the samples it was trained on has learned their labels, errors included.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from mlcls.evaluation.functional import average_precision

# How the pairs of a class are chosen: cleanlab.filter.find_label_issues' methods that flag a set of
# pairs (its rankings by margin or self-confidence need a count from the caller), and
# recall_corrected (the default: cleanlab's prune_by_class with the counts of recall_corrected_counts).
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given", "recall_corrected")


def recall_corrected_counts(y: np.ndarray, p: np.ndarray) -> list[int]:
    """How many of one class's labels are wrong: ``[labelled 0 but positive, labelled 1 but negative]``.

    cleanlab's confident joint counts the pairs whose score clears the other label's threshold
    (the mean score of that label's own pairs) and scales each row to its label's count. Half or
    so of a class's positives score below their own mean, and a left-out positive scores like
    the labelled ones (the annotator skipped it at random), so the confident joint misses as many
    left-out positives as positives fall below the threshold, on a class the model knows as well
    as on one it does not. Here each count is divided by its threshold's recall instead: the
    share of the label's own pairs that clear it.

    Args:
        y: [N] given labels (0/1) of one class.
        p: [N] out-of-sample probabilities of the class.
    """
    counts = []
    for given, conf in ((0, p), (1, 1 - p)):  # conf: the score of the other label
        own, other = conf[y != given], conf[y == given]
        thr = own.mean()  # cleanlab's threshold of the other label
        recall = float((own >= thr).mean())
        counts.append(min(int(round((other >= thr).sum() / max(recall, 1e-6))), len(other)))
    return counts


def find_label_issues(
    scores: np.ndarray, targets: np.ndarray, min_known: int = 10, min_class_ap: float = 0.0, filter_by: str = "recall_corrected"
) -> dict:
    """Flag and rank (sample, class) pairs whose given label the scores contradict.

    Args:
        scores: [N, C] probabilities, out of sample.
        targets: [N, C] given labels (1, 0, -1 unknown).
        min_known: a class with fewer known positives or negatives than this is not examined
            (its estimate would be noise); it is listed in ``skipped``.
        min_class_ap: a class whose AP (scores against the given known labels, 0-1) is below
            this is not examined either (listed in ``skipped``, with ``unlearned`` true).
        filter_by: one of :data:`FILTERS`: ``recall_corrected`` (the default) flags as many pairs
            of each label as :func:`recall_corrected_counts` estimates wrong; ``prune_by_noise_rate`` flags as
            many pairs as the confident joint estimates wrong; ``confident_learning`` only the
            off-diagonal pairs of the confident joint (fewer flags, more of them right);
            ``predicted_neq_given`` every pair on the wrong side of its class's threshold
            (more found, far fewer right).

    Returns:
        ``{"pairs": [(row, class, given, score, quality)] most likely wrong first ((1 - quality)
        x the class's AP, highest first), "per_class":
        [{"known", "positives", "ap", "unlearned", "flagged", "missing", "extra", "rate"}],
        "skipped": [class ids]}``;
        ``missing`` = labelled 0 and scored high (a positive the annotator left out), ``extra`` =
        labelled 1 and scored low.
    """
    from cleanlab.filter import find_label_issues as cleanlab_filter

    if filter_by not in FILTERS:
        raise ValueError(f"filter_by: expected one of {', '.join(FILTERS)}, got {filter_by!r}")
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    # percent -> 0-1; NaN: a class without a known positive
    ap = average_precision(torch.from_numpy(s), torch.from_numpy(t.astype(np.float32))).double().numpy() / 100
    pairs, per_class, skipped = [], [], []
    for c in range(t.shape[1]):
        known = np.flatnonzero(t[:, c] >= 0)
        y = (t[known, c] > 0.5).astype(int)
        npos = int(y.sum())
        row = {"known": int(len(known)), "positives": npos, "ap": None if np.isnan(ap[c]) else float(ap[c]), "unlearned": False,
               "flagged": 0, "missing": 0, "extra": 0, "rate": 0.0}  # fmt: skip
        per_class.append(row)
        if npos < min_known or len(y) - npos < min_known:
            skipped.append(c)
            continue
        if ap[c] < min_class_ap:
            row["unlearned"] = True
            skipped.append(c)
            continue
        p = np.clip(s[known, c], 1e-6, 1 - 1e-6)
        probs = np.stack([1 - p, p], axis=1)
        # cleanlab warns of small classes and divides by zero on them; the per-class table (known,
        # positives, AP) says what the user needs, so its warnings do not reach them
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if filter_by == "recall_corrected":
                flagged = cleanlab_filter(
                    labels=y, pred_probs=probs, filter_by="prune_by_class", num_to_remove_per_class=recall_corrected_counts(y, p), n_jobs=1
                )
            else:
                flagged = cleanlab_filter(labels=y, pred_probs=probs, filter_by=filter_by, n_jobs=1)
        quality = np.where(y == 1, p, 1 - p)  # cleanlab's self-confidence
        for i in np.flatnonzero(flagged):
            pairs.append((int(known[i]), c, int(y[i]), float(s[known[i], c]), float(quality[i])))
        row["flagged"] = int(flagged.sum())
        row["missing"] = int((flagged & (y == 0)).sum())
        row["extra"] = int((flagged & (y == 1)).sum())
        row["rate"] = row["flagged"] / max(len(known), 1)
    # the contradiction weighted by the class's AP: a flag is as good as the model on its class
    pairs.sort(key=lambda x: (-(1 - x[4]) * ap[x[1]], x[4], x[0], x[1]))
    return {"pairs": pairs, "per_class": per_class, "skipped": skipped}


#: what an automatic use of the flags does with them (no reviewer): ``missing_ignore`` makes the
#: "missing" flags (labelled 0, scored high) unknown (-1), never inventing a positive;
#: ``missing_only`` flips them to 1; ``ignore`` makes every flagged pair unknown; ``all`` flips every flag
FIX_POLICIES = ("missing_ignore", "missing_only", "ignore", "all")


def policy_fixes(pairs, policy: str) -> list[tuple[int, int, int]]:
    """``[(row, class, label)]``: the fixes :data:`FIX_POLICIES` ``policy`` makes of the flagged
    ``pairs`` (:func:`find_label_issues`' ``(row, class, given, score, quality)``)."""
    if policy not in FIX_POLICIES:
        raise ValueError(f"policy: expected one of {', '.join(FIX_POLICIES)}, got {policy!r}")
    out = []
    for r, c, given, *_ in pairs:
        if policy in ("missing_only", "missing_ignore") and given != 0:
            continue
        out.append((int(r), int(c), -1 if policy in ("ignore", "missing_ignore") else 1 - int(given)))
    return out
