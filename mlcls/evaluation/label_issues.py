"""Which given labels are likely wrong: cleanlab on out-of-sample scores, one (sample, class) pair at a time.

Method (cleanlab's confident learning, applied per class as its multi-label module does): each
class is a one-vs-rest binary problem; ``cleanlab.filter.find_label_issues`` with
``filter_by="prune_by_noise_rate"`` (the default; ``filter_by`` takes cleanlab's other methods)
estimates from the scores how many of its positives are really negatives and the other way round
(the confident joint) and flags that many pairs, those the scores contradict most. Each pair's ``quality`` is cleanlab's self-confidence (the score of
the given label: ``p`` for a 1, ``1 - p`` for a 0). Pairs are ranked by how much the scores
contradict the label, weighted by how well the model knows the class: ``(1 - quality) x AP``
of the class, highest first (within a class: lowest quality first). On the demo's noise the first
100 / 200 / 400 pairs so ranked were wrong labels 92 / 91 / 79 % of the time, against 62 / 53 / 54 %
by quality alone: the lowest qualities are mostly true positives of rare classes the model has
not learned. Unlike cleanlab's own multi-label entry point, entries whose label is unknown (-1)
take no part at all: they are never flagged and never counted in a class's estimate.

How far a class's flags can be trusted depends on how well the model learned the class: each
class's AP of the scores against the given labels is reported (``ap``), and ``min_class_ap``
leaves out the classes below it. On the demo's noise (3,000 images, docs/label_issues.md) the
flags of classes at AP >= 0.7 were right 70 % of the time, those of the classes below 15 %: a
class the model has not learned contradicts its true labels as often as its wrong ones.

The scores must be out-of-sample (``oof_scores.npz`` of ``tools/train.py --folds K``): a model
scoring the samples it was trained on has learned their labels, errors included.
"""

from __future__ import annotations

import numpy as np
import torch

from mlcls.evaluation.functional import average_precision

# cleanlab.filter.find_label_issues' methods that flag a set of pairs (its rankings by margin or
# self-confidence need a count from the caller). Measured on the demo's noise (docs/label_issues.md):
# prune_by_noise_rate (cleanlab's multi-label default) 51.9 % precision / 65.3 % recall,
# confident_learning 59.3 / 60.0, predicted_neq_given 29.6 / 73.0.
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def find_label_issues(
    scores: np.ndarray, targets: np.ndarray, min_known: int = 10, min_class_ap: float = 0.0, filter_by: str = "prune_by_noise_rate"
) -> dict:
    """Flag and rank (sample, class) pairs whose given label the scores contradict.

    Args:
        scores: [N, C] probabilities, out of sample.
        targets: [N, C] given labels (1, 0, -1 unknown).
        min_known: a class with fewer known positives or negatives than this is not examined
            (its estimate would be noise); it is listed in ``skipped``.
        min_class_ap: a class whose AP (scores against the given known labels, 0-1) is below
            this is not examined either (listed in ``skipped``, with ``unlearned`` true).
        filter_by: cleanlab's method (one of :data:`FILTERS`): ``prune_by_noise_rate`` flags as
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
        flagged = cleanlab_filter(labels=y, pred_probs=np.stack([1 - p, p], axis=1), filter_by=filter_by, n_jobs=1)
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
