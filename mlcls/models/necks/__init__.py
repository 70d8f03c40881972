"""Necks turn a backbone feature map into a vector per image."""

from __future__ import annotations

import torch
import torch.nn as nn

from mlcls.registry import MODELS


@MODELS.register_module()
class GlobalAveragePooling(nn.Module):
    """[B, C, H, W] -> [B, C] by averaging over space (pass-through for [B, C])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x


__all__ = ["GlobalAveragePooling"]
