"""Grad-CAM maps and prediction grids for a dataset split."""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mlcls.datasets.device_decode import stack_images
from mlcls.utils.plots import dataset_prediction_grid

logger = logging.getLogger("mlcls")


def grad_cam(model: nn.Module, images: torch.Tensor, class_index: int) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of one class on the backbone's last feature map.

    Args:
        model: an :class:`ImageClassifier` (``backbone`` + ``forward(images)`` -> logits).
        images: [B, 3, H, W] preprocessed images.
        class_index: the class whose logit is explained.

    Returns:
        Maps [B, H, W] in [0, 1] (each normalised by its maximum), upsampled to the input size.
    """
    store: dict = {}

    def keep(_module, _inp, out):
        out.retain_grad()
        store["feat"] = out

    handle = model.backbone.register_forward_hook(keep)
    try:
        model.eval()
        with torch.enable_grad():
            images = images.detach().requires_grad_(False)
            logits = model(images, mode="tensor")
            model.zero_grad(set_to_none=True)
            logits[:, class_index].sum().backward()
    finally:
        handle.remove()
    feat, grad = store["feat"], store["feat"].grad  # [B, D, h, w]
    if min(feat.shape[-2:]) < 7:
        logger.warning(
            "Grad-CAM: the backbone's feature map is only %dx%d for %dx%d inputs, so the heat map is that coarse grid "
            "stretched over the image; use larger inputs (a Resize in the test pipeline, e.g. 224) for a finer map",
            feat.shape[-2], feat.shape[-1], images.shape[-2], images.shape[-1],
        )  # fmt: skip
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * feat).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp(min=1e-12)
    return cam / peak[:, None, None]


def split_prediction_grid(
    model,
    dataset,
    indices,
    scores: np.ndarray,
    thr,
    cam_class: int | None = None,
    size: int = 96,
    ncols: int = 8,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """The labelled grid of ``indices``; with ``cam_class``, its Grad-CAM drawn over each image.

    ``prepare``: what turns a batch of the dataset's samples into the model's input on the device
    (an evaluation loader's ``batch_transform``, the normalisation of uint8 samples)."""
    overlays = None
    if cam_class is not None:
        images = stack_images([dataset[int(i)][0] for i in indices]).to(next(model.parameters()).device)
        images = prepare(images) if prepare is not None else images
        cams = grad_cam(model, images, cam_class)
        overlays = [F.interpolate(c[None, None], size=(size, size), mode="bilinear")[0, 0].cpu().numpy() for c in cams]
    title = f"Grad-CAM: {dataset.classes[cam_class]}" if cam_class is not None else ""
    return dataset_prediction_grid(dataset, indices, scores, thr, size=size, overlays=overlays, title=title, ncols=ncols)
