"""Multi-label heads: they return logits; the sigmoid is applied only in ``predict``."""

from __future__ import annotations

import torch
import torch.nn as nn

import mlcls.losses  # noqa: F401 - registers the losses a head may name
from mlcls.errors import BuildError
from mlcls.losses.utils import DataDerivedWeights
from mlcls.registry import LOSSES, MODELS


class MultiLabelClsHead(nn.Module):
    """Base head: ``forward`` gives logits [B, C]; ``loss`` and ``predict`` build on it.

    Args:
        num_classes: C.
        in_channels: feature size (the parent passes the backbone's ``out_channels``).
        loss: loss config (LOSSES registry), default ``BCEWithLogitsLoss``.
        label_stats: training label counts, offered to the loss (for ``auto`` weights).
    """

    spatial_input = False  # reads pooled vectors [B, in_channels] (CSRA and ML-Decoder read the map)

    def __init__(self, num_classes: int, in_channels: int, loss: dict | None = None, label_stats: dict | None = None) -> None:
        super().__init__()
        if num_classes <= 0:
            raise BuildError(f"{type(self).__name__}: num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.loss_module = LOSSES.build(loss or {"type": "BCEWithLogitsLoss"}, label_stats=label_stats)

    def resolved_config(self, cfg: dict) -> dict:
        """``cfg`` with the loss's data-derived values (``auto`` weights) written out."""
        if not isinstance(self.loss_module, DataDerivedWeights):  # nothing in it comes from the labels
            return cfg
        return {**cfg, "loss": self.loss_module.resolved_config(cfg.get("loss") or {"type": "BCEWithLogitsLoss"})}

    def loss(self, feats: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """feats [B, in_channels], targets [B, C] -> ``{"loss": scalar}``."""
        return {"loss": self.loss_module(self(feats), targets)}

    @torch.no_grad()
    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-class probabilities [B, C] (independent sigmoids)."""
        return torch.sigmoid(self(feats).float())


@MODELS.register_module()
class MultiLabelLinearClsHead(MultiLabelClsHead):
    """One linear layer: [B, in_channels] -> logits [B, C]."""

    def __init__(
        self, num_classes: int, in_channels: int, loss: dict | None = None, dropout: float = 0.0, label_stats: dict | None = None
    ) -> None:
        super().__init__(num_classes, in_channels, loss, label_stats)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(feats))


@MODELS.register_module()
class MultiLabelMLPHead(MultiLabelClsHead):
    """Hidden layer(s) + activation + dropout, then a linear layer to logits.

    The PyTorch form of the Keras ``Dense(512, relu) -> Dense(C, sigmoid)`` recipe, without the
    sigmoid (it lives in ``predict`` so the loss sees logits).

    Args:
        hidden_channels: an int or a list of ints (one per hidden layer).
        act: ``relu``, ``gelu`` or ``silu``.
        dropout: dropout before each linear layer.
        norm: add a BatchNorm1d after each hidden linear layer.
    """

    _acts = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        hidden_channels: int | list[int] = 512,
        act: str = "relu",
        dropout: float = 0.0,
        norm: bool = False,
        loss: dict | None = None,
        label_stats: dict | None = None,
    ) -> None:
        super().__init__(num_classes, in_channels, loss, label_stats)
        if act not in self._acts:
            raise BuildError(f"MultiLabelMLPHead: act must be one of {sorted(self._acts)}, got '{act}'")
        hidden = [hidden_channels] if isinstance(hidden_channels, int) else list(hidden_channels)
        layers: list[nn.Module] = []
        c = in_channels
        for h in hidden:
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.Linear(c, h))
            if norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(self._acts[act]())
            c = h
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(c, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(feats)
