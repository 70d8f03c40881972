"""Build datasets and data loaders from config dicts."""

from __future__ import annotations

import logging
import os
import random
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from mlcls.datasets.bags import collate_bags
from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.class_balanced import ClassBalancedDataset
from mlcls.datasets.device_decode import collate_encoded
from mlcls.datasets.protocols import EpochOrder, Stream
from mlcls.datasets.samplers import SeededBatchSampler
from mlcls.errors import CheckpointError, ConfigError
from mlcls.registry import DATASETS, SAMPLERS
from mlcls.schema import check_section
from mlcls.utils.cores import usable_cores

logger = logging.getLogger("mlcls")


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; derive python/numpy from it so random
    # augmentations written with either library are reproducible too.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_dataset(cfg: dict, **defaults):
    return DATASETS.build(cfg, **defaults)


def _pin_memory(cfg: dict) -> bool:
    # page-locked batches let the copy to the GPU run asynchronously (non_blocking); null: when CUDA is there
    wanted = cfg.get("pin_memory")
    return torch.cuda.is_available() and (wanted is None or bool(wanted))


def auto_num_workers(device: torch.device) -> tuple[int, str]:
    """The DataLoader worker processes ``num_workers: auto`` starts for a loader feeding ``device``, and why.

    On a GPU the CPU cores are free to decode: one worker per core this process may use (its share of
    a ``--workers`` pool, shared among the local ranks of a torchrun job), one core kept for the training loop, at most 8.
    On the CPU the compute threads already use the cores, and a worker can only preempt them: an
    intra-op parallel region waits for its slowest thread, so each worker wake-up stalls the whole
    step, and each batch costs a shared-memory round trip as well. Images then load in the training
    process between steps (measured in docs/benchmarks.md), unless cores are left over.
    """
    cores = max(1, usable_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if device.type == "cpu":
        threads = torch.get_num_threads()
        free = cores - threads
        if free <= 0:
            return 0, f"the model runs on the CPU, whose {cores} core(s) its {threads} compute thread(s) use: images load between batches"
        return min(free, 8), f"the {free} of {cores} cores that the {threads} compute thread(s) leave free"
    return min(8, max(1, cores - 1)), f"{cores} core(s) for this process, one kept for the training loop"


def resolve_num_workers(value, device: torch.device | str | None = None) -> int:
    """``num_workers`` as configured, ``auto`` (the default) resolved by :func:`auto_num_workers` and logged."""
    if value != "auto":
        return int(value)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n, why = auto_num_workers(device)
    if (n, why) not in _SAID:  # once per process: every loader of every fold would say it again
        _SAID.add((n, why))
        logger.info("num_workers auto: %d (%s)", n, why)
    return n


_SAID: set = set()


class Loader(DataLoader):
    """A DataLoader with a transform for whole batches on the device (``batch_transform``), applied by
    the trainer and the evaluation after the copy: e.g. the normalisation of uint8 batches."""

    batch_transform: Callable | None = None


def build_dataloader(
    cfg: dict,
    seed: int = 0,
    dataset=None,
    shuffle: bool | None = None,
    seeded_batches: bool = False,
    batch_normalize: bool = False,
    device: torch.device | str | None = None,
) -> DataLoader:
    """A DataLoader from a ``*_dataloader`` config section.

    Keys: ``dataset`` (required unless ``dataset`` is passed), ``batch_size``, ``num_workers``
    (``auto``, the default: chosen for ``device`` by :func:`auto_num_workers`),
    ``sampler`` (default ``{type: DefaultSampler, shuffle: <shuffle>}``), ``pin_memory``,
    ``persistent_workers``, ``drop_last``, ``decode_on_device``.

    ``batch_normalize``: a pipeline's final ``ToFloatNormalize`` moves from each sample to the
    whole batch (:meth:`MultiLabelDataset.take_batch_normalize`): samples stay uint8 and the
    returned :class:`Loader`'s ``batch_transform`` normalises each batch where it is used.

    ``decode_on_device: true`` (JPEG datasets): workers only read the files; the ``batch_transform``
    (a :class:`~mlcls.datasets.device_decode.DeviceDecode`) decodes, augments and normalises each
    batch on the device it is moved to -- nvjpeg on a GPU.

    ``seeded_batches`` (training): batches come from a :class:`SeededBatchSampler`, so random
    augmentation is seeded per batch position (independent of ``num_workers``; exact mid-epoch
    resume). The loader's ``batch_size`` attribute is then ``None``, as for any batch sampler;
    read ``loader.batch_sampler.batch_size``.
    """
    cfg = dict(cfg)
    check_section(cfg, "train_dataloader", "dataloader")  # the same keys for every split
    if dataset is None:
        if "dataset" not in cfg:
            raise ConfigError("dataloader: missing 'dataset'")
        dataset = build_dataset(cfg["dataset"])
    if isinstance(dataset, IterableDataset):  # a stream (WebDatasetShards): it splits itself by rank and worker
        return _stream_loader(cfg, dataset, device)
    sampler_cfg = dict(cfg.get("sampler") or {"type": "DefaultSampler"})
    if shuffle is not None and sampler_cfg.get("type") == "DefaultSampler":
        sampler_cfg.setdefault("shuffle", shuffle)
    sampler = SAMPLERS.build(sampler_cfg, dataset=dataset, seed=seed)
    num_workers = resolve_num_workers(cfg.get("num_workers", "auto"), device)
    generator = torch.Generator()
    generator.manual_seed(seed)
    batch_size, drop_last = int(cfg.get("batch_size", 32)), bool(cfg.get("drop_last", False))
    if seeded_batches:
        batching = {"batch_sampler": SeededBatchSampler(sampler, batch_size, drop_last, seed)}
    else:
        batching = {"batch_size": batch_size, "sampler": sampler, "drop_last": drop_last}
    reader = dataset.dataset if isinstance(dataset, ClassBalancedDataset) else dataset  # repeats read through it
    collate = collate_bags if getattr(dataset, "bags", False) else None  # bags: packed, not padded
    if cfg.get("decode_on_device"):
        if not isinstance(reader, MultiLabelDataset):
            raise ConfigError(f"dataloader.decode_on_device: needs an mlcls image dataset, not {type(reader).__name__}")
        batch_transform, collate = reader.take_device_decode(), collate_encoded
    else:
        batch_transform = reader.take_batch_normalize() if batch_normalize and isinstance(reader, MultiLabelDataset) else None
    loader = Loader(
        dataset,
        **batching,
        num_workers=num_workers,
        pin_memory=_pin_memory(cfg),
        persistent_workers=bool(cfg.get("persistent_workers", False)) and num_workers > 0,
        worker_init_fn=_seed_worker,
        generator=generator,
        prefetch_factor=cfg.get("prefetch_factor") if num_workers > 0 else None,
        collate_fn=collate,
    )
    loader.batch_transform = batch_transform
    return loader


def _stream_loader(cfg: dict, dataset: IterableDataset, device) -> DataLoader:
    """The DataLoader of a stream of samples (:class:`Stream`), which takes no sampler."""
    if cfg.get("sampler"):
        raise ConfigError(f"dataloader: {type(dataset).__name__} is a stream and takes no sampler (repeats: its oversample_thr)")
    if cfg.get("decode_on_device"):
        raise ConfigError(
            f"dataloader.decode_on_device: {type(dataset).__name__} is a stream of decoded samples; it takes no decode_on_device"
        )
    num_workers = resolve_num_workers(cfg.get("num_workers", "auto"), device)
    batch_size = int(cfg.get("batch_size", 32))
    if isinstance(dataset, Stream):
        dataset.configure_loader(batch_size, num_workers)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=_pin_memory(cfg),
        persistent_workers=False,  # each epoch's plan is read when the workers start
        worker_init_fn=_seed_worker,
        prefetch_factor=cfg.get("prefetch_factor") if num_workers > 0 else None,
    )


