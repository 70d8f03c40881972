"""CSRA: class-specific residual attention (Zhu & Wu, ICCV 2021)."""

from __future__ import annotations

import torch
import torch.nn as nn

from mlcls.errors import BuildError
from mlcls.models.heads.linear import MultiLabelClsHead
from mlcls.registry import MODELS

# The temperatures of the paper's multi-head variants (T = 99 stands for T -> infinity: max pooling).
TEMPERATURES = {1: [1], 2: [1, 99], 4: [1, 2, 4, 99], 6: [1, 2, 3, 4, 5, 99], 8: [1, 2, 3, 4, 5, 6, 7, 99]}


class _CSRA(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, temperature: float, lam: float) -> None:
        super().__init__()
        self.temperature, self.lam = temperature, lam
        self.head = nn.Conv2d(in_channels, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # class scores at every position, each class's weight vector normalised (as in the paper's code)
        score = self.head(x) / torch.norm(self.head.weight, dim=1, keepdim=True).transpose(0, 1)
        score = score.flatten(2)  # [B, C, HW]
        base = score.mean(dim=2)
        if self.temperature == 99:
            att = score.max(dim=2).values
        else:
            att = (score * torch.softmax(score * self.temperature, dim=2)).sum(dim=2)
        return base + self.lam * att


@MODELS.register_module()
class CSRAClsHead(MultiLabelClsHead):
    """Class-specific residual attention head: [B, in_channels, H, W] -> logits [B, C].

    Each of ``num_heads`` heads adds to the average-pooled class score a class-specific
    attention-pooled score (softmax over positions at temperature T); the heads' outputs are summed.
    Needs the spatial feature map, so the classifier passes the backbone output unpooled.

    Args:
        num_heads: 1, 2, 4, 6 or 8 (temperatures from the paper).
        lam: weight of the attention term (paper: 0.1 for VOC with ResNet-101, 0.4 for COCO).
    """

    spatial_input = True

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        num_heads: int = 1,
        lam: float = 0.1,
        loss: dict | None = None,
        label_stats: dict | None = None,
    ) -> None:
        super().__init__(num_classes, in_channels, loss, label_stats)
        if num_heads not in TEMPERATURES:
            raise BuildError(f"CSRAClsHead: num_heads must be one of {sorted(TEMPERATURES)}, got {num_heads}")
        self.heads = nn.ModuleList(_CSRA(in_channels, num_classes, t, lam) for t in TEMPERATURES[num_heads])

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats [B, in_channels, H, W] -> logits [B, C]."""
        if feats.dim() != 4:
            raise ValueError(f"CSRAClsHead needs a feature map [B, C, H, W], got shape {tuple(feats.shape)} (remove the neck)")
        return sum(h(feats) for h in self.heads)
