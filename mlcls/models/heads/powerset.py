"""Label powerset: each distinct training label combination is one class of a softmax head."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlcls.errors import BuildError
from mlcls.registry import MODELS

logger = logging.getLogger("mlcls")


def _get(stats: dict | None, key: str):
    """``stats[key]`` or None (item access, so a lazily computed entry gets computed)."""
    try:
        return stats[key] if stats else None
    except KeyError:
        return None


@MODELS.register_module()
class LabelPowersetHead(nn.Module):
    """Multi-label as multi-class over label combinations (useful when few labels co-occur strongly).

    Each label combination seen at least ``min_count`` times in the training set becomes one
    class (K in all, the empty set included when it occurs). A training image whose combination
    was dropped is assigned its *nearest kept combination* (fewest differing labels, ignoring -1
    entries; ties go to the more frequent combination). The head is trained with cross-entropy
    over the K combinations; ``predict`` turns the softmax into per-label scores [B, C], the
    summed probability of the combinations that contain each label, so every multi-label metric
    applies unchanged. It cannot predict a combination never seen in training.

    The combination table is a buffer (saved in checkpoints) and, as plain index lists, part of the
    config stored with each checkpoint (:meth:`resolved_config`), so the head rebuilds without
    ``label_stats``.

    Args:
        num_classes: C (labels).
        in_channels: feature size.
        min_count: minimum number of training images for a combination to become a class.
        dropout: dropout before the linear layer.
        loss_weight: multiplies the cross-entropy.
        combinations: the kept combinations as lists of label indices, most frequent first
            (written by training into the stored config); taken from ``label_stats`` when absent.
        label_stats: training label counts with ``combinations`` (passed by the builder).
    """

    spatial_input = False  # reads pooled vectors

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        min_count: int = 1,
        dropout: float = 0.0,
        loss_weight: float = 1.0,
        combinations: list[list[int]] | None = None,
        label_stats: dict | None = None,
    ) -> None:
        super().__init__()
        self.num_classes, self.in_channels, self.loss_weight = num_classes, in_channels, float(loss_weight)
        if combinations is None:
            counted = _get(label_stats, "combinations")
            if counted is None:
                raise BuildError(
                    "LabelPowersetHead: needs the training label counts (tools/train.py passes them) or a 'combinations' list "
                    "(the config stored in a checkpoint has it)"
                )
            combinations = [list(map(int, ids)) for ids, n in counted if n >= min_count]
            if not combinations:
                raise BuildError(f"LabelPowersetHead: no label combination occurs {min_count} times or more")
            logger.info("LabelPowersetHead: %d of %d label combinations kept (min_count=%d)", len(combinations), len(counted), min_count)
        table = torch.zeros(len(combinations), num_classes)
        for k, ids in enumerate(combinations):
            if any(not 0 <= i < num_classes for i in ids):
                raise BuildError(f"LabelPowersetHead.combinations[{k}]: label indices must be in 0..{num_classes - 1}, got {ids}")
            table[k, list(ids)] = 1.0
        self.register_buffer("combinations", table)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_channels, len(combinations))

    def resolved_config(self, cfg: dict) -> dict:
        """``cfg`` with the kept combinations written out (the head then rebuilds without label counts)."""
        return {**cfg, "combinations": [torch.nonzero(row).flatten().tolist() for row in self.combinations]}

    @property
    def num_combinations(self) -> int:
        return self.combinations.shape[0]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats [B, in_channels] -> combination logits [B, K]."""
        return self.fc(self.dropout(feats))

    def encode(self, targets: torch.Tensor) -> torch.Tensor:
        """targets [B, C] (1 / 0 / -1) -> index [B] of the nearest kept combination."""
        valid = (targets >= 0).float()
        t = targets.clamp(min=0).float()
        # Hamming distance over valid entries; combinations are sorted by frequency, and argmin
        # returns the first minimum, so ties go to the more frequent combination.
        dist = (valid[:, None, :] * (t[:, None, :] - self.combinations[None]).abs()).sum(-1)
        return dist.argmin(1)

    def decode(self, probs: torch.Tensor) -> torch.Tensor:
        """combination probabilities [B, K] -> per-label scores [B, C]."""
        return probs @ self.combinations

    def loss(self, feats: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self(feats).float()
        return {"loss": self.loss_weight * F.cross_entropy(logits, self.encode(targets))}

    @torch.no_grad()
    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-label scores [B, C] in [0, 1]."""
        return self.decode(torch.softmax(self(feats).float(), dim=1))
