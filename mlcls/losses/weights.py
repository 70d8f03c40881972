"""Class weights computed from training-label counts (the ``auto`` options of the losses).

``stats`` is :meth:`MultiLabelDataset.label_stats`: ``{"num_samples": N, "pos": [C], "neg": [C]}``.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger("mlcls")


def _counts(stats: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
    if not stats or "pos" not in stats:
        raise ValueError("'auto' weights need the training label counts; build the model with label_stats")
    pos = torch.as_tensor(stats["pos"], dtype=torch.float64)
    neg = torch.as_tensor(stats["neg"], dtype=torch.float64)
    return pos, neg, int(stats["num_samples"])


def auto_pos_weight(stats: dict, max_pos_weight: float = 100.0) -> torch.Tensor:
    """``num_neg / num_pos`` per class, capped at ``max_pos_weight`` (also for classes without positives). [C]"""
    pos, neg, _ = _counts(stats)
    w = torch.where(pos > 0, neg / pos.clamp(min=1), torch.full_like(pos, max_pos_weight))
    capped = torch.nonzero((pos == 0) | (w > max_pos_weight)).flatten().tolist()
    if capped:
        names = stats.get("classes")
        shown = ", ".join(str(names[i]) if names else str(i) for i in capped[:10])
        logger.warning(
            "pos_weight auto: %d class(es) capped at max_pos_weight=%g (no or very few positives in training): %s",
            len(capped), max_pos_weight, shown,
        )  # fmt: skip
    return w.clamp(max=max_pos_weight).float()


def balanced_weights(stats: dict, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``w_pos = N / pos_c`` and ``w_neg = N / neg_c`` (per-class weighting of occurrence and non-occurrence). ([C], [C])

    With ``normalize`` both are halved, so that ``(pos_c * w_pos + neg_c * w_neg) / N = 1``: every
    class keeps the total weight it has in unweighted BCE, split equally between its positives and
    its negatives. A class without positives (or negatives) gets weight 1 on the side it has.
    """
    pos, neg, n = _counts(stats)
    w_pos = torch.where(pos > 0, n / pos.clamp(min=1), torch.ones_like(pos))
    w_neg = torch.where(neg > 0, n / neg.clamp(min=1), torch.ones_like(neg))
    if normalize:
        w_pos, w_neg = w_pos / 2, w_neg / 2
    return w_pos.float(), w_neg.float()


def effective_number_weights(stats: dict, beta: float = 0.9999) -> torch.Tensor:
    """Cui et al. (CVPR 2019): ``(1 - beta) / (1 - beta^n_c)`` per class, scaled to mean 1. [C]"""
    pos, _, _ = _counts(stats)
    eff = (1 - beta**pos) / (1 - beta)
    w = torch.where(pos > 0, 1.0 / eff.clamp(min=1e-12), torch.zeros_like(pos))
    w = torch.where(pos > 0, w, w[pos > 0].max() if (pos > 0).any() else torch.ones_like(pos))
    return (w / w.mean()).float()
