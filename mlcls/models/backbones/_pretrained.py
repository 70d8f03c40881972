"""Loading weights into a backbone (``pretrained:``) or a whole model (``load_from:``).

Accepted sources: torchvision state dicts and weight names, timm state dicts, any checkpoint
mlcls writes, and mmpretrain/mmcls checkpoints (``backbone.*`` + ``head.*`` keys). Each backbone lists how
foreign key names map onto its own (``pretrained_key_maps(source_keys)``); the map that matches the
most tensors is used. Nothing is silent: the log says how many of the backbone's tensors were
loaded and which were missing or unused, and fewer than half matching is an error.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Sequence

import torch
import torch.nn as nn

from mlcls.errors import CheckpointError
from mlcls.utils.checkpoint import load_state_dict_file

logger = logging.getLogger("mlcls")

KeyMap = Callable[[str], "str | None"]  # source key -> own key (None: drop, e.g. a classifier)


def identity(key: str) -> str:
    return key


def read_weights(pretrained: str, tv_builder=None) -> tuple[dict[str, torch.Tensor], str]:
    """``(backbone state dict, description)`` for a local file, or a torchvision weights name (downloaded).

    Of a whole-model file (mlcls, mmpretrain) only the ``backbone.*`` tensors are returned.

    Args:
        pretrained: a path, or a name such as ``IMAGENET1K_V1`` / ``ResNet50_Weights.IMAGENET1K_V2``.
        tv_builder: the torchvision model builder that resolves a weights name (None: files only).
    """
    if (
        tv_builder is None
        or os.path.sep in pretrained
        or pretrained.endswith((".pth", ".pt", ".bin", ".ckpt", ".safetensors"))
        or os.path.exists(pretrained)
    ):
        if pretrained.endswith(".safetensors") and os.path.isfile(pretrained):
            from safetensors.torch import load_file

            sd = load_file(pretrained)
        else:
            sd = load_state_dict_file(pretrained)
        backbone, rest = split_model_keys(sd)
        if rest:
            logger.info(
                "pretrained %s: a whole-model file; its %d non-backbone tensors (%s) are not used",
                pretrained,
                len(rest),
                _short(list(rest)),
            )
        return backbone, pretrained
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
            f"Offline? Download {weights.url} elsewhere and set 'pretrained: /path/to/file.pth', or 'pretrained: null' to train from scratch"
        ) from None
    return sd, f"{enum.__name__}.{name}"


def split_model_keys(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A whole-model state dict -> (backbone tensors without the prefix, the other tensors).

    A ``module.`` prefix (a DDP-wrapped save) is removed first. A file without ``backbone.`` keys
    is taken as backbone weights alone (torchvision, timm).
    """
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    backbone = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    if not backbone:
        return dict(sd), {}
    return backbone, {k: v for k, v in sd.items() if not k.startswith("backbone.")}


def _short(keys: Sequence[str], n: int = 3) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "") if keys else "none"


def _counted(keys) -> list[str]:
    # BatchNorm's step counters carry no learned value and are absent from many published files
    return [k for k in keys if not k.endswith("num_batches_tracked")]


def load_backbone_weights(backbone: nn.Module, sd: dict[str, torch.Tensor], source: str, min_fraction: float = 0.5) -> int:
    """Load backbone weights given under any supported naming; returns the number loaded.

    Raises:
        CheckpointError: a tensor's shape differs (named), or fewer than ``min_fraction`` of the
            backbone's tensors are found in ``sd`` (names the first expected and found keys).
    """
    maps: list[KeyMap] = list(getattr(backbone, "pretrained_key_maps", lambda keys: [identity])(list(sd)))
    own = backbone.state_dict()
    best: tuple[int, dict, list] | None = None
    for key_map in maps:
        mapped, unused = {}, []
        for k, v in sd.items():
            nk = key_map(k)
            if nk is None:
                continue  # e.g. an ImageNet classifier: not part of a backbone
            if nk in own:
                mapped[nk] = v
            else:
                unused.append(k)
        if best is None or len(mapped) > len(best[1]):
            best = (len(mapped), mapped, unused)
    _, mapped, unused = best
    for k, v in mapped.items():
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"{source}: tensor '{k}' has shape {list(v.shape)} in the file but {list(own[k].shape)} in {type(backbone).__name__} "
                "(a different depth or width?)"
            )
    expected, loaded = _counted(own), _counted(mapped)
    if len(loaded) < min_fraction * len(expected):
        raise CheckpointError(
            f"{source}: only {len(loaded)} of the {len(expected)} tensors of {type(backbone).__name__} are in the file, so it "
            f"does not hold weights for this backbone (expected keys like '{expected[0]}', found keys like "
            f"'{next(iter(sd), '<none>')}')"
        )
    backbone.load_state_dict(mapped, strict=False)
    missing = [k for k in expected if k not in mapped]
    msg = "loaded %d/%d backbone tensors from %s (missing: %s; unused: %s)"
    (logger.warning if missing else logger.info)(msg, len(loaded), len(expected), source, _short(missing), _short(unused))
    return len(loaded)


def load_model_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """``load_from``: every matching tensor of a whole model from any supported file.

    The backbone goes through :func:`load_backbone_weights` (so foreign names are mapped); neck
    and head tensors load by name when their shapes agree. A head tensor whose shape differs (a
    different number of classes) is skipped with a warning naming it; any other mismatch is an error.
    """
    source = str(path)
    backbone_sd, rest = split_model_keys(load_state_dict_file(path))
    load_backbone_weights(model.backbone, backbone_sd, source)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    take, skipped = {}, []
    for k, v in rest.items():
        if k not in own:
            continue
        if v.shape == own[k].shape:
            take[k] = v
        elif k.startswith("head."):
            skipped.append(f"{k} {list(v.shape)} in the file, {list(own[k].shape)} here")
        else:
            raise CheckpointError(f"{source}: tensor '{k}' has shape {list(v.shape)} in the file but {list(own[k].shape)} in the model")
    model.load_state_dict(take, strict=False)
    if skipped:
        logger.warning("load_from %s: head tensors skipped, their shapes differ (another class count?): %s", source, "; ".join(skipped))
    logger.info("load_from %s: %d/%d head/neck tensors loaded", source, len(_counted(take)), len(_counted(own)))
