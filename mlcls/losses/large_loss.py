"""Large-loss modification (Kim et al., "Large Loss Matters in Weakly Supervised Multi-Label Classification", CVPR 2022)."""

from __future__ import annotations

import math

import torch

from mlcls.losses.utils import DataDerivedWeights, reduce_loss, split_targets
from mlcls.registry import LOSSES
from mlcls.utils.dist import all_gather_cat

MODES = ("reject", "correct", "correct_permanent")


@LOSSES.register_module()
class LargeLoss(DataDerivedWeights):
    """Labelled 0s are assumed negatives; those with the largest losses are rejected or corrected.

    Early in training a network fits clean labels before it memorises wrong ones, so among the
    labelled 0s the false negatives (missing positives) are the ones with large losses. Each
    batch, the labelled 0s whose per-entry loss is among the largest ``k`` are modified, with
    ``k = ceil(B x C x rate)`` over the batch's B x C entries (the authors' code) and at most the
    batch's labelled 0s:

    * ``reject`` (LL-R): their loss is set to 0; ``rate = delta_rel x epoch``.
    * ``correct`` (LL-Ct): they are trained as positives for this step; ``rate = delta_rel x epoch``.
    * ``correct_permanent`` (LL-Cp): as ``correct``, and the label stays 1 from then on (kept per
      sample and class, saved in checkpoints); ``rate = delta_rel`` every epoch after the first.

    Epoch 0 modifies nothing (the model has not fitted the clean labels yet). Entries of -1 stay
    unknown and take no part; labelled 1s are never modified. Ties at the k-th loss are all
    modified, as in the authors' code. Unlike that code, ``k`` never exceeds the labelled 0s of
    the batch, so a positive is never rejected when the rate outgrows the batch's negatives.

    Args:
        mode: ``reject``, ``correct`` or ``correct_permanent``.
        delta_rel: the share of a batch's entries modified per epoch (the paper's Delta_rel of
            0.2 % is 0.002).
        loss: the per-entry loss underneath (any registered loss; default BCE), built with
            ``reduction: none``.
        reduction: ``mean`` (over non-ignored entries, the rejected ones included), ``sum`` or ``none``.
        loss_weight: multiplies the result.
        label_stats: training label counts: the inner loss's ``auto`` weights, and the number of
            samples ``correct_permanent`` keeps labels for.
    """

    uses_sample_index = False

    def __init__(
        self,
        mode: str = "reject",
        delta_rel: float = 0.002,
        loss: dict | None = None,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        label_stats: dict | None = None,
    ) -> None:
        super().__init__(reduction, loss_weight)
        if mode not in MODES:
            raise ValueError(f"LargeLoss.mode: expected one of {', '.join(MODES)}, got {mode!r}")
        if not 0 <= delta_rel <= 1:
            raise ValueError(f"LargeLoss.delta_rel: expected a share in [0, 1] (the paper's 0.2 % is 0.002), got {delta_rel}")
        self.mode, self.delta_rel = mode, float(delta_rel)
        self.inner = LOSSES.build({**(loss or {"type": "BCEWithLogitsLoss"}), "reduction": "none"}, label_stats=label_stats)
        self.unresolved = getattr(self.inner, "unresolved", None)
        self.epoch = 0
        self.uses_sample_index = mode == "correct_permanent"
        self._index: torch.Tensor | None = None
        # the labels corrected for good, per training sample and class (a buffer: it follows the model's device);
        # a model built for evaluation or inference has no training set and needs none
        shape = (int(label_stats["num_samples"]), len(label_stats["pos"])) if self.uses_sample_index and label_stats else None
        self.register_buffer("corrected", torch.zeros(shape, dtype=torch.bool) if shape else None, persistent=False)

    def resolved_config(self, cfg: dict) -> dict:
        """``cfg`` with the inner loss's data-derived values (``auto`` weights) written out."""
        if not isinstance(self.inner, DataDerivedWeights):
            return cfg
        return {**cfg, "loss": self.inner.resolved_config(cfg.get("loss") or {"type": "BCEWithLogitsLoss"})}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_sample_index(self, index: torch.Tensor | None) -> None:
        """The training-set index of each row of the next batch ([B]; ``correct_permanent`` needs it)."""
        self._index = index

    def rate(self) -> float:
        """The share of a batch's entries modified this epoch."""
        if self.epoch == 0:
            return 0.0
        return self.delta_rel if self.mode == "correct_permanent" else min(1.0, self.delta_rel * self.epoch)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits, targets: [B, C] (targets in [0, 1], -1 = ignore). Returns a scalar, or [B, C] for 'none'."""
        x, y, valid = split_targets(logits, targets)
        index = self._index
        if self.uses_sample_index:
            if self.corrected is None:
                raise ValueError(
                    "LargeLoss(mode=correct_permanent) trains only with the training label counts (tools/train.py passes them)"
                )
            if index is None or len(index) != x.shape[0]:
                raise ValueError("LargeLoss(mode=correct_permanent): the batch's sample indices were not given (set_sample_index)")
            index = index.to(self.corrected.device)
            y = torch.where(valid & self.corrected[index].to(y.device), torch.ones_like(y), y)
        given = torch.where(valid, y, torch.full_like(y, -1.0))
        loss = self.inner(x, given)  # [B, C], 0 where ignored
        unobserved = valid & (y == 0)
        rate = self.rate()
        k = min(math.ceil(x.numel() * rate), int(unobserved.sum()))
        chosen = torch.zeros_like(unobserved)
        if k > 0:
            scored = torch.where(unobserved, loss.detach(), torch.full_like(loss, -math.inf))
            kth = torch.topk(scored.flatten(), k).values[-1]
            chosen = unobserved & (scored >= kth)
            if self.mode == "reject":
                loss = torch.where(chosen, torch.zeros_like(loss), loss)
            else:
                as_positive = self.inner(x, torch.where(valid, torch.ones_like(y), given))
                loss = torch.where(chosen, as_positive, loss)
        if self.mode == "correct_permanent" and rate > 0:  # every rank takes part, also one that chose nothing this step
            self._keep(index, chosen)
        return self.loss_weight * reduce_loss(loss, valid, self.reduction)

    @torch.no_grad()
    def _keep(self, index: torch.Tensor, chosen: torch.Tensor) -> None:
        """Mark ``chosen`` [B, C] of the samples ``index`` [B] as positives for good, on every rank:
        each rank sees other samples, and all must train on the same labels from the next step on."""
        rows = all_gather_cat(torch.cat([index.to(chosen.device).view(-1, 1).long(), chosen.long()], dim=1))
        self.corrected[rows[:, 0].to(self.corrected.device)] |= rows[:, 1:].bool().to(self.corrected.device)

    def training_state(self) -> dict:
        """The labels corrected for good (``correct_permanent``), as (sample, class) pairs."""
        if self.corrected is None:
            return {}
        pairs = self.corrected.nonzero().cpu()
        return {"corrected": pairs, "shape": list(self.corrected.shape)}

    def load_training_state(self, state: dict) -> None:
        if self.corrected is None:
            return
        if state.get("shape") is not None and list(state["shape"]) != list(self.corrected.shape):
            raise ValueError(
                f"LargeLoss: the checkpoint's corrected labels are for {state['shape'][0]} samples x {state['shape'][1]} classes, "
                f"this training set has {self.corrected.shape[0]} x {self.corrected.shape[1]}"
            )
        self.corrected.zero_()
        pairs = state.get("corrected")
        if pairs is not None and len(pairs):
            pairs = torch.as_tensor(pairs).long().to(self.corrected.device)
            self.corrected[pairs[:, 0], pairs[:, 1]] = True
