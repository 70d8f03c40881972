"""Mixup and CutMix for multi-label targets, applied to whole training batches (``BATCH_AUGMENTS``).

They sit with the data, as in timm and torchvision; the trainer applies them to each batch on the
device. A new one: a class registered with ``@BATCH_AUGMENTS.register_module()`` whose
``__call__(images, targets, g)`` returns ``(images, targets, lam)``.

The targets of a mixed pair are mixed with the same coefficient as the images (CutMix: the pasted
area's fraction), so they become soft targets in [0, 1]; an entry that is -1 (unknown) in either
image stays -1 in the mix, so losses keep ignoring it. Every draw comes from a generator seeded
by (seed, rank, global iteration): a resumed run draws exactly the same mixes.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from mlcls.errors import BuildError, ConfigError
from mlcls.registry import BATCH_AUGMENTS


def mix_targets(targets: torch.Tensor, other: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * targets + (1 - lam) * other`` ([B, C]), -1 where either is unknown."""
    mixed = lam * targets + (1 - lam) * other
    return torch.where((targets < 0) | (other < 0), torch.full_like(mixed, -1.0), mixed)


@BATCH_AUGMENTS.register_module()
class Mixup:
    """Zhang et al. 2018: ``x = lam x_i + (1 - lam) x_j`` with ``lam ~ Beta(alpha, alpha)``.

    The partner of each image is the batch reversed (as timm pairs them).
    """

    def __init__(self, alpha: float = 0.2) -> None:
        if not alpha > 0:
            raise ConfigError(f"Mixup.alpha must be positive, got {alpha}")
        self.alpha = float(alpha)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, g: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
        lam = float(g.beta(self.alpha, self.alpha))
        images = lam * images + (1 - lam) * images.flip(0)
        return images, mix_targets(targets, targets.flip(0), lam), lam


@BATCH_AUGMENTS.register_module()
class CutMix:
    """Yun et al. 2019: a box of the partner image pasted in; targets mixed by the kept area.

    The box has area ``1 - lam`` of the image (``lam ~ Beta(alpha, alpha)``) and a uniformly drawn
    centre, clipped at the borders; ``lam`` is then recomputed from the clipped box, so the target
    weights are the true pixel fractions.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        if not alpha > 0:
            raise ConfigError(f"CutMix.alpha must be positive, got {alpha}")
        self.alpha = float(alpha)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, g: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
        h, w = images.shape[-2:]
        lam = float(g.beta(self.alpha, self.alpha))
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(g.integers(h)), int(g.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        images = images.clone()
        images[..., y0:y1, x0:x1] = images.flip(0)[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)  # the fraction of each image that is its own
        return images, mix_targets(targets, targets.flip(0), lam), lam


class BatchAugments:
    """``train_cfg.batch_augments``: a list of ``{type: Mixup|CutMix, alpha, prob}``.

    Per batch, at most one augment is applied: the first with probability ``prob`` of the first,
    the second with the next ``prob``, ... (the probabilities add up to at most 1; the rest of the
    time the batch is left as it is), as mmpretrain's ``RandomBatchAugment`` chooses.
    """

    def __init__(self, cfgs: Sequence[dict], seed: int = 0, rank: int = 0) -> None:
        self.augments, self.probs = [], []
        for i, c in enumerate(cfgs):
            c = dict(c)
            prob = c.pop("prob", 1.0 / len(cfgs))
            try:
                self.augments.append(BATCH_AUGMENTS.build(c))
            except BuildError as e:
                raise ConfigError(f"train_cfg.batch_augments[{i}]: {e}") from None
            self.probs.append(float(prob))
        if any(p < 0 for p in self.probs) or sum(self.probs) > 1 + 1e-9:
            raise ConfigError(f"train_cfg.batch_augments: each prob must be >= 0 and they must add up to at most 1, got {self.probs}")
        self.seed, self.rank = int(seed), int(rank)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, H, W], targets [B, C] -> the batch mixed (or not) for global ``iteration``."""
        g = np.random.default_rng([self.seed, self.rank, iteration])
        u = float(g.random())
        for augment, p in zip(self.augments, self.probs):
            if u < p:
                images, targets, _ = augment(images, targets.float(), g)
                return images, targets
            u -= p
        return images, targets
