"""Hill loss (Zhang et al., "Simple and Robust Loss Design for Multi-Label Learning with Missing Labels", 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcls.losses.utils import LossBase, reduce_loss, split_targets
from mlcls.registry import LOSSES


@LOSSES.register_module()
class HillLoss(LossBase):
    """A negative side shaped like a hill, which gives little weight to confident "negatives"
    (likely missing positives), and a focal margin on the positive side.

    Per entry, with ``p = sigmoid(x)`` and ``p_m = sigmoid(x - margin)``::

        L+ = -(1 - p_m)^gamma log(p_m)           (y = 1)
        L- = (lamb - p) p^2                      (y = 0)

    ``dL-/dp = 2 lamb p - 3 p^2`` is the hill: it peaks at ``p = lamb / 3`` (0.5 at the default
    1.5) and falls toward ``p = 1``, so a negative the model scores high, more likely a missing
    label, pulls less than a doubtful one (BCE pulls it ever harder). Follows the authors' code for
    soft targets too: ``-(y log p_m - (1 - y)(lamb - p) p^2) ((1 - p_m) y + 1 - y)^gamma``.

    Args:
        lamb: the hill's shape (the paper keeps 1.5).
        margin: subtracted from the logits of positives (0.5 to 1 in the paper).
        gamma: the focal exponent of the positive side.
        reduction: ``mean`` (over non-ignored entries), ``sum`` or ``none``; targets of -1 are ignored.
        loss_weight: multiplies the result.
    """

    def __init__(
        self, lamb: float = 1.5, margin: float = 1.0, gamma: float = 2.0, reduction: str = "mean", loss_weight: float = 1.0
    ) -> None:
        super().__init__(reduction, loss_weight)
        self.lamb, self.margin, self.gamma = float(lamb), float(margin), float(gamma)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets in [0, 1], -1 = ignore). Returns a scalar, or [B, C] for 'none'."""
        x, y, valid = split_targets(logits, targets)
        p = torch.sigmoid(x)
        p_m = torch.sigmoid(x - self.margin)
        pos = y * F.logsigmoid(x - self.margin)
        neg = (1 - y) * -(self.lamb - p) * p**2
        loss = -(pos + neg) * ((1 - p_m) * y + (1 - y)) ** self.gamma
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)
