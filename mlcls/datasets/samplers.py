"""Samplers: seeded epoch shuffling that also shards across DDP ranks, and class-balanced sampling."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler, get_worker_info

from mlcls.datasets.labels import segment_reduce
from mlcls.registry import SAMPLERS
from mlcls.utils.dist import get_rank, get_world_size


@SAMPLERS.register_module()
class DefaultSampler(DistributedSampler):
    """Shuffles with ``seed + epoch`` (reproducible, resumable) and gives each rank its share.

    Single-process runs use it too (one rank), so the order of samples does not depend on whether
    DDP is on. Call :meth:`set_epoch` before each epoch (the trainer does).
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=shuffle, seed=seed, drop_last=drop_last)


def repeat_factors(dataset, oversample_thr: float) -> np.ndarray:
    """LVIS repeat factor per image, from the dataset's CSR label arrays (no dense matrix).

    ``f(c)`` = fraction of images where class c is positive, ``r(c) = max(1, sqrt(t / f(c)))``,
    ``r(image)`` = max of ``r(c)`` over its positive classes (1 for an image without any). With
    partial labels (``dataset.unlisted == -1``), ``f(c)`` is the fraction among the images where
    c was verified (positive or verified negative), see ``MultiLabelDataset.class_frequency``.

    Returns:
        float64 [N].
    """
    if not oversample_thr > 0:
        raise ValueError(f"oversample_thr must be positive, got {oversample_thr}")
    freq = dataset.class_frequency()
    r_class = np.maximum(1.0, np.sqrt(oversample_thr / np.maximum(freq, 1e-12)))
    # per stored entry: its class's factor if positive, else 1; the image's factor is the max over
    # its entries (one reduceat over the CSR segments: no per-entry row index array)
    per_entry = r_class.astype(np.float32)[dataset.label_ids]  # float32 (7 digits) halves the traffic of this pass
    per_entry[dataset.label_vals != 1] = 1.0
    return segment_reduce(np.maximum, per_entry, dataset.offsets, empty=1.0).astype(np.float64)


@SAMPLERS.register_module()
class RepeatFactorSampler(Sampler):
    """Class-balanced sampling by LVIS repeat factors, with stochastic rounding per epoch.

    Each epoch an image with factor ``r`` appears ``floor(r)`` times plus once more with
    probability ``frac(r)`` (drawn with ``seed`` and the epoch, so every epoch differs and every
    rank agrees); the list is shuffled, trimmed or topped up to a fixed epoch length
    ``round(sum(r))`` (so schedulers see a constant number of iterations), and split into disjoint
    per-rank shares under DDP.

    Args:
        dataset: a :class:`MultiLabelDataset` (labels read from its CSR arrays).
        oversample_thr: ``t``; classes present in fewer than a fraction t of the images are
            oversampled. ``tools/analyze_dataset.py`` suggests a value.
        seed: base seed (the trainer passes the run's seed).
        shuffle: shuffle the repeated list (default true).
    """

    def __init__(self, dataset, oversample_thr: float, seed: int = 0, shuffle: bool = True) -> None:
        self.factors = repeat_factors(dataset, oversample_thr)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.rank, self.world_size = get_rank(), get_world_size()
        self.total = max(1, int(round(self.factors.sum())))
        self.num_samples = -(-self.total // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> np.ndarray:
        """The whole epoch's list (all ranks), before sharding."""
        rng = np.random.default_rng([self.seed, self.epoch])
        base = np.floor(self.factors)
        reps = (base + (rng.random(len(self.factors)) < self.factors - base)).astype(np.int64)
        idx = np.repeat(np.arange(len(self.factors)), reps)
        if self.shuffle:
            idx = idx[rng.permutation(len(idx))]
        if len(idx) >= self.total:
            idx = idx[: self.total]
        else:
            idx = np.concatenate([idx, idx[rng.integers(0, len(idx), self.total - len(idx))]])
        padded = self.num_samples * self.world_size
        return np.resize(idx, padded)  # repeats from the start to even out the shares

    def __iter__(self):
        return iter(self.epoch_indices()[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples


class SeededBatch(list):
    """A batch of dataset indices that carries the seed of its augmentations (see :func:`fetch_seeded`)."""

    seed: int | None = None

    def __reduce__(self):  # pickled to DataLoader workers with its seed
        return (_make_batch, (list(self), self.seed))


def _make_batch(items, seed):
    b = SeededBatch(items)
    b.seed = seed
    return b


class SeededBatchSampler(Sampler):
    """Batches of a sampler's indices, each tagged with a seed derived from (seed, epoch, rank, position).

    Datasets that implement ``__getitems__`` with :func:`fetch_seeded` reseed their random
    augmentations from that tag, so a batch's augmentation depends only on where it is in the run
    -- not on which worker process draws it or on what that worker drew before. Hence results do
    not depend on ``num_workers``, and a run resumed in the middle of an epoch (skipping the
    batches already done) replays exactly.

    Args:
        sampler: gives the epoch's indices (``set_epoch`` is forwarded).
        batch_size: samples per batch.
        drop_last: drop a final incomplete batch.
        seed: base seed (the run's seed).
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool = False, seed: int = 0) -> None:
        self.sampler, self.batch_size, self.drop_last, self.seed = sampler, int(batch_size), drop_last, int(seed)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start ``epoch`` at batch ``skip`` (the batches before it are not produced at all)."""
        self.epoch, self.skip = int(epoch), int(skip)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        rank = get_rank()
        indices = list(iter(self.sampler))
        n = len(self)
        for b in range(self.skip, n):
            batch = SeededBatch(indices[b * self.batch_size : (b + 1) * self.batch_size])
            # one 63-bit seed per (seed, epoch, rank, batch): numpy's SeedSequence mixes the parts
            batch.seed = int(np.random.SeedSequence([self.seed, self.epoch, rank, b]).generate_state(2, np.uint64)[0] >> 1)
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def fetch_seeded(getitem, indices) -> list:
    """``[getitem(i) for i in indices]`` with python/numpy/torch seeded from the batch's tag.

    In a DataLoader worker the global generators are simply reseeded; in the main process
    (``num_workers=0``) they are restored afterwards, so the training loop's own randomness
    (dropout, ...) is not disturbed.
    """
    seed = getattr(indices, "seed", None)
    if seed is None:
        return [getitem(i) for i in indices]
    in_main = get_worker_info() is None
    if in_main:
        saved = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        return [getitem(i) for i in indices]
    finally:
        if in_main:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.random.set_rng_state(saved[2])
