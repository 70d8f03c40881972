"""Sigmoid focal loss (Lin et al., 2017) for multi-label logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcls.losses.utils import LossBase, reduce_loss, split_targets
from mlcls.registry import LOSSES


@LOSSES.register_module()
class FocalLoss(LossBase):
    """``alpha_t * (1 - p_t)^gamma * BCE(x, y)`` per element; equals ``torchvision.ops.sigmoid_focal_loss``.

    Args:
        gamma: focusing parameter; 0 gives alpha-weighted BCE.
        alpha: weight of positives in (0, 1) (negatives get ``1 - alpha``); a negative value disables it.
        reduction: ``mean`` (over non-ignored entries), ``sum`` or ``none``.
        loss_weight: multiplies the result.
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.gamma, self.alpha = float(gamma), float(alpha)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets in [0, 1], -1 = ignore)."""
        logits, targets, valid = split_targets(logits, targets)
        p = torch.sigmoid(logits)
        ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce * (1 - p_t) ** self.gamma
        if self.alpha >= 0:
            loss = (self.alpha * targets + (1 - self.alpha) * (1 - targets)) * loss
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)
