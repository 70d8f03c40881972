"""Binary cross-entropy on logits with per-class positive weights."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlcls.losses.utils import as_class_vector, check_reduction, reduce_loss, split_targets
from mlcls.registry import LOSSES


@LOSSES.register_module()
class BCEWithLogitsLoss(nn.Module):
    """``-[w_c * (p_c * y log s(x) + (1 - y) log(1 - s(x)))]`` per element, on logits.

    Args:
        pos_weight: weight of the positive term; a scalar or a per-class list of length C (the
            ``pos_weight`` of ``torch.nn.BCEWithLogitsLoss`` / ``weighted_cross_entropy_with_logits``).
            Typical value: num_negatives / num_positives of the class.
        class_weight: per-class weight of the whole term (list of length C).
        reduction: ``mean`` (over non-ignored entries), ``sum`` or ``none`` ([B, C]).
        loss_weight: multiplies the result.
    """

    def __init__(
        self,
        pos_weight: float | Sequence[float] | None = None,
        class_weight: Sequence[float] | None = None,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.loss_weight = float(loss_weight)
        pw, cw = as_class_vector(pos_weight, "pos_weight"), as_class_vector(class_weight, "class_weight")
        self.register_buffer("pos_weight", pw, persistent=False)
        self.register_buffer("class_weight", cw, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets -1 = ignore). Returns a scalar, or [B, C] for 'none'."""
        logits, targets, valid = split_targets(logits, targets)
        loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight, reduction="none")
        if self.class_weight is not None:
            loss = loss * self.class_weight
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)
