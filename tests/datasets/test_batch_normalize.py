"""uint8 samples with the normalisation done once per batch: the same numbers as per sample."""

from __future__ import annotations

import torch

from mlcls.datasets import build_dataloader
from tests.conftest import tiny_config


def test_batches_travel_as_uint8_and_normalise_to_the_same_floats(shapes_root, tmp_path):
    section = tiny_config(shapes_root, tmp_path)["train_dataloader"]
    pipeline = [{"type": "RandomHorizontalFlip"}, {"type": "RandomVerticalFlip"}, *section["dataset"]["pipeline"]]
    section = {**section, "num_workers": 2, "dataset": {**section["dataset"], "pipeline": pipeline}}
    per_sample = build_dataloader(section, seed=3, seeded_batches=True)
    per_batch = build_dataloader(section, seed=3, seeded_batches=True, batch_normalize=True)
    assert getattr(per_sample, "batch_transform", None) is None and per_batch.batch_transform is not None
    for (a, ya), (b, yb) in zip(per_sample, per_batch):
        assert a.dtype == torch.float32 and b.dtype == torch.uint8  # a quarter of the bytes between processes
        assert torch.equal(per_batch.batch_transform(b), a) and torch.equal(ya, yb)  # bit for bit, augmentations included


def test_a_pipeline_without_a_final_normalisation_is_left_alone(shapes_root, tmp_path):
    section = tiny_config(shapes_root, tmp_path)["train_dataloader"]
    section["dataset"] = {**section["dataset"], "pipeline": [{"type": "ToDtype", "dtype": "float32", "scale": True}]}
    loader = build_dataloader(section, seed=0, batch_normalize=True)
    assert loader.batch_transform is None and next(iter(loader))[0].dtype == torch.float32
