"""Transform pipelines from config: every ``torchvision.transforms.v2`` class by name."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torchvision.transforms.v2 as T

from mlcls.errors import BuildError
from mlcls.registry import TRANSFORMS


def _convert_args(cfg: dict) -> dict:
    """YAML can't spell torch objects: map ``dtype: float32`` and ``interpolation: bilinear``."""
    cfg = dict(cfg)
    if isinstance(cfg.get("dtype"), str):
        dt = getattr(torch, cfg["dtype"], None)
        if not isinstance(dt, torch.dtype):
            raise BuildError(f"transform {cfg['type']}: unknown dtype '{cfg['dtype']}'")
        cfg["dtype"] = dt
    if isinstance(cfg.get("interpolation"), str):
        try:
            cfg["interpolation"] = T.InterpolationMode[cfg["interpolation"].upper()]
        except KeyError:
            raise BuildError(f"transform {cfg['type']}: unknown interpolation '{cfg['interpolation']}'") from None
    if "transforms" in cfg and isinstance(cfg["transforms"], list):  # RandomApply, RandomChoice, ...
        cfg["transforms"] = [build_transform(t) for t in cfg["transforms"]]
    return cfg


def build_transform(cfg: dict) -> Callable:
    return TRANSFORMS.build(_convert_args(cfg))


def build_pipeline(cfgs: Sequence[dict]) -> Callable:
    """A ``v2.Compose`` of the transforms described by ``cfgs`` (applied to uint8 [3, H, W]).

    An empty list gives the identity (the decoded uint8 image).
    """
    if not cfgs:
        return T.Identity()
    return T.Compose([build_transform(c) for c in cfgs])


@TRANSFORMS.register_module()
class ToFloatNormalize(T.Transform):
    """uint8 -> float32 in [0, 1], then ``(x - mean) / std`` (ImageNet statistics by default)."""

    def __init__(self, mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225)) -> None:
        super().__init__()
        self.mean = list(mean)
        self.std = list(std)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = T.functional.to_dtype(img, torch.float32, scale=True)
        return T.functional.normalize(x, self.mean, self.std)
