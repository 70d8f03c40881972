"""ImageClassifier = backbone -> neck -> head."""

from __future__ import annotations

import torch
import torch.nn as nn

from mlcls.registry import MODELS


@MODELS.register_module()
class ImageClassifier(nn.Module):
    """Builds its parts explicitly: the backbone first, then the head with ``in_channels`` taken
    from the backbone's ``out_channels`` (so configs need not repeat it).

    Args:
        backbone: backbone config (must expose ``out_channels``).
        head: head config; ``num_classes`` may be omitted when the caller passes it.
        neck: neck config; default ``GlobalAveragePooling``, or none for heads that read the
            feature map themselves (``spatial_input``: CSRA, ML-Decoder).
        num_classes: default for the head's ``num_classes`` (the builder passes the dataset's).
        label_stats: training label counts, handed to the head for its loss's ``auto`` weights.
    """

    def __init__(
        self, backbone: dict, head: dict, neck: dict | None = None, num_classes: int | None = None, label_stats: dict | None = None
    ) -> None:
        super().__init__()
        self.backbone = MODELS.build(backbone)
        defaults = {"in_channels": self.backbone.out_channels, "label_stats": label_stats}
        if num_classes is not None:
            defaults["num_classes"] = num_classes
        self.head = MODELS.build(head, **defaults)
        spatial = getattr(self.head, "spatial_input", False)
        self.neck = MODELS.build(neck) if neck else (nn.Identity() if spatial else MODELS.build({"type": "GlobalAveragePooling"}))

    def resolved_config(self, cfg: dict) -> dict:
        """This model's config with every value derived from the training labels written out as
        plain numbers (``pos_weight: auto`` -> the list in use, the powerset's combinations), so
        the model rebuilds from it without label statistics."""
        resolve = getattr(self.head, "resolved_config", None)
        return {**cfg, "head": resolve(cfg["head"])} if resolve else cfg

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def extract_feat(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> features [B, D] (or the map [B, D, h, w] for spatial heads)."""
        return self.neck(self.backbone(images))

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None, mode: str = "tensor"):
        """One entry point, so DDP sees every call that needs gradient synchronisation.

        Args:
            images: [B, 3, H, W].
            targets: [B, C] (1 / 0 / -1 ignored), for ``mode='loss'``.
            mode: ``tensor`` -> logits [B, C]; ``loss`` -> ``{"loss": scalar}``;
                ``predict`` -> probabilities [B, C].
        """
        if mode == "tensor":
            return self.head(self.extract_feat(images))
        if mode == "loss":
            return self.loss(images, targets)
        if mode == "predict":
            return self.predict(images)
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got '{mode}'")

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [B, 3, H, W], targets [B, C] (-1 = ignore) -> ``{"loss": scalar}``."""
        return self.head.loss(self.extract_feat(images), targets)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> probabilities [B, C]."""
        return self.head.predict(self.extract_feat(images))
