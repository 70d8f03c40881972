"""Shared loss plumbing: the ignore mask (targets of -1) and the reduction."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
import torch.nn as nn

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got '{reduction}'")
    return reduction


def split_targets(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cast to fp32 (also under autocast) and separate the ignore mask.

    Args:
        logits: [B, C].
        targets: [B, C] in {0, 1}, soft in [0, 1], or -1 (ignore).

    Returns:
        ``(logits_fp32, targets_fp32 with -1 replaced by 0, valid mask (bool) [B, C])``.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same shape [B, C]")
    logits = logits.float()
    targets = targets.float()
    valid = targets >= 0
    return logits, targets.clamp(min=0), valid


def reduce_loss(loss: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """Zero the ignored entries, then reduce. ``mean`` divides by the number of valid entries."""
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / valid.sum().clamp(min=1)


def as_class_vector(value: float | Sequence[float] | torch.Tensor | None, name: str) -> torch.Tensor | None:
    """A scalar or per-class list as a float tensor (scalar: shape [], list: shape [C])."""
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.dim() > 1:
        raise ValueError(f"{name} must be a scalar or a per-class list, got shape {tuple(t.shape)}")
    if (t < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return t


class LossBase(nn.Module):
    """Common arguments of every loss: ``reduction`` (mean | sum | none) and ``loss_weight``."""

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.loss_weight = float(loss_weight)


class DataDerivedWeights(LossBase):
    """Base for losses whose weights may come from the training labels (``auto``).

    The weights are buffers outside the state dict: they shape training only, never a
    prediction, so any loss setting can evaluate any checkpoint. Values computed from the labels
    are kept in :attr:`resolved` and written into the config stored with each checkpoint
    (:meth:`resolved_config`), so a rebuilt model has the numbers without the labels.
    """

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.resolved: dict[str, list[float]] = {}  # argument name -> the values 'auto' gave
        self.unresolved: str | None = None  # what is missing when 'auto' had no label counts

    def class_vector(self, name: str, value, keyword: str, compute, label_stats: dict | None) -> torch.Tensor | None:
        """A weight argument that is a scalar, a per-class list, or ``keyword`` (computed by
        ``compute(label_stats)``, recorded in :attr:`resolved`; unresolved without label counts)."""
        if isinstance(value, str):
            if value != keyword:
                raise ValueError(f"{type(self).__name__}.{name} must be a number, a per-class list or '{keyword}', got '{value}'")
            if not label_stats:
                self.unresolved = f"{name}: {keyword}"
                return None
            t = compute(label_stats)
            self.resolved[name] = [round(v, 6) for v in t.tolist()]
            return t
        return as_class_vector(value, name)

    def resolved_config(self, cfg: dict) -> dict:
        """``cfg`` with each data-derived argument replaced by the values in use."""
        return {**cfg, **self.resolved}

    def check_resolved(self) -> None:
        if self.unresolved:
            raise ValueError(
                f"{type(self).__name__}: {self.unresolved} was built without the training label counts, so its weights are "
                "unknown; build the model with label_stats (tools/train.py does) or give the values in the config"
            )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        # checkpoints written before the weights left the state dict still hold them: not an error
        own = {prefix + name for name in self._buffers}
        unexpected_keys[:] = [k for k in unexpected_keys if k not in own]


@runtime_checkable
class EpochAware(Protocol):
    """A loss that changes during training. The trainer calls ``set_epoch(epoch)`` before each
    epoch, counted from 0 as ``DistributedSampler.set_epoch`` counts, on every rank."""

    def set_epoch(self, epoch: int) -> None: ...


@runtime_checkable
class TrainingState(Protocol):
    """A loss that keeps state while it trains (corrected labels, an estimated prior). The trainer
    saves ``training_state()`` in each checkpoint and hands it back on resume, so a resumed run
    continues exactly; the state is not part of the model's weights (inference never needs it)."""

    def training_state(self) -> dict: ...

    def load_training_state(self, state: dict) -> None: ...


@runtime_checkable
class SampleIndexed(Protocol):
    """A loss whose state is per training sample: with ``uses_sample_index`` true the training
    dataset returns each sample's index and the trainer hands the batch's indices [B] to
    ``set_sample_index`` before the forward pass."""

    uses_sample_index: bool

    def set_sample_index(self, index: torch.Tensor | None) -> None: ...
