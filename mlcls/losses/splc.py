"""Self-paced loss correction, SPLC (Zhang et al., "Simple and Robust Loss Design for Multi-Label Learning with Missing Labels", 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcls.losses.utils import LossBase, reduce_loss, split_targets
from mlcls.registry import LOSSES


@LOSSES.register_module()
class SPLCLoss(LossBase):
    """Focal margin loss whose negatives scored above ``tau`` are taken as positives after a warm-up.

    Per entry (the authors' code): the logits of labelled positives lose ``margin``; from epoch
    ``warmup`` on (epochs counted from 0), a labelled 0 with ``sigmoid(x) > tau`` is trained as a
    1 for this step (a missing label, corrected while the model is confident: "self-paced"); then
    with ``p = sigmoid(x)``, ``p_t = (1 - p) y + p (1 - y)``::

        L = -(y log p + (1 - y) log(1 - p)) p_t^gamma

    (a focal loss on both sides). Nothing is stored: each step decides again from the scores.

    Args:
        tau: the score above which a labelled 0 is taken as a positive (0.6 in the paper).
        warmup: epochs before any correction (the paper corrects after the first epoch: 1).
        margin: subtracted from the logits of labelled positives.
        gamma: the focal exponent.
        reduction: ``mean`` (over non-ignored entries), ``sum`` or ``none``; targets of -1 are ignored.
        loss_weight: multiplies the result.
    """

    def __init__(
        self, tau: float = 0.6, warmup: int = 1, margin: float = 1.0, gamma: float = 2.0, reduction: str = "mean", loss_weight: float = 1.0
    ) -> None:
        super().__init__(reduction, loss_weight)
        if not 0 < tau < 1:
            raise ValueError(f"SPLCLoss.tau: expected a number in (0, 1), got {tau}")
        if int(warmup) < 0:
            raise ValueError(f"SPLCLoss.warmup: expected epochs >= 0, got {warmup}")
        self.tau, self.warmup, self.margin, self.gamma = float(tau), int(warmup), float(margin), float(gamma)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Corrections start at epoch ``warmup`` (counted from 0)."""
        self.epoch = int(epoch)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets in [0, 1], -1 = ignore). Returns a scalar, or [B, C] for 'none'."""
        x, y, valid = split_targets(logits, targets)
        x = torch.where(y == 1, x - self.margin, x)
        if self.epoch >= self.warmup:
            y = torch.where(valid & (torch.sigmoid(x.detach()) > self.tau), torch.ones_like(y), y)
        p = torch.sigmoid(x)
        p_t = (1 - p) * y + p * (1 - y)
        loss = -(y * F.logsigmoid(x) + (1 - y) * F.logsigmoid(-x)) * p_t**self.gamma
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)
