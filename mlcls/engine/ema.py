"""Exponential moving average (EMA) of model weights, as in the ASL / ML-Decoder training recipes."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class ModelEMA:
    """Keeps ``ema = decay * ema + (1 - decay) * weights`` after every optimizer step.

    Floating-point parameters and buffers (BatchNorm running statistics included) are averaged;
    integer buffers (``num_batches_tracked``) are copied.

    Args:
        model: the trained model (unwrapped from DDP); a frozen copy is made on the same device.
        decay: the EMA decay per update (0.9997 in the ASL COCO recipe).
        warmup: use ``min(decay, (1 + n) / (10 + n))`` for the n-th update, so that short runs
            are not dominated by the random initialisation (YOLOv5 / timm ``ModelEmaV3`` style).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9997, warmup: bool = False) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema.decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.decay = float(decay)
        self.warmup = warmup
        self.updates = 0

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, (1 + self.updates) / (10 + self.updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_f, new_f = [], []
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.is_floating_point():
                ema_f.append(e)
                new_f.append(m.detach())
            else:
                e.copy_(m)
        if ema_f:
            torch._foreach_lerp_(ema_f, new_f, 1.0 - d)  # ema += (1 - d) * (new - ema), one fused call
        self.updates += 1

    def state_dict(self) -> dict:
        return {"state_dict": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["state_dict"])
        self.updates = int(state.get("updates", 0))
