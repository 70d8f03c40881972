"""Loading pretrained backbone weights: a local file, or a torchvision weights name (online)."""

from __future__ import annotations

import logging

import torch.nn as nn

from mlcls.errors import CheckpointError
from mlcls.utils.checkpoint import load_state_dict_file

logger = logging.getLogger("mlcls")

_STRIP_PREFIXES = ("module.", "backbone.", "model.")


def load_pretrained(module: nn.Module, pretrained: str, tv_builder, drop_prefixes: tuple[str, ...] = ("fc.", "classifier.")) -> None:
    """Load ``pretrained`` into ``module``.

    Args:
        module: the torchvision network (before its classifier is removed).
        pretrained: a path to a local ``.pth`` (a state dict, optionally under 'state_dict'/'model',
            keys optionally prefixed 'backbone.'/'module.'), or a torchvision weights name such as
            ``IMAGENET1K_V1`` or ``ResNet50_Weights.IMAGENET1K_V2`` (downloaded by torchvision).
        tv_builder: the torchvision model builder, to resolve a weights name.
        drop_prefixes: classifier keys that a backbone does not keep.
    """
    import os

    if os.path.sep in pretrained or pretrained.endswith((".pth", ".pt", ".bin", ".ckpt")) or os.path.exists(pretrained):
        sd = load_state_dict_file(pretrained)
        source = pretrained
    else:
        from torchvision.models import get_model_weights

        enum = get_model_weights(tv_builder)
        name = pretrained.split(".")[-1]
        try:
            weights = enum[name]
        except KeyError:
            raise CheckpointError(
                f"pretrained: '{pretrained}' is neither an existing file nor a weights name of "
                f"{tv_builder.__name__} (choices: {', '.join(w.name for w in enum)})"
            ) from None
        try:
            sd = weights.get_state_dict(progress=False)
        except Exception as e:  # noqa: BLE001 - URLError, OSError, hash mismatch, ...
            raise CheckpointError(
                f"pretrained: could not download torchvision weights {enum.__name__}.{name} ({e}). "
                f"Offline? Download {weights.url} elsewhere and set 'pretrained: /path/to/file.pth'"
            ) from None
        source = f"{enum.__name__}.{name}"
    for p in _STRIP_PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            sd = {k[len(p) :]: v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith(drop_prefixes)}
    own = module.state_dict()
    shape_mismatch = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if shape_mismatch:
        raise CheckpointError(f"pretrained {source}: shape mismatch for {shape_mismatch[:5]}")
    result = module.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(drop_prefixes)]
    if missing:
        logger.warning("pretrained %s: %d missing keys, e.g. %s", source, len(missing), missing[:5])
    if result.unexpected_keys:
        logger.warning("pretrained %s: %d unexpected keys, e.g. %s", source, len(result.unexpected_keys), result.unexpected_keys[:5])
    logger.info("loaded pretrained weights from %s", source)
