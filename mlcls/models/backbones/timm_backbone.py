"""Any timm model as a backbone (timm >= 0.9)."""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys

import torch
import torch.nn as nn

from mlcls.errors import BuildError, CheckpointError
from mlcls.registry import MODELS
from mlcls.utils.checkpoint import identity, load_backbone_weights, read_weights

logger = logging.getLogger("mlcls")


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
            a local weights file: timm's format (``.pth``/``.bin``/``.safetensors``, passed through
            the model's own checkpoint filter as timm does) or any checkpoint mlcls wrote.
        out_index: with ``features_only``, which stage to return (default: the last).
        features_only: use timm's ``features_only`` wrapper instead of ``forward_features``.
        **kwargs: passed to ``timm.create_model`` (``img_size``, ``drop_path_rate``, ...).
    """

    min_input_size = None  # timm models differ; a model with a fixed img_size says so itself

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
            close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
            raise BuildError(f"TimmBackbone: unknown timm model '{model_name}'" + (f"; did you mean {close}?" if close else ""))
        kw = dict(kwargs)
        weights_file = None
        if isinstance(pretrained, str) and pretrained:
            if not os.path.isfile(pretrained):
                raise CheckpointError(f"TimmBackbone: pretrained file not found: {pretrained}")
            weights_file, pretrained = pretrained, False
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
        if weights_file:
            self._load_file(weights_file)

    def _load_file(self, path: str) -> None:
        sd, source = read_weights(path)
        if not any(k.startswith("model.") for k in sd):  # timm's own format: apply the model's converter
            filter_fn = getattr(sys.modules.get(type(self.model).__module__), "checkpoint_filter_fn", None)
            if filter_fn is not None:
                try:
                    sd = filter_fn(sd, self.model)
                except Exception as e:  # noqa: BLE001 - a converter that does not fit this file
                    logger.warning(
                        "TimmBackbone: timm's checkpoint_filter_fn did not apply to %s (%s); loading the names as they are", path, e
                    )
        load_backbone_weights(self, sd, source)

    def pretrained_key_maps(self, keys: list[str]) -> list:
        """mlcls's names (``model.<timm name>``) and timm's (``<timm name>``, classifier dropped);
        ``features_only`` wrappers flatten ``stages.0`` to ``stages_0``, which is mapped too."""
        own = set(self.state_dict())
        flat = {re.sub(r"^model\.", "", re.sub(r"_(\d+)\.", r".\1.", k)): k for k in own}

        def timm_names(key: str) -> str | None:
            if "model." + key in own:
                return "model." + key
            return flat.get(key, "model." + key)

        return [identity, timm_names]

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
