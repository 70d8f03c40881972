"""VGG backbones on torchvision's implementation."""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torchvision.models as tvm

from mlcls.errors import BuildError
from mlcls.models.backbones.resnet import freeze
from mlcls.registry import MODELS
from mlcls.utils.checkpoint import identity, load_backbone_weights, read_weights


@MODELS.register_module()
class VGG(nn.Module):
    """VGG-11/13/16/19 (optionally with BatchNorm) returning the conv feature map [B, 512, H/32, W/32].

    Args:
        depth: 11, 13, 16 or 19.
        with_bn: use the ``vgg*_bn`` variant.
        pretrained: a weights file (torchvision, mlcls or mmpretrain/mmcls VGG) or a torchvision
            weights name such as ``IMAGENET1K_V1`` (downloaded when online).
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
        # split features into the five blocks that end with a max-pool
        blocks, cur = [], []
        for layer in net.features:
            cur.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                blocks.append(nn.Sequential(*cur))
                cur = []
        self.features = nn.Sequential(*blocks)
        self.out_channels = 512
        # five 2x2 max-pools: a side under 32 px leaves nothing for the last one
        self.min_input_size = 32
        self.frozen_stages = frozen_stages
        if pretrained:
            load_backbone_weights(self, *read_weights(pretrained, builder))
        freeze(list(self.features[: frozen_stages + 1]))

    def pretrained_key_maps(self, keys: list[str]) -> list:
        """mlcls's names (``features.<block>.<layer>``), torchvision's (one flat ``features.<i>``
        Sequential) and mmpretrain's (``features.<i>.conv`` / ``.bn`` ConvModules between pools)."""
        flat, convs, norms = [], [], []  # own module names in network order
        for b, block in enumerate(self.features):
            for i, layer in enumerate(block):
                flat.append(f"features.{b}.{i}")
                if isinstance(layer, nn.Conv2d):
                    convs.append(flat[-1])
                elif isinstance(layer, nn.BatchNorm2d):
                    norms.append(flat[-1])
        mm = re.compile(r"features\.(\d+)\.(conv|bn)\.(\w+)")
        # the k-th ConvModule of the file holds the k-th conv (and the k-th BatchNorm)
        modules = sorted({int(m.group(1)) for m in map(mm.fullmatch, keys) if m})
        rank = {j: k for k, j in enumerate(modules)}

        def torchvision(key: str) -> str | None:
            m = re.fullmatch(r"features\.(\d+)\.(\w+)", key)
            if m is None:
                return None if key.startswith("classifier.") else key
            j = int(m.group(1))
            return f"{flat[j]}.{m.group(2)}" if j < len(flat) else key

        def mmpretrain(key: str) -> str | None:
            m = mm.fullmatch(key)
            if m is None:
                return None if key.startswith("classifier.") else key
            own = convs if m.group(2) == "conv" else norms
            k = rank[int(m.group(1))]
            return f"{own[k]}.{m.group(3)}" if k < len(own) else key

        return [identity, torchvision, mmpretrain]

    def train(self, mode: bool = True) -> "VGG":
        super().train(mode)
        freeze(list(self.features[: self.frozen_stages + 1]))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, 512, H/32, W/32]."""
        return self.features(x)
