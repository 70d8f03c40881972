"""Test-time augmentation: the mean of the sigmoid scores over several views of each image."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlcls.datasets.bags import BagBatch
from mlcls.errors import ConfigError

PRESETS = {"flip": ["identity", "hflip"], "flip4": ["identity", "hflip", "vflip", "hvflip"]}


def parse_views(spec: str | Sequence) -> list:
    """``flip`` / ``flip4`` or a list of views: ``identity``, ``hflip``, ``vflip``, ``hvflip``,
    ``{scale: s}`` (the preprocessed image resized by ``s``, bilinear)."""
    views = PRESETS.get(spec) if isinstance(spec, str) else list(spec)
    if views is None:
        raise ConfigError(f"tta: unknown preset '{spec}' (choices: {', '.join(PRESETS)}, or a list of views)")
    for v in views:
        ok = v in ("identity", "hflip", "vflip", "hvflip") or (isinstance(v, dict) and set(v) == {"scale"} and float(v["scale"]) > 0)
        if not ok:
            raise ConfigError(f"tta: unknown view {v!r} (identity, hflip, vflip, hvflip or {{scale: s}})")
    if not views:
        raise ConfigError("tta: no views given")
    return views


def resolve_tta(tta: str | Sequence | None, cfg: dict) -> list | None:
    """``tta`` as a list of views, or None for none: a preset, a list, or ``config`` (the config's
    ``test_cfg.tta``)."""
    if tta == "config":
        tta = (cfg.get("test_cfg") or {}).get("tta")
        if not tta:
            raise ConfigError("--tta config: the config has no test_cfg.tta list")
    return parse_views(tta) if tta else None


def apply_view(images: torch.Tensor, view) -> torch.Tensor:
    """images [B, 3, H, W] (or a :class:`~mlcls.datasets.bags.BagBatch`: each instance) as seen by ``view``."""
    if isinstance(images, BagBatch):
        return images.map(lambda x: apply_view(x, view))
    if view == "identity":
        return images
    if view == "hflip":
        return images.flip(-1)
    if view == "vflip":
        return images.flip(-2)
    if view == "hvflip":
        return images.flip(-1).flip(-2)
    return F.interpolate(images, scale_factor=float(view["scale"]), mode="bilinear", align_corners=False)


class TTAModel(nn.Module):
    """Wraps a classifier: ``mode='predict'`` returns the mean probability [B, C] over the views;
    other modes pass through. Tuning thresholds through it tunes them for the same TTA."""

    def __init__(self, model: nn.Module, views: str | Sequence) -> None:
        super().__init__()
        self.model = model
        self.views = parse_views(views)
        if hasattr(model, "info"):
            self.info = model.info

    @property
    def bag_views(self) -> list[str] | None:
        """The wrapped model's (see :class:`mlcls.models.protocols.Classifier`)."""
        return self.model.bag_views

    def forward(self, images: torch.Tensor, *args, mode: str = "tensor", **kwargs):
        if mode != "predict":
            return self.model(images, *args, mode=mode, **kwargs)
        return torch.stack([self.model(apply_view(images, v), mode="predict").float() for v in self.views]).mean(0)
