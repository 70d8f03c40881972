"""Class-aware selective loss for partial annotation (Ben-Baruch et al., "Multi-label Classification
with Partial Annotations using Class-aware Selective Loss", CVPR 2022)."""

from __future__ import annotations

from typing import Sequence

import torch

from mlcls.losses.utils import LossBase, as_class_vector, check_reduction
from mlcls.registry import LOSSES
from mlcls.utils.dist import all_reduce


@LOSSES.register_module()
class SelectiveLoss(LossBase):
    """For entries that are not annotated (targets of -1), choose per class between ignoring them
    and taking them as negatives, from the class's prior (how often it is present).

    An unannotated entry of a frequent class (prior above ``prior_threshold``) is likely a
    positive nobody verified: it is ignored. Of a rare class it is most likely a negative: it is
    trained as one, except the ``likelihood_topk x B`` unannotated entries of the batch the model
    scores highest, which are ignored too. Per entry, with ``p = sigmoid(x)``, an asymmetric
    focal weight computed without gradient::

        y = 1:       -alpha_pos   (1 - p)^gamma_pos    log(p)
        y = 0:       -alpha_neg   p^gamma_neg          log(1 - p)
        unannotated: -alpha_unann p^gamma_unann        log(1 - p)   (if not ignored)

    The priors are fixed by ``priors``, else estimated while training: in the first epoch from
    the annotated labels (each class's share of positives among its annotated entries), from
    then on the mean score the model gave the class over the previous epoch's training batches
    (the paper's estimate from the model's predictions). The estimate is kept in checkpoints.
    Follows the authors' code for the top-k rule (taken over every unannotated entry of the batch).

    Args:
        prior_threshold: classes whose prior is above it ignore their unannotated entries.
        likelihood_topk: unannotated entries per image (on average over the batch) ignored for
            scoring highest.
        gamma_pos, gamma_neg, gamma_unann: focal exponents of each kind of entry.
        alpha_pos, alpha_neg, alpha_unann: weights of each kind of entry.
        priors: per-class priors in [0, 1] that fix the choice (no estimate).
        reduction: ``mean`` (over the entries that take part), ``sum`` or ``none``.
        loss_weight: multiplies the result.
        label_stats: training label counts (the first epoch's priors).
    """

    def __init__(
        self,
        prior_threshold: float = 0.05,
        likelihood_topk: float = 5,
        gamma_pos: float = 0.0,
        gamma_neg: float = 1.0,
        gamma_unann: float = 4.0,
        alpha_pos: float = 1.0,
        alpha_neg: float = 1.0,
        alpha_unann: float = 1.0,
        priors: Sequence[float] | None = None,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        label_stats: dict | None = None,
    ) -> None:
        super().__init__(check_reduction(reduction), loss_weight)
        self.prior_threshold, self.likelihood_topk = float(prior_threshold), float(likelihood_topk)
        self.gammas = (float(gamma_pos), float(gamma_neg), float(gamma_unann))
        self.alphas = (float(alpha_pos), float(alpha_neg), float(alpha_unann))
        fixed = as_class_vector(priors, "SelectiveLoss.priors")
        if fixed is not None and (fixed.dim() != 1 or (fixed > 1).any()):
            raise ValueError("SelectiveLoss.priors: expected one number in [0, 1] per class")
        self.fixed = fixed is not None
        start = fixed if fixed is not None else _annotated_frequency(label_stats)
        self.register_buffer("prior", start, persistent=False)  # [C], or None until the first batch
        self.register_buffer("score_sum", None, persistent=False)  # the running estimate of this epoch
        self.seen = 0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """From the second epoch on, the prior is the previous epoch's mean score (over every rank's
        batches). Called again for the same epoch (a run resumed mid-epoch) it changes nothing."""
        if int(epoch) == self.epoch:
            return
        if not self.fixed and self.score_sum is not None and self.seen > 0:
            self.prior = (self.score_sum / self.seen).float()
        self.score_sum, self.seen = None, 0
        self.epoch = int(epoch)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets in [0, 1] annotated, -1 not annotated). Returns a scalar, or [B, C] for 'none'."""
        x, t = logits.float(), targets.float()
        if x.shape != t.shape:
            raise ValueError(f"logits {tuple(x.shape)} and targets {tuple(t.shape)} must have the same shape [B, C]")
        p = torch.sigmoid(x)
        if self.training and not self.fixed:  # this epoch's estimate over every rank's batches, read at the next set_epoch
            s = all_reduce(torch.cat([p.detach().sum(0).double(), torch.tensor([float(x.shape[0])], dtype=torch.float64, device=x.device)]))
            self.score_sum = s[:-1] if self.score_sum is None else self.score_sum + s[:-1]
            self.seen += int(s[-1])
        unann = t < 0
        y = t.clamp(min=0)
        pos, neg = y * ~unann, (1 - y) * ~unann
        keep = self._selected(p.detach(), unann)
        log_p, log_q = torch.log(p.clamp(min=1e-8)), torch.log((1 - p).clamp(min=1e-8))
        (gp, gn, gu), (ap, an, au) = self.gammas, self.alphas
        with torch.no_grad():
            w = torch.pow(1 - p * pos - (1 - p) * (neg + unann), gp * pos + gn * neg + gu * unann)
        loss = -(ap * pos * log_p + an * neg * log_q + au * unann * log_q) * w * keep
        loss = self.loss_weight * loss
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.sum() / keep.sum().clamp(min=1)

    def _selected(self, p: torch.Tensor, unann: torch.Tensor) -> torch.Tensor:
        """1 for the entries that take part: every annotated one; an unannotated one of a rare class
        unless it is among the batch's ``likelihood_topk x B`` highest-scored unannotated entries."""
        keep = torch.ones_like(p)
        if self.prior is not None:
            frequent = self.prior.to(p.device) > self.prior_threshold
            keep = torch.where(unann & frequent, torch.zeros_like(p), keep)
        k = int(self.likelihood_topk * p.shape[0])
        flat = unann.flatten().nonzero().flatten()
        if k > 0 and len(flat):
            top = flat[torch.argsort(p.flatten()[flat], descending=True)[:k]]
            keep.view(-1)[top] = 0
        return keep

    def training_state(self) -> dict:
        """The priors in use and this epoch's running estimate."""
        return {"prior": None if self.prior is None else self.prior.cpu(), "epoch": self.epoch, "seen": self.seen,
                "score_sum": None if self.score_sum is None else self.score_sum.cpu()}  # fmt: skip

    def load_training_state(self, state: dict) -> None:
        if state.get("prior") is not None:
            self.prior = torch.as_tensor(state["prior"]).float()
        self.score_sum = None if state.get("score_sum") is None else torch.as_tensor(state["score_sum"]).double()
        self.seen, self.epoch = int(state.get("seen", 0)), int(state.get("epoch", 0))


def _annotated_frequency(label_stats: dict | None) -> torch.Tensor | None:
    """Each class's share of positives among its annotated entries (the first epoch's priors)."""
    if not label_stats or "pos" not in label_stats:
        return None
    pos = torch.as_tensor(label_stats["pos"], dtype=torch.float32)
    neg = torch.as_tensor(label_stats["neg"], dtype=torch.float32) if "neg" in label_stats else label_stats["num_samples"] - pos
    return pos / (pos + neg).clamp(min=1)
