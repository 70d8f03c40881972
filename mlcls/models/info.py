"""What a trained model carries besides its weights: one typed record, ``model.info``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class ModelInfo:
    """The metadata of a model built from a checkpoint (see :func:`mlcls.apis.build_from_checkpoint`).

    Attributes:
        classes: the class names, in the order of the model's outputs.
        thresholds: [C] float64 tensor, the per-class decision thresholds in use
            (:func:`mlcls.evaluation.thresholds.resolve_thresholds`).
        thresholds_source: where they come from (``checkpoint (f1 on 'val')``,
            ``config evaluator (thr 0.4)``, ``default 0.5``), shown in reports and logs.
        cfg: the config the model was built from (the checkpoint's, or the user's).
        pipeline: the test pipeline, uint8 [3, H, W] -> float [3, h, w] (``None`` until
            :func:`mlcls.apis.init_model` builds it).
    """

    classes: list[str]
    thresholds: torch.Tensor
    thresholds_source: str
    cfg: dict = field(default_factory=dict)
    pipeline: Callable | None = None

    @property
    def max_instances(self) -> int | None:
        """The test dataset's ``max_instances``: a longer bag keeps that many evenly spaced instances."""
        return (((self.cfg.get("test_dataloader") or {}).get("dataset")) or {}).get("max_instances")
