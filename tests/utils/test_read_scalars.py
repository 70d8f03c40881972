"""The one reader of scalars.jsonl: tools get one line naming a bad line, the report and resume skip a line cut by a crash."""

from __future__ import annotations

import json

import pytest

from mlcls.errors import DataError
from mlcls.utils.misc import read_scalars


def test_strict_and_lenient_reading(tmp_path):
    good = [{"mode": "train", "iter": 1, "loss": 0.5}, {"mode": "val", "epoch": 1, "mAP": 50.0}]
    (tmp_path / "scalars.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good) + '{"mode": "train", "it')
    assert read_scalars(tmp_path) == [*good, None]  # the folder or the file
    with pytest.raises(DataError, match=r"scalars\.jsonl:3: not a JSON line"):
        read_scalars(tmp_path / "scalars.jsonl", strict=True)
    with pytest.raises(DataError, match="not found"):
        read_scalars(tmp_path / "nope")


def test_resume_drops_late_and_cut_records(tmp_path):
    from mlcls.engine.hooks import drop_records_after

    lines = [{"mode": "train", "iter": i, "loss": 1.0 / i} for i in range(1, 6)]
    path = tmp_path / "scalars.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"iter": 9, "lo')
    assert drop_records_after(path, 3) == 3
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in lines[:3])


def test_wrapper_configs_are_unwrapped_in_one_place():
    from mlcls.datasets.class_balanced import unwrapped_dataset_cfg

    inner = {"type": "CSVDataset", "ann_file": "a.csv"}
    cfg = {
        "type": "ClassBalancedDataset",
        "oversample_thr": 0.1,
        "dataset": {"type": "ClassBalancedDataset", "oversample_thr": 0.2, "dataset": inner},
    }
    assert unwrapped_dataset_cfg(cfg) == inner and unwrapped_dataset_cfg(inner) == inner
    assert unwrapped_dataset_cfg(cfg) is not inner  # a copy: callers may change it
