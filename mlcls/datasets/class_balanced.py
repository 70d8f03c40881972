"""mmcls's ClassBalancedDataset wrapper (deterministic repeats), so mmcls configs port over."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from mlcls.datasets.samplers import fetch_seeded, repeat_factors
from mlcls.registry import DATASETS

WRAPPERS = ("ClassBalancedDataset",)


def unwrapped_dataset_cfg(cfg: dict) -> dict:
    """The config of the dataset that wrapper configs (``ClassBalancedDataset``) wrap: each image
    once, as evaluation, checking and sharding read it. The one place wrappers are unwrapped."""
    cfg = dict(cfg)
    while cfg.get("type") in WRAPPERS and isinstance(cfg.get("dataset"), dict):
        cfg = dict(cfg["dataset"])
    return cfg


@DATASETS.register_module()
class ClassBalancedDataset(Dataset):
    """Repeats each image ``ceil(r)`` times, ``r`` being its LVIS repeat factor (mmcls semantics).

    Unlike :class:`RepeatFactorSampler` the repeats are fixed (no stochastic rounding), exactly as
    in mmcls/mmpretrain. Args: ``dataset`` (a config or a dataset) and ``oversample_thr``.
    """

    def __init__(self, dataset, oversample_thr: float) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.oversample_thr = oversample_thr
        factors = repeat_factors(self.dataset, oversample_thr)
        self.repeat_indices = np.repeat(np.arange(len(factors)), np.ceil(factors - 1e-12).astype(np.int64))
        self.classes = self.dataset.classes

    def __len__(self) -> int:
        return len(self.repeat_indices)

    def __getitem__(self, idx: int):
        return self.dataset[int(self.repeat_indices[idx])]

    # every index-taking accessor speaks this wrapper's index space, like __getitem__
    def image_path(self, idx: int) -> str:
        return self.dataset.image_path(int(self.repeat_indices[idx]))

    def get_target(self, idx: int):
        return self.dataset.get_target(int(self.repeat_indices[idx]))

    def source(self, idx: int) -> str:
        return self.dataset.source(int(self.repeat_indices[idx]))

    def read_image(self, idx: int):
        return self.dataset.read_image(int(self.repeat_indices[idx]))

    def __getitems__(self, indices) -> list:
        return fetch_seeded(self.__getitem__, indices)

    def __getattr__(self, name):  # class list, label statistics, ... of the wrapped dataset
        if name in ("dataset", "repeat_indices"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


__all__ = ["ClassBalancedDataset"]
