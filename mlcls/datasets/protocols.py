"""What a dataset and a loader offer to the rest of mlcls, declared once.

Every dataset mlcls builds (:class:`~mlcls.datasets.base.MultiLabelDataset` and its readers,
:class:`~mlcls.datasets.shards.WebDatasetShards`, and the wrappers around them) is a
:class:`LabelledDataset`; the trainer positions a loader through
:func:`~mlcls.datasets.builder.set_loader_epoch`, which relies on :class:`EpochOrder`; a stream
that splits itself over ranks and workers is a :class:`Stream`. A new dataset that offers these
members works everywhere an mlcls one does (training, evaluation, reports, tools).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class LabelledDataset(Protocol):
    """A multi-label dataset: samples are ``(image, target [C])``, or ``(image, target, index)``
    when ``return_index`` is set (evaluation loaders set it, so scores are attributed to samples
    whatever the sampler did)."""

    classes: list[str]
    return_index: bool  #: evaluation loaders set it
    training: bool  #: False in evaluation: long bags keep evenly spaced instances, not a random subset
    bags: bool  #: a sample is a bag of images (batches are packed by ``collate_bags``)
    num_bad_images: int  #: unreadable images skipped so far (``on_bad_image: skip``), over all workers

    @property
    def num_classes(self) -> int: ...
    def __len__(self) -> int: ...
    def image_path(self, idx: int) -> str:
        """The file (or bag) of sample ``idx``, for reports and error messages."""

    def class_counts(self) -> np.ndarray:
        """int [C]: positive samples per class."""

    def class_frequency(self) -> np.ndarray:
        """float [C]: the fraction of samples where each class is positive (among those where it was
        verified, for partially labelled sets): what repeat factors and statistics use."""

    def label_stats(self) -> dict:
        """``num_samples``, ``pos`` and ``neg`` counts per class, ``classes`` (feeds ``auto`` loss weights)."""


@runtime_checkable
class EpochOrder(Protocol):
    """Something whose order is a function of (seed, epoch): a batch sampler or a stream."""

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Produce ``epoch``'s order next, starting after ``skip`` batches (or raise if it cannot skip)."""


@runtime_checkable
class Stream(Protocol):
    """An iterable dataset that deals its samples to ranks and workers itself."""

    def configure_loader(self, batch_size: int, num_workers: int) -> None:
        """Called by ``build_dataloader`` before the first epoch: an epoch counts whole batches per worker."""
