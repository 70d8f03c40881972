"""Any timm model as a backbone (timm >= 0.9)."""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from mlcls.errors import BuildError, CheckpointError
from mlcls.registry import MODELS


@MODELS.register_module()
class TimmBackbone(nn.Module):
    """``timm.create_model(model_name)`` without its classifier, returning a feature map.

    Output: [B, out_channels, H', W'] for convolutional models; transformer token outputs
    [B, N, D] are returned as [B, D, 1, N], so pooling necks and spatial heads (CSRA, ML-Decoder)
    apply unchanged.

    Args:
        model_name: any name from ``timm.list_models()``, e.g. ``resnet50``, ``tresnet_l``,
            ``convnext_tiny``, ``vit_small_patch16_224``.
        pretrained: ``False``; ``True`` to download timm's default weights (online); or a path to
            a local weights file (timm's own format, loaded through ``pretrained_cfg_overlay``).
        out_index: with ``features_only``, which stage to return (default: the last).
        features_only: use timm's ``features_only`` wrapper instead of ``forward_features``.
        **kwargs: passed to ``timm.create_model`` (``img_size``, ``drop_path_rate``, ...).
    """

    def __init__(
        self,
        model_name: str,
        pretrained: bool | str = False,
        features_only: bool = False,
        out_index: int = -1,
        **kwargs,
    ) -> None:
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            import difflib

            close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
            raise BuildError(f"TimmBackbone: unknown timm model '{model_name}'" + (f"; did you mean {close}?" if close else ""))
        kw = dict(kwargs)
        if isinstance(pretrained, str) and pretrained:
            if not os.path.isfile(pretrained):
                raise CheckpointError(f"TimmBackbone: pretrained file not found: {pretrained}")
            kw["pretrained_cfg_overlay"] = {"file": pretrained, "num_classes": kw.get("num_classes", 1000)}
            pretrained = True
        self.features_only = features_only
        self.out_index = out_index
        try:
            if features_only:
                self.model = timm.create_model(model_name, pretrained=bool(pretrained), features_only=True, **kw)
                self.out_channels = self.model.feature_info.channels()[out_index]
            else:
                self.model = timm.create_model(model_name, pretrained=bool(pretrained), num_classes=0, global_pool="", **kw)
                self.out_channels = self.model.num_features
        except (OSError, RuntimeError) as e:  # hub download failures, bad weight files
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(
                f"TimmBackbone '{model_name}': could not load pretrained weights ({msg}). Offline? Download the "
                "weights elsewhere and set 'pretrained: /path/to/file' (.pth or .safetensors)"
            ) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> features [B, out_channels, H', W']."""
        if self.features_only:
            return self.model(x)[self.out_index]
        out = self.model.forward_features(x)
        if out.dim() == 3:  # tokens [B, N, D] (ViT-style)
            out = out.transpose(1, 2).unsqueeze(2)
        elif out.dim() == 4 and out.shape[1] != self.out_channels and out.shape[-1] == self.out_channels:
            out = out.permute(0, 3, 1, 2)  # NHWC models (e.g. some Swin variants)
        return out
