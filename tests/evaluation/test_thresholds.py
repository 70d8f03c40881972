"""One threshold rule for test, inference, export and the report (mlcls.evaluation.thresholds)."""

import json

import pytest
import torch

from mlcls.errors import CheckpointError, ConfigError
from mlcls.evaluation.thresholds import resolve_thresholds, threshold_values

CLASSES = ["a", "b", "c"]
STORED = {"values": [0.1, 0.2, 0.3], "classes": ["c", "a", "b"], "objective": "f1", "split": "val"}


def test_threshold_values_accepts_every_form(tmp_path):
    classes = ["a", "b", "c"]
    record = {"values": [0.1, 0.2, 0.3], "classes": ["c", "a", "b"], "objective": "manual"}  # other order: matched by name
    assert threshold_values(record, classes) == [0.2, 0.3, 0.1]
    assert threshold_values({"b": 0.5, "a": 0.4, "c": 0.6}, classes) == [0.4, 0.5, 0.6]
    assert threshold_values(0.3, classes) == 0.3 and threshold_values([0.1, 0.2, 0.3], classes) == [0.1, 0.2, 0.3]
    (tmp_path / "t.json").write_text(json.dumps(record))
    assert threshold_values(str(tmp_path / "t.json"), classes) == [0.2, 0.3, 0.1]
    with pytest.raises(ConfigError, match=r"do not match the model's 3 classes \(unknown classes \['d'\]; no threshold for \['c'\]\)"):
        threshold_values({"a": 0.1, "b": 0.1, "d": 0.1}, classes)
    with pytest.raises(ConfigError, match="t2.json: cannot read it"):
        threshold_values(str(tmp_path / "t2.json"), classes)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        threshold_values(str(tmp_path / "bad.json"), classes)
    with pytest.raises(ConfigError, match=r"t3.json: expected a number in \[0, 1\]"):
        (tmp_path / "t3.json").write_text(json.dumps({"values": [0.1, 2, 0.1], "classes": classes}))
        threshold_values(str(tmp_path / "t3.json"), classes)


def test_precedence_given_then_checkpoint_then_evaluator_then_default(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"a": 0.7, "b": 0.8, "c": 0.9}))
    cases = [
        (dict(given=0.3, stored=STORED, evaluator={"thr": 0.4}), [0.3] * 3, "--thr 0.3"),
        (dict(given=[0.3, 0.2, 0.1], stored=STORED), [0.3, 0.2, 0.1], "--thr (per class)"),
        (dict(given=str(tmp_path / "t.json"), stored=STORED), [0.7, 0.8, 0.9], f"file {tmp_path / 't.json'}"),
        (dict(stored=STORED, evaluator={"thr": 0.4}), [0.2, 0.3, 0.1], "checkpoint (f1 on 'val')"),
        (dict(evaluator={"thr": 0.4}), [0.4] * 3, "config evaluator (thr 0.4)"),
        (dict(evaluator={"type": "MultiLabelMetric"}), [0.5] * 3, "default 0.5"),
        (dict(), [0.5] * 3, "default 0.5"),
    ]
    for kwargs, values, source in cases:
        got = resolve_thresholds(CLASSES, given_as="--thr", **kwargs)
        assert got.values.tolist() == values and got.source == source, kwargs  # exact: float64 keeps 0.3 as 0.3
        assert got.values.dtype == torch.float64
        assert (got.record is STORED) == (source.startswith("checkpoint"))
    assert resolve_thresholds(CLASSES, 0.3).uniform == 0.3 and resolve_thresholds(CLASSES, [0.3, 0.2, 0.1]).uniform is None


def test_a_stored_record_that_does_not_fit_is_an_error_not_a_silent_default():
    # a checkpoint whose record lacks a class (e.g. edited, or from another class list) used to fall back to 0.5
    stale = {"values": [0.1, 0.2], "classes": ["a", "b"], "objective": "f1", "split": "val"}
    with pytest.raises(CheckpointError, match=r"run/best.pth: stored thresholds: the thresholds do not match .*no threshold for \['c'\]"):
        resolve_thresholds(CLASSES, stored=stale, checkpoint="run/best.pth")
    with pytest.raises(CheckpointError, match=r"2 thresholds given for 3 classes"):
        resolve_thresholds(CLASSES, stored={"values": [0.1, 0.2]})
    with pytest.raises(ConfigError, match=r"evaluator thr: expected a number in \[0, 1\]"):
        resolve_thresholds(CLASSES, evaluator={"thr": 1.5})
