"""Grad-CAM maps and prediction grids for a dataset split."""

from __future__ import annotations

import logging
import os
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms.v2.functional import resize

from mlcls.apis.inference import Preprocessor, bag_evidence, bag_views, with_test_pipeline
from mlcls.datasets.bags import BagBatch, exam_name, load_bag, pack, view_files
from mlcls.datasets.device_decode import stack_images
from mlcls.datasets.image_io import samples_for_display
from mlcls.report.html import slice_words
from mlcls.utils.plots import prediction_grid, scored_grid

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
    _warn_if_coarse(feat, images)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * feat).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp(min=1e-12)
    return cam / peak[:, None, None]


def _warn_if_coarse(feat: torch.Tensor, images: torch.Tensor) -> None:
    if min(feat.shape[-2:]) < 7:
        logger.warning(
            "Grad-CAM: the backbone's feature map is only %dx%d for %dx%d inputs, so the heat map is that coarse grid "
            "stretched over the image; use larger inputs (a Resize in the test pipeline, e.g. 224) for a finer map",
            feat.shape[-2], feat.shape[-1], images.shape[-2], images.shape[-1],
        )  # fmt: skip


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
    images, targets = samples_for_display(dataset, indices)
    return scored_grid(images, targets, scores, thr, dataset.classes, size=size, overlays=overlays, title=title, ncols=ncols)


def slice_grad_cam(model: nn.Module, bags: BagBatch, view: str, position: int, class_index: int) -> torch.Tensor:
    """Grad-CAM of one class on one instance (slice) of a batch of one exam: the gradient of the
    exam's logit through the pooling to that slice's feature map.

    Args:
        bags: the exam, packed (see :func:`mlcls.datasets.bags.pack`).
        view: the view holding the slice (``""`` without named views); ``position``: its row in
            that view's packed instances.

    Returns:
        The map [H, W] in [0, 1] at the slice's input size.
    """
    backbone = model.backbones[view] if getattr(model, "separate_backbones", False) else model.backbone
    parts: list[torch.Tensor] = []

    def keep(_module, _inp, out):
        out.retain_grad()
        parts.append(out)

    names = model.views or [""]
    handle = backbone.register_forward_hook(keep)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(bags, mode="tensor")
            model.zero_grad(set_to_none=True)
            logits[0, class_index].backward()
    finally:
        handle.remove()
    # the backbone ran over each view's instances in the model's view order (in chunks): a shared
    # one saw every view, a view's own one only that view
    feat, grad = torch.cat(parts), torch.cat([f.grad for f in parts])
    if not getattr(model, "separate_backbones", False):
        position += sum(int(bags.views[v][0].shape[0]) for v in names[: names.index(view)])
    _warn_if_coarse(feat, bags.views[view][0])
    f, g = feat[position : position + 1], grad[position : position + 1]
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * f).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=bags.views[view][0].shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return cam / cam.max().clamp(min=1e-12)


def exam_evidence_grid(
    model, dataset, indices, scores: np.ndarray, thr, cam_class: int | None = None, size: int = 96, ncols: int = 8
) -> np.ndarray:
    """The labelled grid of exams, each shown by its evidence slice: the slice that carried the
    score of ``cam_class`` (else of the exam's highest-scoring class), captioned with exam, view,
    slice and class; with ``cam_class``, Grad-CAM of that class over the slice."""
    classes = list(dataset.classes)
    named = [v for v in bag_views(model) or [] if v] or [""]
    thr_arr = np.broadcast_to(np.asarray(thr, dtype=np.float64), (len(classes),))
    images, true, pred, overlays, captions = [], [], [], [], []
    device = next(model.parameters()).device
    for k, i in enumerate(indices):
        path = dataset.image_path(int(i))
        files = view_files(path, named) if named != [""] else {"": path}
        item = files if named != [""] else path
        c = int(cam_class) if cam_class is not None else int(np.argmax(scores[k]))
        best = bag_evidence(model, [item])[0]["per_class"][classes[c]]
        v, s = best["view"], best["slice"]
        raw = load_bag(files[v])
        images.append(resize(raw[s], [size, size], antialias=True).permute(1, 2, 0).numpy())
        captions.append(
            f"{os.path.basename(exam_name(path))} {v + ' ' if v else ''}{slice_words(s, raw.shape[0])}: {classes[c]} {best['score']:.2f}"
        )
        if cam_class is not None:
            prepare = Preprocessor(with_test_pipeline(model))
            # the model reads every slice (no max_instances here), so the slice's row is its index
            bags = pack([{u: prepare.pipeline(load_bag(f)) for u, f in files.items()} if named != [""] else prepare.pipeline(raw)])
            cam = slice_grad_cam(model, bags.to(device), v, s, c)
            overlays.append(F.interpolate(cam[None, None], size=(size, size), mode="bilinear")[0, 0].cpu().numpy())
        t = dataset.get_target(int(i))
        true.append([classes[j] for j in torch.nonzero(t > 0.5).flatten().tolist()])
        pred.append([classes[j] for j in np.nonzero(np.asarray(scores[k]) >= thr_arr)[0].tolist()])
    title = "each exam by its evidence slice" + (f"; Grad-CAM: {classes[cam_class]}" if cam_class is not None else "")
    return prediction_grid(images, true, pred, overlays=overlays or None, ncols=ncols, title=title, captions=captions)
