"""Data loaders by purpose: training as configured, evaluation with every sample once and in order."""

from __future__ import annotations

import hashlib
import os

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


#: dataset keys that change how samples are read or shown, not which samples they are
_NOT_WHICH_SAMPLES = {"type", "pipeline", "check_files", "cache", "on_bad_image", "collect_errors", "max_instances", "views",
                      "classes", "allow_outside_root", "holdout", "label_fixes"}  # fmt: skip
#: dataset keys that name files or folders (compared as absolute paths; relative ones are relative to data_root)
_PATH_KEYS = {"ann_file", "class_descriptions", "trainable_classes", "image_folder"}


#: annotation files up to this size are compared by content (a copy of val.csv reads the same samples)
_HASH_LIMIT = 64 << 20


def _real(path: str) -> str:
    """``path`` with every symbolic link resolved: two names of one file compare equal."""
    return os.path.realpath(path)


def _content_of(path: str) -> str:
    """What an annotation file stands for: its content's hash (a byte-identical copy is the same
    list of samples), or its real path where it cannot be read cheaply."""
    try:
        if os.path.isfile(path) and os.path.getsize(path) <= _HASH_LIMIT:
            with open(path, "rb") as f:
                return "sha256:" + hashlib.sha256(f.read()).hexdigest()
    except OSError:
        pass
    return _real(path)


def _what_is_read(ds_cfg: dict) -> tuple[dict, dict | None, dict]:
    """(the dataset config reduced to which samples it reads, with paths resolved through symbolic
    links and annotation files by content; its hold-out; the same with the files' real paths, to show)."""
    ds = unwrapped_dataset_cfg(ds_cfg)
    root = _real(str(ds.get("data_root", "") or "."))
    which = {"data_root": root}
    for key, value in ds.items():
        if key in _NOT_WHICH_SAMPLES or key == "data_root":
            continue
        if key in _PATH_KEYS and isinstance(value, str) and value:
            value = _real(value if os.path.isabs(value) else os.path.join(root, value))
        which[key] = value
    which.setdefault("split", None)
    shown = dict(which)
    if isinstance(which.get("ann_file"), str):
        which["ann_file"] = _content_of(which["ann_file"])
    return which, ds.get("holdout"), shown


def shared_samples(cfg: dict, split_a: str, split_b: str) -> str | None:
    """Why the ``{split_a}_dataloader`` and ``{split_b}_dataloader`` of ``cfg`` read the same samples
    (or some of them), or None when they read different ones.

    What is compared is what is read: the data root and annotation files with symbolic links
    resolved (annotation files by content: a copy of ``val.csv`` is the same list), the reader's
    split and its hold-out part, not the sections' names. Two hold-out parts of one source
    (same fraction and seed, parts ``train`` and ``val``) are disjoint; any other pair of the
    same source shares samples.
    """
    sections = [(cfg.get(f"{s}_dataloader") or {}).get("dataset") for s in (split_a, split_b)]
    if not all(isinstance(d, dict) for d in sections):
        return None
    (which_a, hold_a, shown), (which_b, hold_b, _) = (_what_is_read(d) for d in sections)
    if which_a != which_b:
        return None
    if isinstance(hold_a, dict) and isinstance(hold_b, dict):
        same_cut = all(hold_a.get(k, d) == hold_b.get(k, d) for k, d in (("fraction", 0.15), ("seed", 0)))
        if same_cut and hold_a.get("part") != hold_b.get("part"):
            return None
    where = ", ".join(f"{k}={v}" for k, v in shown.items() if v is not None)
    held = lambda h: f" (hold-out part {h.get('part')})" if isinstance(h, dict) else ""  # noqa: E731
    return f"{split_a}_dataloader{held(hold_a)} and {split_b}_dataloader{held(hold_b)} read the same samples ({where})"
