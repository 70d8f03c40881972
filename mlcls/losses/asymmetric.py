"""Asymmetric loss (Ridnik et al., ICCV 2021, "Asymmetric Loss For Multi-Label Classification")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcls.losses.utils import LossBase, reduce_loss, split_targets
from mlcls.registry import LOSSES


@LOSSES.register_module()
class AsymmetricLoss(LossBase):
    """ASL on logits: with ``p = sigmoid(x)`` and the shifted probability ``p_m = max(p - clip, 0)``::

        L = -[ y (1 - p)^gamma_pos log(p) + (1 - y) p_m^gamma_neg log(1 - p_m) ]

    Negatives are down-weighted twice: by the focusing term ``p_m^gamma_neg`` and by the shift,
    which discards very easy negatives (p < clip) entirely.

    ``reduction='sum'`` is the paper's form (the official code returns ``-loss.sum()``); ``mean``
    divides that by the number of non-ignored entries (B * C without ignores), so with ``mean`` the
    learning rate must be about B * C times larger for the same step size (the ASL recipe's
    Adam lr 1e-4 assumes ``sum``).

    Args:
        gamma_pos, gamma_neg: focusing parameters for positives and negatives.
        clip: probability margin of the negative shift (0 disables it).
        eps: floor inside the logarithm of the shifted negative term.
        detach_focal: treat the focusing weights as constants in backward (the official
            ``disable_torch_grad_focal_loss``, done with ``detach`` rather than by toggling
            global grad mode).
        reduction: ``sum`` (default, the paper's), ``mean`` or ``none``.
        loss_weight: multiplies the result.
    """

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        detach_focal: bool = False,
        reduction: str = "sum",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(reduction, loss_weight)
        if not 0 <= clip < 1:
            raise ValueError(f"clip must be in [0, 1), got {clip}")
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = float(gamma_pos), float(gamma_neg), float(clip), float(eps)
        self.detach_focal = detach_focal

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets in [0, 1], -1 = ignore)."""
        logits, targets, valid = split_targets(logits, targets)
        p = torch.sigmoid(logits)
        log_p = -F.softplus(-logits)  # log(sigmoid(x)), stable for any x
        if self.clip > 0:
            q = (torch.sigmoid(-logits) + self.clip).clamp(max=1)  # 1 - p_m
            log_q = torch.log(q.clamp(min=self.eps))
        else:
            q = torch.sigmoid(-logits)
            log_q = -F.softplus(logits)  # log(1 - sigmoid(x))
        w_pos = (1 - p) ** self.gamma_pos
        w_neg = (1 - q) ** self.gamma_neg  # p_m ** gamma_neg
        if self.detach_focal:
            w_pos, w_neg = w_pos.detach(), w_neg.detach()
        loss = -(targets * w_pos * log_p + (1 - targets) * w_neg * log_q)
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)
