"""Binary cross-entropy on logits with per-class positive weights."""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F

from mlcls.losses.utils import DataDerivedWeights, as_class_vector, reduce_loss, split_targets
from mlcls.losses.weights import auto_pos_weight, effective_number_weights
from mlcls.registry import LOSSES

logger = logging.getLogger("mlcls")


def resolve_class_weight(class_weight, stats: dict | None, beta: float, name: str) -> torch.Tensor | None:
    """A class-weight option: None, a per-class list, or ``effective`` (Cui et al.)."""
    if isinstance(class_weight, str):
        if class_weight != "effective":
            raise ValueError(f"{name}.class_weight must be a list or 'effective', got '{class_weight}'")
        return effective_number_weights(stats, beta) if stats else None
    return as_class_vector(class_weight, "class_weight")


@LOSSES.register_module()
class BCEWithLogitsLoss(DataDerivedWeights):
    """``-w_c [p_c y log s(x) + (1 - y) log(1 - s(x))]`` per element, on logits.

    Args:
        pos_weight: weight of the positive term: a scalar, a per-class list of length C (the
            ``pos_weight`` of ``torch.nn.BCEWithLogitsLoss`` / ``weighted_cross_entropy_with_logits``),
            or ``auto``: num_negatives / num_positives of each class in the training labels,
            capped at ``max_pos_weight``. Computed once when the model is built, logged, and
            saved in the checkpoint (a buffer of the loss).
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
        if pos_weight == "auto":
            if label_stats:
                pw = auto_pos_weight(label_stats, max_pos_weight)
                logger.info("BCEWithLogitsLoss: pos_weight=auto -> %s", [round(v, 2) for v in pw.tolist()])
            else:  # rebuilt for testing/inference: the values come back with the checkpoint
                pw = torch.ones(0)
        elif isinstance(pos_weight, str):
            raise ValueError(f"pos_weight must be a number, a per-class list or 'auto', got '{pos_weight}'")
        else:
            pw = as_class_vector(pos_weight, "pos_weight")
        self.register_buffer("pos_weight", pw)
        self.register_buffer("class_weight", resolve_class_weight(class_weight, label_stats, effective_beta, "BCEWithLogitsLoss"))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets in [0, 1], -1 = ignore). Returns a scalar, or [B, C] for 'none'."""
        logits, targets, valid = split_targets(logits, targets)
        pw = self.pos_weight if self.pos_weight is not None and self.pos_weight.numel() else None
        loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pw, reduction="none")
        if self.class_weight is not None and self.class_weight.numel():
            loss = loss * self.class_weight
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)
