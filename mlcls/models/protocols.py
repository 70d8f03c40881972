"""What the parts of a model offer each other and the rest of mlcls, declared once.

Like :mod:`mlcls.datasets.protocols`: a backbone, neck, head or whole model from a plugin works
wherever a built-in one does when it offers these members. :func:`check_part` is called where the
parts are built, so a plugin that lacks a member is one error naming it, not an ``AttributeError``
deep in a run (and nothing downstream probes with ``getattr``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from mlcls.registry import check_part
from mlcls.utils.checkpoint import KeyMap

__all__ = ["Backbone", "Classifier", "Head", "Neck", "check_part"]


@runtime_checkable
class Backbone(Protocol):
    """images [B, 3, H, W] -> a feature map [B, out_channels, h, w] (or vectors [B, out_channels])."""

    out_channels: int
    #: the smallest image side it takes (None: any); checked at build time when a pipeline fixes the size
    min_input_size: int | None

    def pretrained_key_maps(self, keys: list[str]) -> list[KeyMap]:
        """Candidate renamings of a weight file's ``keys`` to this module's (the best match is used)."""


@runtime_checkable
class Neck(Protocol):
    """Features -> one vector per sample."""

    #: pools the instances of a bag (``forward(features [N, D], sizes [B]) -> [B, D]``): a model
    #: with it reads samples made of many images
    reads_bags: bool


@runtime_checkable
class Head(Protocol):
    """Features -> logits [B, C]; the sigmoid only in ``predict``."""

    num_classes: int
    #: reads the feature map [B, D, h, w] itself (CSRA, ML-Decoder): no pooling neck before it
    spatial_input: bool

    def loss(self, feats: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss": scalar}`` for targets [B, C] (1 / 0 / -1 = ignore)."""

    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-class probabilities [B, C]."""

    def resolved_config(self, cfg: dict) -> dict:
        """``cfg`` with every value derived from the training labels written out (``auto`` weights)."""


@runtime_checkable
class Classifier(Protocol):
    """A whole model: ``forward(images, targets=None, mode="tensor" | "loss" | "predict")``."""

    num_classes: int

    @property
    def bag_views(self) -> list[str] | None:
        """The views of a model of samples made of many images (``[""]``: one unnamed view), else None."""

    def resolved_config(self, cfg: dict) -> dict:
        """Its config with the label-derived values written out, so it rebuilds without the labels."""

    def check_input_size(self, side: int, where: str = "the input") -> None:
        """Raise a ConfigError when images with this smaller side are too small for the backbone."""
