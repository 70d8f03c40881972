"""ResNet backbones on torchvision's implementation."""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision.models as tvm

from mlcls.errors import BuildError
from mlcls.registry import MODELS
from mlcls.utils.checkpoint import identity, load_backbone_weights, read_weights


def freeze(modules: list[nn.Module]) -> None:
    for m in modules:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)


@MODELS.register_module()
class ResNet(nn.Module):
    """ResNet-18/34/50/101/152 returning the last feature map [B, out_channels, H/32, W/32].

    Args:
        depth: 18, 34, 50, 101 or 152.
        pretrained: a weights file (torchvision, mlcls or mmpretrain/mmcls ResNet) or a
            torchvision weights name such as ``IMAGENET1K_V1`` (downloaded when online).
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and layer1..k
            (their BatchNorm layers stay in eval mode).
        norm_eval: keep every BatchNorm in eval mode (frozen statistics) while training.
    """

    min_input_size = None  # any size: global pooling after stride 32 takes even a 1x1 map
    arch = {18: tvm.resnet18, 34: tvm.resnet34, 50: tvm.resnet50, 101: tvm.resnet101, 152: tvm.resnet152}

    def __init__(self, depth: int = 50, pretrained: str | None = None, frozen_stages: int = -1, norm_eval: bool = False) -> None:
        super().__init__()
        if depth not in self.arch:
            raise BuildError(f"ResNet: depth must be one of {sorted(self.arch)}, got {depth}")
        if not -1 <= frozen_stages <= 4:
            raise BuildError(f"ResNet: frozen_stages must be in -1..4, got {frozen_stages}")
        net = self.arch[depth](weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = net.fc.in_features
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if pretrained:
            load_backbone_weights(self, *read_weights(pretrained, self.arch[depth]))
        self._freeze()

    def pretrained_key_maps(self, keys: list[str]) -> list:
        """mlcls's own names, and torchvision's (which mmpretrain's ResNet shares): conv1/bn1 are the stem."""

        def torchvision(key: str) -> str | None:
            if key.startswith("fc."):
                return None  # the ImageNet classifier
            for old, new in (("conv1.", "stem.0."), ("bn1.", "stem.1.")):
                if key.startswith(old):
                    return new + key[len(old) :]
            return key

        return [identity, torchvision]

    def _stages(self) -> list[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def _freeze(self) -> None:
        freeze(self._stages()[: self.frozen_stages + 1])

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, out_channels, H/32, W/32]."""
        for stage in self._stages():
            x = stage(x)
        return x
