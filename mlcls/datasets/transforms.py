"""Transform pipelines from config: every ``torchvision.transforms.v2`` class by name."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torchvision.transforms.v2 as T

from mlcls.errors import BuildError
from mlcls.registry import TRANSFORMS


def _convert_args(cfg: dict) -> dict:
    """YAML can't spell torch objects: map ``dtype: float32`` and ``interpolation: bilinear``."""
    cfg = dict(cfg)
    if isinstance(cfg.get("dtype"), str):
        dt = getattr(torch, cfg["dtype"], None)
        if not isinstance(dt, torch.dtype):
            raise BuildError(f"transform {cfg['type']}: unknown dtype '{cfg['dtype']}'")
        cfg["dtype"] = dt
    if isinstance(cfg.get("interpolation"), str):
        try:
            cfg["interpolation"] = T.InterpolationMode[cfg["interpolation"].upper()]
        except KeyError:
            raise BuildError(f"transform {cfg['type']}: unknown interpolation '{cfg['interpolation']}'") from None
    if "transforms" in cfg and isinstance(cfg["transforms"], list):  # RandomApply, RandomChoice, ...
        cfg["transforms"] = [build_transform(t) for t in cfg["transforms"]]
    return cfg


def build_transform(cfg: dict) -> Callable:
    return TRANSFORMS.build(_convert_args(cfg))


def build_pipeline(cfgs: Sequence[dict]) -> Callable:
    """An :class:`ImagePipeline` of the transforms described by ``cfgs`` (applied to uint8 [3, H, W]).

    An empty list gives the identity (the decoded uint8 image).
    """
    return ImagePipeline([build_transform(c) for c in cfgs or []])


_PLAIN, _RANDOM_APPLY, _CALL = 0, 1, 2


# the forward that every "apply with probability p" transform inherits (read off a public class,
# not imported from torchvision's private modules)
_RANDOM_APPLY_FORWARD = T.RandomHorizontalFlip.forward


def _call_kind(t: Callable) -> int:
    if not (hasattr(t, "transform") and hasattr(t, "make_params")):
        return _CALL  # torchvision < 0.21 names these hooks privately: take the normal call
    forward = getattr(type(t), "forward", None)
    if forward is _RANDOM_APPLY_FORWARD and forward is not T.Transform.forward:
        return _RANDOM_APPLY
    if forward is T.Transform.forward and not hasattr(t, "p"):  # a probability would need its own draw
        return _PLAIN
    return _CALL


class ImagePipeline:
    """Applies transforms in order, like ``v2.Compose``, with less overhead per call.

    For a plain image tensor, a v2 transform that does not override ``forward`` is run as
    ``transform(img, make_params([img]))`` (and the ``p`` draw of random-apply transforms), which
    is what ``forward`` does for a single tensor after flattening and checking its inputs: the same
    results and the same random numbers, without ~40 us of per-transform bookkeeping that
    dominates small images. Anything else (PIL images, tv_tensors, transforms with their own
    ``forward`` such as RandAugment) goes through the normal call.
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)
        self._kinds = [_call_kind(t) for t in self.transforms]

    def __call__(self, img):
        for t, kind in zip(self.transforms, self._kinds):
            if kind == _CALL or type(img) is not torch.Tensor:
                img = t(img)
            elif kind == _RANDOM_APPLY:
                if torch.rand(1) < t.p:
                    img = t.transform(img, t.make_params([img]))
            else:
                img = t.transform(img, t.make_params([img]))
        return img

    def __repr__(self) -> str:
        return "ImagePipeline(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


@TRANSFORMS.register_module()
class ToFloatNormalize(T.Transform):
    """uint8 -> float32 in [0, 1], then ``(x - mean) / std`` (ImageNet statistics by default)."""

    def __init__(self, mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225)) -> None:
        super().__init__()
        self.mean = list(mean)
        self.std = list(std)
        # one fused multiply-add per pixel: x / 255 / std - mean / std
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in self.std]).view(-1, 1, 1)
        self._shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)]).view(-1, 1, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.dtype == torch.uint8 and img.dim() >= 3 and img.shape[-3] == len(self.mean):
            return torch.addcmul(self._shift, img.to(torch.float32), self._scale)
        x = T.functional.to_dtype(img, torch.float32, scale=True)
        return T.functional.normalize(x, self.mean, self.std)


def split_final_normalize(pipeline: Callable) -> tuple[Callable, "ToFloatNormalize | None"]:
    """``(pipeline without its final ToFloatNormalize, that transform)``, or ``(pipeline, None)`` when it
    does not end with one. Samples then stay uint8 and the normalisation runs once per batch, where
    the batch is used (the same arithmetic per element, so the same numbers)."""
    if isinstance(pipeline, ImagePipeline) and pipeline.transforms and isinstance(pipeline.transforms[-1], ToFloatNormalize):
        return ImagePipeline(pipeline.transforms[:-1]), pipeline.transforms[-1]
    return pipeline, None


#: transforms whose ``size`` fixes the output: an int is the smaller side (Resize) or a square (crops)
_SIZING = {"Resize": "short", "RandomResizedCrop": "square", "CenterCrop": "square", "RandomCrop": "square"}


def pipeline_min_side(cfgs: Sequence[dict] | None) -> int | None:
    """The smallest side, in pixels, of every image the pipeline ``cfgs`` puts out, when its last
    sizing transform (Resize, RandomResizedCrop, CenterCrop, RandomCrop) fixes it; else None."""
    for cfg in reversed(list(cfgs or [])):
        kind = _SIZING.get(cfg.get("type")) if isinstance(cfg, dict) else None
        if kind is None:
            continue
        size = cfg.get("size")
        if isinstance(size, int):
            return size
        if isinstance(size, (list, tuple)) and size and all(isinstance(s, int) for s in size):
            return min(size) if len(size) == 2 or kind == "square" else size[0]
        return None
    return None
