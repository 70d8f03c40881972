"""Necks turn a backbone feature map into a vector per image."""

from __future__ import annotations

import torch
import torch.nn as nn

from mlcls.registry import MODELS


@MODELS.register_module()
class GlobalAveragePooling(nn.Module):
    """[B, C, H, W] -> [B, C] by averaging over space (pass-through for [B, C])."""

    reads_bags = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x


@MODELS.register_module()
class InstancePooling(nn.Module):
    """Pools the instance features of each bag (an exam's slices, a listing's photos) into one vector.

    ``forward(features [N, D], sizes [B]) -> [B, D]``: the rows of ``features`` are the bags'
    instances one bag after another (``sizes`` per bag, summing to N), as a
    :class:`~mlcls.datasets.bags.BagBatch` packs them. Modes:

    * ``max``: the element-wise maximum (a finding on any slice counts; MRNet's pooling);
    * ``mean``: the average;
    * ``lse``: log-sum-exp, ``(1/r) log mean_k exp(r x_k)``, between mean (r -> 0) and max (r -> inf);
    * ``attention``: ``sum_k a_k h_k`` with ``a = softmax_k(w^T tanh(V h_k))`` (Ilse et al., 2018);
    * ``gated_attention``: ``a = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k)))``.

    Args:
        mode: one of the above.
        in_channels: D (the parent passes the backbone's ``out_channels``); needed by attention.
        hidden: the attention's hidden size (Ilse et al.: 128).
        r: the sharpness of ``lse``.
    """

    MODES = ("max", "mean", "lse", "attention", "gated_attention")
    reads_bags = True  # a model with this neck reads samples made of many images

    def __init__(self, mode: str = "max", in_channels: int | None = None, hidden: int = 128, r: float = 5.0) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"InstancePooling.mode: expected one of {', '.join(self.MODES)}, got {mode!r}")
        self.mode, self.r = mode, float(r)
        if mode in ("attention", "gated_attention"):
            if not in_channels:
                raise ValueError("InstancePooling: attention needs in_channels (the feature size)")
            self.attn_v = nn.Linear(in_channels, hidden)
            self.attn_u = nn.Linear(in_channels, hidden) if mode == "gated_attention" else None
            self.attn_w = nn.Linear(hidden, 1)
        #: the attention weights of the last call, one [S_b] tensor per bag (None for other modes)
        self.last_weights: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 4:  # a feature map per instance: average over space first
            x = x.mean(dim=(2, 3))
        if sizes is None:  # plain images: each is a bag of one
            sizes = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        lengths = sizes.tolist()
        padded = nn.utils.rnn.pad_sequence(list(x.split(lengths)), batch_first=True)  # [B, S_max, D]
        mask = torch.arange(padded.shape[1], device=x.device)[None] < sizes.to(x.device)[:, None]  # [B, S_max]
        if self.mode == "max":
            return padded.masked_fill(~mask[..., None], float("-inf")).amax(1)
        if self.mode == "mean":
            return padded.sum(1) / sizes.to(x.device, x.dtype)[:, None]
        if self.mode == "lse":
            z = (self.r * padded).masked_fill(~mask[..., None], float("-inf"))
            return (torch.logsumexp(z, 1) - torch.log(sizes.to(x.device, x.dtype))[:, None]) / self.r
        a = torch.softmax(self._attention_logits(padded).masked_fill(~mask, float("-inf")), dim=1)  # [B, S_max]
        self.last_weights = [w[:n].detach() for w, n in zip(a, lengths)]
        return (a[..., None] * padded).sum(1)

    def _attention_logits(self, h: torch.Tensor) -> torch.Tensor:
        """[..., S, D] -> [..., S]: ``w^T tanh(V h)`` (gated: ``w^T (tanh(V h) * sigmoid(U h))``)."""
        z = torch.tanh(self.attn_v(h))
        if self.attn_u is not None:
            z = z * torch.sigmoid(self.attn_u(h))
        return self.attn_w(z).squeeze(-1)

    def pool_one(self, x: torch.Tensor) -> torch.Tensor:
        """The instances of a single bag [S, D] -> [1, D], with no data-dependent shapes: the form an
        export traces (the slice count stays a free dimension)."""
        if self.mode == "max":
            return x.amax(0, keepdim=True)
        if self.mode == "mean":
            return x.mean(0, keepdim=True)
        if self.mode == "lse":
            n = x.new_ones(x.shape[0]).sum()  # the count as a tensor: an export keeps it free
            return ((torch.logsumexp(self.r * x, 0) - torch.log(n)) / self.r)[None]
        a = torch.softmax(self._attention_logits(x), dim=0)
        return (a[:, None] * x).sum(0, keepdim=True)


__all__ = ["GlobalAveragePooling", "InstancePooling"]
