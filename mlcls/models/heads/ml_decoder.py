"""ML-Decoder (Ridnik et al., WACV 2023): attention-based classification head."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlcls.models.heads.linear import MultiLabelClsHead
from mlcls.registry import MODELS


class _DecoderLayer(nn.Module):
    """A transformer decoder layer without self-attention (the paper's "optimal" layer):
    queries cross-attend to the image tokens, then a feed-forward block."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, dim_feedforward), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(dim_feedforward, d_model)
        )
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = self.norm1(queries + self.dropout(queries))  # the residual that replaces self-attention
        q = self.norm2(q + self.dropout(self.cross_attention(q, memory)))
        return self.norm3(q + self.dropout(self.ffn(q)))

    def cross_attention(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``self.attn(q, memory, memory)`` (same parameters, same result), written with shapes
        derived at run time: nn.MultiheadAttention traced for export fixes the number of image
        tokens, so an exported model would accept only the input size it was traced at.

        q [B, G, D], memory [B, N, D] -> [B, G, D].
        """
        attn, h = self.attn, self.attn.num_heads
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

        def heads(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return F.linear(x, w, b).unflatten(-1, (h, -1)).transpose(1, 2)  # [B, h, L, D/h]

        out = F.scaled_dot_product_attention(
            heads(q, w_q, b_q), heads(memory, w_k, b_k), heads(memory, w_v, b_v), dropout_p=attn.dropout if self.training else 0.0
        )
        return attn.out_proj(out.transpose(1, 2).flatten(2))


@MODELS.register_module()
class MLDecoderHead(MultiLabelClsHead):
    """ML-Decoder: [B, in_channels, H, W] -> logits [B, C].

    Image tokens are projected to ``embed_dim``; ``num_groups`` fixed (non-learned) random queries
    attend to them through one decoder layer without self-attention; a group fully-connected
    layer maps each query's output to ``ceil(C / num_groups)`` classes, so cost grows linearly
    with the number of classes.

    Args:
        num_groups: number of queries (paper: 100 for COCO; default ``min(C, 100)``).
        embed_dim: decoder width (paper: 768).
        num_heads: attention heads.
        dim_feedforward: feed-forward width (paper: 2048).
        dropout: decoder dropout (paper: 0.1).
    """

    spatial_input = True

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        num_groups: int | None = None,
        embed_dim: int = 768,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        loss: dict | None = None,
        label_stats: dict | None = None,
    ) -> None:
        super().__init__(num_classes, in_channels, loss, label_stats)
        self.num_groups = min(num_classes, num_groups or 100)
        self.group_size = math.ceil(num_classes / self.num_groups)
        self.embed = nn.Sequential(nn.Linear(in_channels, embed_dim), nn.ReLU(inplace=True))
        # fixed random queries: a buffer, saved in checkpoints, never trained
        self.register_buffer("queries", torch.randn(self.num_groups, embed_dim))
        self.decoder = _DecoderLayer(embed_dim, num_heads, dim_feedforward, dropout)
        self.group_weight = nn.Parameter(torch.empty(self.num_groups, embed_dim, self.group_size))
        self.group_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.xavier_normal_(self.group_weight)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats [B, in_channels, H, W] (or tokens [B, N, in_channels]) -> logits [B, C]."""
        tokens = feats.flatten(2).transpose(1, 2) if feats.dim() == 4 else feats  # [B, HW, in]
        memory = self.embed(tokens)
        q = self.queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        h = self.decoder(q, memory)  # [B, G, D]
        out = torch.einsum("bgd,gdk->bgk", h, self.group_weight).flatten(1)  # [B, G * k]
        return out[:, : self.num_classes] + self.group_bias
