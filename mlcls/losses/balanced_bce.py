"""BCE with separate positive and negative weights per class."""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F

from mlcls.losses.utils import DataDerivedWeights, as_class_vector, reduce_loss, split_targets
from mlcls.losses.weights import balanced_weights
from mlcls.registry import LOSSES

logger = logging.getLogger("mlcls")


@LOSSES.register_module()
class BalancedBCELoss(DataDerivedWeights):
    """``-[w_pos[c] y log s(x) + w_neg[c] (1 - y) log(1 - s(x))]`` per element.

    Per-class weighting for sets where one class is in most images (e.g. 913 of 1,130) and another in few: both the
    occurrence and the non-occurrence of each class are weighted, by the inverse of their
    frequency, so a frequent class does not learn "always present" nor a rare one "always absent".

    Args:
        pos_weights, neg_weights: per-class lists, or ``auto`` (both): ``w_pos = N / pos_c``,
            ``w_neg = N / neg_c`` from the training labels, halved when ``normalize`` so the total
            weight per class equals unweighted BCE's. Written into the config stored with each checkpoint.
        normalize: see above (only for ``auto``).
        reduction: ``mean`` (over non-ignored entries), ``sum`` or ``none``.
        loss_weight: multiplies the result.
        label_stats: training label counts (passed by the builder).
    """

    def __init__(
        self,
        pos_weights: Sequence[float] | str = "auto",
        neg_weights: Sequence[float] | str = "auto",
        normalize: bool = True,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        label_stats: dict | None = None,
    ) -> None:
        super().__init__(reduction, loss_weight)
        if (pos_weights == "auto") != (neg_weights == "auto"):
            raise ValueError("pos_weights and neg_weights must both be 'auto' or both be lists")
        if pos_weights == "auto":
            w_pos = w_neg = None
            if label_stats:
                w_pos, w_neg = balanced_weights(label_stats, normalize)
                self.resolved = {"pos_weights": [round(v, 6) for v in w_pos.tolist()], "neg_weights": [round(v, 6) for v in w_neg.tolist()]}
                logger.info(
                    "BalancedBCELoss: auto weights pos=%s neg=%s",
                    [round(v, 2) for v in w_pos.tolist()],
                    [round(v, 2) for v in w_neg.tolist()],
                )
            else:
                self.unresolved = "pos_weights/neg_weights: auto"
        else:
            w_pos, w_neg = as_class_vector(pos_weights, "pos_weights"), as_class_vector(neg_weights, "neg_weights")
            if w_pos.dim() != 1 or w_pos.shape != w_neg.shape:
                raise ValueError("pos_weights and neg_weights must be per-class lists of the same length")
        self.register_buffer("pos_weights", w_pos, persistent=False)
        self.register_buffer("neg_weights", w_neg, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets in [0, 1], -1 = ignore)."""
        self.check_resolved()
        logits, targets, valid = split_targets(logits, targets)
        if self.pos_weights.numel() != logits.shape[1]:
            raise ValueError(f"BalancedBCELoss has {self.pos_weights.numel()} class weights for {logits.shape[1]} classes")
        log_p = -F.softplus(-logits)
        log_not_p = -F.softplus(logits)
        loss = -(self.pos_weights * targets * log_p + self.neg_weights * (1 - targets) * log_not_p)
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)