def set_loader_epoch(loader: DataLoader, epoch: int, skip: int = 0) -> None:
    """Position ``loader`` at ``epoch`` with its first ``skip`` batches already done: the one entry by
    which the trainer starts an epoch, whatever kind of loader it has.

    A stream (:class:`~mlcls.datasets.protocols.EpochOrder` dataset) draws its own plan; a map-style
    dataset's :class:`SeededBatchSampler` skips exactly; any other sampler with ``set_epoch``
    (torch's ``DistributedSampler``) reshuffles but cannot skip.

    Raises:
        CheckpointError: ``skip > 0`` (a mid-epoch resume) with a loader that cannot skip.
    """
    dataset = loader.dataset
    if isinstance(dataset, IterableDataset):
        if isinstance(dataset, EpochOrder):
            dataset.set_epoch(epoch, skip=skip)
        elif skip:
            raise CheckpointError(f"mid-epoch resume: {type(dataset).__name__} is a stream that cannot skip batches")
        return
    if isinstance(loader.batch_sampler, SeededBatchSampler):
        loader.batch_sampler.set_epoch(epoch, skip=skip)
        return
    if skip:
        raise CheckpointError("mid-epoch resume needs the train loader's SeededBatchSampler (built by mlcls.apis)")
    if hasattr(loader.sampler, "set_epoch"):  # torch's DistributedSampler: set_epoch(epoch), no skip
        loader.sampler.set_epoch(epoch)
