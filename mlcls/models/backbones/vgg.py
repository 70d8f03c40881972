"""VGG backbones on torchvision's implementation."""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision.models as tvm

from mlcls.errors import BuildError
from mlcls.models.backbones._pretrained import load_pretrained
from mlcls.models.backbones.resnet import freeze
from mlcls.registry import MODELS


@MODELS.register_module()
class VGG(nn.Module):
    """VGG-11/13/16/19 (optionally with BatchNorm) returning the conv feature map [B, 512, H/32, W/32].

    Args:
        depth: 11, 13, 16 or 19.
        with_bn: use the ``vgg*_bn`` variant.
        pretrained: local weights path or torchvision weights name.
        frozen_stages: -1 trains everything; k freezes the first k+1 conv blocks (0..4).
    """

    def __init__(self, depth: int = 16, with_bn: bool = False, pretrained: str | None = None, frozen_stages: int = -1) -> None:
        super().__init__()
        if depth not in (11, 13, 16, 19):
            raise BuildError(f"VGG: depth must be one of 11, 13, 16, 19, got {depth}")
        if not -1 <= frozen_stages <= 4:
            raise BuildError(f"VGG: frozen_stages must be in -1..4, got {frozen_stages}")
        builder = getattr(tvm, f"vgg{depth}{'_bn' if with_bn else ''}")
        net = builder(weights=None)
        if pretrained:
            load_pretrained(net, pretrained, builder)
        # split features into the five blocks that end with a max-pool
        blocks, cur = [], []
        for layer in net.features:
            cur.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                blocks.append(nn.Sequential(*cur))
                cur = []
        self.features = nn.Sequential(*blocks)
        self.out_channels = 512
        self.frozen_stages = frozen_stages
        freeze(list(self.features[: frozen_stages + 1]))

    def train(self, mode: bool = True) -> "VGG":
        super().train(mode)
        freeze(list(self.features[: self.frozen_stages + 1]))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, 512, H/32, W/32]."""
        return self.features(x)
