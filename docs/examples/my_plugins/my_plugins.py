"""A user package for mlcls: a dataset, a head, a loss, a hook and a metric of your own, registered by name.

Put this file anywhere on PYTHONPATH and list it in the config's ``custom_imports``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.labels import LabelIndexBuilder
from mlcls.engine import Hook
from mlcls.errors import DataError
from mlcls.losses.utils import LossBase, reduce_loss, split_targets
from mlcls.models.heads.linear import MultiLabelClsHead
from mlcls.evaluation import MultiLabelMetric
from mlcls.registry import DATASETS, HOOKS, LOSSES, METRICS, MODELS
from mlcls.utils.fileio import read_text_lines


@DATASETS.register_module()
class TSVDataset(MultiLabelDataset):
    """One image per line: ``path<TAB>label,label`` (comma-separated class names, may be empty)."""

    def __init__(self, ann_file: str, classes, pipeline=None, data_root: str = "", **kwargs) -> None:
        self.ann_file = os.path.join(data_root, ann_file)
        super().__init__(classes=classes, pipeline=pipeline, data_root=data_root, **kwargs)

    def load_annotations(self) -> LabelIndexBuilder:
        lookup = {c: i for i, c in enumerate(self.classes)}
        index = LabelIndexBuilder()
        for line_no, line in enumerate(read_text_lines(self.ann_file), 1):
            if not line.strip():
                continue
            path, _, labels = line.partition("\t")
            names = [n for n in labels.split(",") if n]
            unknown = [n for n in names if n not in lookup]
            if unknown:
                self.bad_annotation(DataError(f"{self.ann_file}:{line_no}: unknown class {unknown[0]!r}"))
                continue
            index.add(path, sorted(lookup[n] for n in names), line_no)
        return index


@LOSSES.register_module()
class SquaredHingeLoss(LossBase):
    """``max(0, 1 - s * x)^2`` with ``s = +1`` for positives, ``-1`` for negatives; -1 targets ignored."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets, valid = split_targets(logits, targets)
        loss = F.relu(1 - (2 * targets - 1) * logits) ** 2
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)


@MODELS.register_module()
class CosineHead(MultiLabelClsHead):
    """Logits = ``scale`` x cosine(feature, class vector) + bias."""

    def __init__(self, num_classes: int, in_channels: int, scale: float = 10.0, loss: dict | None = None, label_stats=None) -> None:
        super().__init__(num_classes, in_channels, loss, label_stats)
        self.scale = scale
        self.weight = nn.Parameter(torch.randn(num_classes, in_channels) * 0.01)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(feats, dim=1), F.normalize(self.weight, dim=1)) + self.bias


@HOOKS.register_module()
class MetricHistoryHook(Hook):
    """Appends the chosen validation metrics of every evaluation to ``<work_dir>/history.jsonl``."""

    def __init__(self, keys: tuple[str, ...] = ("mAP",)) -> None:
        self.keys = list(keys)

    def monitored_metrics(self) -> dict[str, str]:  # checked against the evaluator before training
        return {f"MetricHistoryHook.keys[{i}]": k for i, k in enumerate(self.keys)}

    def after_eval(self, trainer, metrics: dict) -> None:
        with open(Path(trainer.work_dir) / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"epoch": trainer.epoch + 1, **{k: metrics[k] for k in self.keys}}) + "\n")


@METRICS.register_module()
class SensitivityAtSpecificity(MultiLabelMetric):
    """The standard metrics plus ``sens@specXX``: the mean over classes of the best sensitivity
    (recall) reachable while the specificity stays at or above ``spec`` (a screening set-up)."""

    def __init__(self, spec: float = 0.9, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.name = f"sens@spec{round(spec * 100)}"

    def metric_names(self) -> list[str]:
        return [*super().metric_names(), self.name]

    def evaluate(self, scores: torch.Tensor, targets: torch.Tensor) -> dict:
        out = super().evaluate(scores, targets)
        values = []
        for c in range(scores.shape[1]):
            known = targets[:, c] >= 0
            s, t = scores[known, c], targets[known, c] > 0.5
            pos, neg = s[t], s[~t]
            if not len(pos) or not len(neg):
                continue
            # the lowest threshold that keeps specificity >= spec, then the sensitivity there
            ok = [thr for thr in torch.unique(s).tolist() if float((neg < thr).float().mean()) >= self.spec]
            values.append(float((pos >= min(ok)).float().mean()) * 100 if ok else 0.0)
        out[self.name] = sum(values) / len(values) if values else float("nan")
        return out
