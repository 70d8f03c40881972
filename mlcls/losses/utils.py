"""Shared loss plumbing: the ignore mask (targets of -1) and the reduction."""

from __future__ import annotations

from typing import Sequence

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
    """Base for losses whose weight buffers may come from the training labels (``auto``).

    Built without label counts (for testing or inference), such a buffer is an empty placeholder;
    loading a checkpoint's state dict gives it the stored shape and values.
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buf in self._buffers.items():
            key = prefix + name
            if buf is not None and buf.numel() == 0 and key in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
