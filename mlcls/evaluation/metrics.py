"""Stateful metric accumulators on top of :mod:`mlcls.evaluation.functional`."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch

from mlcls.evaluation.functional import SUMMARY_KEYS, compute_metrics, first_occurrence_sorted
from mlcls.evaluation.sharded import keep_first_occurrence, sharded_compute_metrics
from mlcls.registry import METRICS, check_part
from mlcls.utils.dist import all_gather_cat, is_dist


@runtime_checkable
class Evaluator(Protocol):
    """What the evaluation loop, the trainer and its hooks use of an evaluator (``val_evaluator``,
    ``test_evaluator``); :class:`MultiLabelMetric` and its subclasses offer it."""

    thr: float | Sequence[float]  #: the thresholds its threshold metrics use (hooks draw predictions with them)
    topk: int | None

    @property
    def sharded(self) -> bool:
        """True when ``compute`` evaluates class blocks on their ranks and no rank holds the scores."""

    def reset(self) -> None: ...
    def process(self, scores: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None) -> None: ...
    def gathered(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    def evaluate(self, scores: torch.Tensor, targets: torch.Tensor) -> dict: ...
    def compute(self) -> dict: ...
    def metric_names(self) -> list[str]: ...


@METRICS.register_module()
class MultiLabelMetric:
    """Collects scores and targets batch by batch; ``compute`` returns :func:`compute_metrics`.

    Under DDP, ``compute`` gathers every rank's samples. Samples that a DistributedSampler repeats
    to even out the shards are dropped when ``process`` is given each sample's dataset index.

    Args:
        thr: scalar or per-class thresholds (``score >= thr`` is a positive prediction).
        topk: also report the ``@k`` metrics.
        gather: under DDP, ``all`` gathers every rank's rows on every rank (hooks that need the
            scores, such as threshold tuning and prediction grids, get them); ``classes`` never
            gathers the score matrix: ranks exchange column blocks and each computes its share of
            the classes (:mod:`mlcls.evaluation.sharded`; for 10k+ classes x 100k+ images; the
            metrics are the same, score-based hooks are skipped).
    """

    def __init__(self, thr: float | Sequence[float] = 0.5, topk: int | None = None, gather: str = "all") -> None:
        if gather not in ("all", "classes"):
            raise ValueError(f"MultiLabelMetric.gather: expected 'all' or 'classes', got {gather!r}")
        self.thr = thr
        self.topk = topk
        self.gather = gather
        self.reset()

    def metric_names(self) -> list[str]:
        """The scalar names :meth:`compute` returns (options that monitor a metric are checked against them before training)."""
        names = [*SUMMARY_KEYS, "F1_micro", "num_samples", "num_classes_skipped", "auroc_skipped", "ap_trivial"]
        if self.topk:
            names += [f"{k}@{self.topk}" for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")]
        return names

    def reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._indices: list[torch.Tensor] = []
        self.indices: torch.Tensor | None = None  # after gathered(): the dataset index of each row

    def process(self, scores: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        """scores [B, C] probabilities, targets [B, C]; indices [B] dataset indices (optional)."""
        self._scores.append(scores.detach().float().cpu())
        self._targets.append(targets.detach().float().cpu())
        if indices is not None:
            self._indices.append(indices.detach().long().cpu())

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All samples processed so far, on every rank: (scores [N, C], targets [N, C]).

        With indices, rows are sorted by dataset index, each index once, and :attr:`indices`
        ([N]) holds them; without, rows stay in processing order and :attr:`indices` is None.
        """
        scores = all_gather_cat(torch.cat(self._scores)) if self._scores else torch.zeros(0, 0)
        targets = all_gather_cat(torch.cat(self._targets)) if self._targets else torch.zeros(0, 0)
        if self._indices:
            idx = all_gather_cat(torch.cat(self._indices))
            order = torch.argsort(idx, stable=True)
            first = first_occurrence_sorted(idx[order])  # drop the padding duplicates
            order = order[first]
            scores, targets, self.indices = scores[order], targets[order], idx[order]
        else:
            self.indices = None
        return scores, targets

    def evaluate(self, scores: torch.Tensor, targets: torch.Tensor) -> dict:
        """Metrics for ready arrays (scores [N, C], targets [N, C])."""
        return compute_metrics(scores, targets, thr=self.thr, topk=self.topk)

    @property
    def sharded(self) -> bool:
        """True when :meth:`compute` evaluates class blocks without gathering the scores."""
        return self.gather == "classes" and is_dist()

    def compute(self) -> dict:
        """Metrics over everything processed so far (over all ranks)."""
        if not self.sharded:
            return self.evaluate(*self.gathered())

        scores, targets = torch.cat(self._scores), torch.cat(self._targets)
        if self._indices:  # drop the samples a DistributedSampler repeated, locally
            keep = keep_first_occurrence(torch.cat(self._indices))
            scores, targets = scores[keep], targets[keep]
        self.indices = None
        return sharded_compute_metrics(scores, targets.to(torch.int8), thr=self.thr, topk=self.topk)


def build_evaluator(cfg: dict | None) -> "MultiLabelMetric":
    """An evaluator config (default: :class:`MultiLabelMetric` at threshold 0.5) as an object."""
    evaluator = METRICS.build(cfg or {"type": "MultiLabelMetric"})
    check_part(evaluator, Evaluator, "evaluator")
    return evaluator
