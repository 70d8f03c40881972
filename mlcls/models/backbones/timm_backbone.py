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
from mlcls.utils.checkpoint import download_weights, identity, load_backbone_weights, read_weights

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
        # never timm's own pretrained loading: its default weights are fetched as a file and read like
        # any other (weights_only, checksums, names mapped, tensors counted), see timm_weights_file
        if features_only:
            self.model = timm.create_model(model_name, pretrained=False, features_only=True, **kw)
            self.out_channels = self.model.feature_info.channels()[out_index]
        else:
            self.model = timm.create_model(model_name, pretrained=False, num_classes=0, global_pool="", **kw)
            self.out_channels = self.model.num_features
        if pretrained is True:
            weights_file = timm_weights_file(model_name, kw.get("pretrained_cfg_overlay"))
        if weights_file:
            self._load_file(weights_file)

    def _load_file(self, path: str | os.PathLike) -> None:
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


def timm_weights_file(model_name: str, overlay: dict | None = None) -> str:
    """The local file of timm's default pretrained weights for ``model_name`` (``resnet50``,
    ``vit_small_patch16_224.augreg_in21k``): downloaded once from the Hugging Face hub or the URL
    timm names (torch hub's cache, hash-checked when the name carries one), never loaded by timm.

    Raises:
        CheckpointError: timm names no weights for it, or the download failed (offline?).
    """
    from timm.models import get_pretrained_cfg

    found = get_pretrained_cfg(model_name)
    cfg = {**(found.to_dict() if found is not None else {}), **(overlay or {})}
    if cfg.get("file"):
        return str(cfg["file"])
    if cfg.get("hf_hub_id"):
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
        for name in names:
            try:
                return hf_hub_download(cfg["hf_hub_id"], name)
            except EntryNotFoundError:
                continue  # the repository holds the other format
            except Exception as e:  # noqa: BLE001 - offline, no such repository, HTTP errors
                if not cfg.get("url"):
                    raise CheckpointError(
                        f"TimmBackbone '{model_name}': could not download its pretrained weights from the Hugging Face hub "
                        f"({cfg['hf_hub_id']}: {str(e).splitlines()[0] if str(e) else type(e).__name__}). Offline? Download "
                        "them elsewhere and set 'pretrained: /path/to/file' (.pth, .bin or .safetensors)"
                    ) from None
                break
    if cfg.get("url"):
        return str(download_weights(cfg["url"], f"timm weights of {model_name}"))
    raise CheckpointError(f"TimmBackbone '{model_name}': timm names no pretrained weights for it; set 'pretrained: /path/to/file' or false")
