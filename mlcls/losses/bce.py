"""Binary cross-entropy on logits with per-class positive weights."""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F

from mlcls.losses.utils import DataDerivedWeights, reduce_loss, split_targets
from mlcls.losses.weights import auto_pos_weight, effective_number_weights
from mlcls.registry import LOSSES

logger = logging.getLogger("mlcls")


@LOSSES.register_module()
class BCEWithLogitsLoss(DataDerivedWeights):
    """``-w_c [p_c y log s(x) + (1 - y) log(1 - s(x))]`` per element, on logits.

    Args:
        pos_weight: weight of the positive term: a scalar, a per-class list of length C (the
            ``pos_weight`` of ``torch.nn.BCEWithLogitsLoss`` / ``weighted_cross_entropy_with_logits``),
            or ``auto``: num_negatives / num_positives of each class in the training labels,
            capped at ``max_pos_weight``. Computed once when the model is built, logged, and
            written as plain numbers into the config stored with each checkpoint.
        class_weight: per-class weight of the whole term: a list, or ``effective`` for the
            effective-number weights of Cui et al. with ``effective_beta``.
        reduction: ``mean`` (over non-ignored entries), ``sum`` or ``none`` ([B, C]).
        loss_weight: multiplies the result.
        label_stats: training label counts (passed by the builder, needed by ``auto``).
    """

    def __init__(
        self,
        pos_weight: float | Sequence[float] | str | None = None,
        class_weight: Sequence[float] | str | None = None,
        max_pos_weight: float = 100.0,
        effective_beta: float = 0.9999,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        label_stats: dict | None = None,
    ) -> None:
        super().__init__(reduction, loss_weight)
        pw = self.class_vector("pos_weight", pos_weight, "auto", lambda st: auto_pos_weight(st, max_pos_weight), label_stats)
        if "pos_weight" in self.resolved:
            logger.info("BCEWithLogitsLoss: pos_weight=auto -> %s", [round(v, 2) for v in self.resolved["pos_weight"]])
        cw = self.class_vector(
            "class_weight", class_weight, "effective", lambda st: effective_number_weights(st, effective_beta), label_stats
        )
        self.register_buffer("pos_weight", pw, persistent=False)
        self.register_buffer("class_weight", cw, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets in [0, 1], -1 = ignore). Returns a scalar, or [B, C] for 'none'."""
        self.check_resolved()
        logits, targets, valid = split_targets(logits, targets)
        loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight, reduction="none")
        if self.class_weight is not None:
            loss = loss * self.class_weight
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)
