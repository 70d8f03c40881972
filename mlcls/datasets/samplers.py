"""Samplers: seeded epoch shuffling that also shards across DDP ranks."""

from __future__ import annotations

from torch.utils.data import Dataset, DistributedSampler

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
