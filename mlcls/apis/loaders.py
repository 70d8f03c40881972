"""Data loaders by purpose: training as configured, evaluation with every sample once and in order."""

from __future__ import annotations

from torch.utils.data import IterableDataset

from mlcls.apis.config import resolve_device
from mlcls.datasets import IndexedDataset, build_dataloader, build_dataset
from mlcls.datasets.class_balanced import unwrapped_dataset_cfg
from mlcls.datasets.protocols import LabelledDataset
from mlcls.errors import BuildError, ConfigError
from mlcls.schema import get, require


def test_pipeline_cfg(cfg: dict) -> list[dict]:
    """The pipeline inference applies: the test split's, else the validation split's."""
    for split in ("test", "val"):
        section = cfg.get(f"{split}_dataloader") or {}
        dataset = section.get("dataset") or {}
        if "pipeline" in dataset:
            return list(dataset["pipeline"])
    raise ConfigError("config: no test_dataloader.dataset.pipeline or val_dataloader.dataset.pipeline to preprocess images with")


def build_loader(cfg: dict, split: str, purpose: str, seed: int):
    """The ``{split}_dataloader`` section as a DataLoader for a purpose (``None`` without the section).

    Args:
        purpose: ``train``: the section as configured (its sampler, shuffling, per-batch seeded
            augmentation). ``eval``: every image exactly once, in dataset order (a sequential
            :class:`DefaultSampler`, each rank its share), each sample carrying its dataset index
            so scores are attributed to their images whatever the split; a training split is
            read without ``ClassBalancedDataset`` repeats and with the test pipeline, the
            preprocessing inference applies.
    """
    if purpose not in ("train", "eval"):
        raise ValueError(f"purpose must be 'train' or 'eval', got '{purpose}'")
    section = cfg.get(f"{split}_dataloader")
    if not section:
        return None
    try:
        return _build_loader(cfg, section, split, purpose, seed)
    except BuildError as e:  # a typo in the dataset/sampler/pipeline: say which section it is in
        raise BuildError(f"{split}_dataloader: {e}") from None


def _build_loader(cfg: dict, section: dict, split: str, purpose: str, seed: int):
    device = resolve_device(get(cfg, "device"))  # what num_workers: auto is chosen for
    if purpose == "train":
        return build_dataloader(section, seed=seed, shuffle=True, seeded_batches=True, batch_normalize=True, device=device)
    section = {k: v for k, v in section.items() if k not in ("sampler", "drop_last")}
    dataset_cfg = unwrapped_dataset_cfg(require(section, "dataset", f"{split}_dataloader"))
    if split == "train":
        dataset_cfg["pipeline"] = test_pipeline_cfg(cfg)
    section["dataset"] = dataset_cfg
    section["sampler"] = {"type": "DefaultSampler", "shuffle": False}
    dataset = build_dataset(dataset_cfg)
    if isinstance(dataset, IterableDataset):  # a shard stream deals its shards to the ranks itself
        section.pop("sampler")
    if isinstance(dataset, LabelledDataset):
        dataset.return_index = True
        dataset.training = False  # long bags: evenly spaced instances, not a random subset
    else:
        dataset = IndexedDataset(dataset)
    return build_dataloader(section, seed=seed, dataset=dataset, batch_normalize=True, device=device)
