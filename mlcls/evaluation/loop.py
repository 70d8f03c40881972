"""The evaluation loop: a model's scores over a loader, in dataset order, fed to an evaluator.

Used by validation (the trainer), ``tools/test.py``, cross-validation folds, visualisation and the
benchmarks. :func:`batch_to_device` is the one step that moves a batch to the device, shared with
the training loop, so training and evaluation see identically prepared inputs.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from mlcls.datasets.builder import Loader
from mlcls.errors import TrainingError
from mlcls.evaluation.metrics import Evaluator
from mlcls.utils.dist import is_dist


def loader_batch_transform(loader: DataLoader):
    """What runs on each whole batch after the copy (a :class:`Loader`'s uint8 normalisation), or None."""
    return loader.batch_transform if isinstance(loader, Loader) else None


def batch_to_device(
    images,
    targets: torch.Tensor,
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
    batch_transform=None,
    targets_too: bool = True,
):
    """A batch on ``device``: images (a tensor ``[B, 3, H, W]`` or a ``BagBatch``) in the model's
    memory format, normalised there once when the loader sends uint8 (``batch_transform``), and the
    targets ``[B, C]`` (left where they are with ``targets_too=False``: evaluators keep them on the host).

    Returns:
        ``(images, targets)``.
    """
    images = images.to(device, non_blocking=True, memory_format=memory_format)
    if batch_transform is not None:
        images = batch_transform(images).contiguous(memory_format=memory_format)
    return images, targets.to(device, non_blocking=True) if targets_too else targets


@torch.no_grad()
def predict_loader(
    model: nn.Module,
    loader: DataLoader,
    evaluator: Evaluator,
    device: torch.device,
    autocast=contextlib.nullcontext,
    memory_format: torch.memory_format = torch.contiguous_format,
):
    """Run ``model(images, mode='predict')`` over ``loader``; returns gathered (scores, targets).

    Batches of ``(images, targets, indices)`` (evaluation loaders, see
    :func:`mlcls.apis.loaders.build_loader`) carry each sample's dataset index: the gathered rows
    are then in dataset order, without DistributedSampler padding, whatever the sampler did, and
    ``evaluator.indices`` names the sample of each row. Batches of ``(images, targets)`` are
    taken in loader order, which only a single process can vouch for.
    """
    model.eval()
    evaluator.reset()
    batch_transform = loader_batch_transform(loader)
    for batch in loader:
        if len(batch) < 3 and is_dist():
            raise TrainingError(
                "evaluation under DDP needs each sample's dataset index: use an mlcls dataset or wrap yours "
                "in mlcls.datasets.IndexedDataset so it yields (image, target, index)"
            )
        images, targets = batch_to_device(batch[0], batch[1], device, memory_format, batch_transform, targets_too=False)
        with autocast():
            scores = model(images, mode="predict")
        evaluator.process(scores.float(), targets, batch[2] if len(batch) > 2 else None)
    if evaluator.sharded:
        return None  # class-sharded evaluation: the scores stay on their ranks (evaluator.compute())
    return evaluator.gathered()
