"""AlexNet backbone on torchvision's implementation (the MRNet paper's model, Bien et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision.models as tvm

from mlcls.errors import BuildError
from mlcls.models.backbones.resnet import freeze
from mlcls.registry import MODELS
from mlcls.utils.checkpoint import identity, load_backbone_weights, read_weights


@MODELS.register_module()
class AlexNet(nn.Module):
    """AlexNet's convolutional part returning the feature map [B, 256, h, w] (6x6 at 224 px).

    Args:
        pretrained: a weights file (torchvision's ``alexnet-owt-7be5be79.pth``, or any checkpoint
            mlcls wrote) or a torchvision weights name (``IMAGENET1K_V1``, downloaded when online).
        frozen_stages: -1 trains everything; k freezes the first k+1 of its three pooled blocks (0..2).
    """

    def __init__(self, pretrained: str | None = None, frozen_stages: int = -1) -> None:
        super().__init__()
        if not -1 <= frozen_stages <= 2:
            raise BuildError(f"AlexNet: frozen_stages must be in -1..2, got {frozen_stages}")
        self.features = tvm.alexnet(weights=None).features  # torchvision's names: its weights load as they are
        self.out_channels = 256
        # an 11x11 stride-4 convolution and three 3x3 stride-2 max-pools: a side under 63 px leaves nothing for the last
        self.min_input_size = 63
        self.frozen_stages = frozen_stages
        if pretrained:
            load_backbone_weights(self, *read_weights(pretrained, tvm.alexnet))
        freeze(self._frozen())

    def _frozen(self) -> list[nn.Module]:
        ends = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]  # 2, 5, 12
        return [self.features[: ends[self.frozen_stages] + 1]] if self.frozen_stages >= 0 else []

    def pretrained_key_maps(self, keys: list[str]) -> list:
        """mlcls's names are torchvision's (``features.<i>``); its ImageNet classifier is not used."""

        def torchvision(key: str) -> str | None:
            return None if key.startswith("classifier.") else key

        return [identity, torchvision]

    def train(self, mode: bool = True) -> "AlexNet":
        super().train(mode)
        freeze(self._frozen())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, 256, h, w]."""
        return self.features(x)
