"""A wrong value in the config is one line naming the key, the value and what is allowed, before any work."""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import one_line_error


@pytest.mark.parametrize(
    "option, needles",
    [
        ("optimizer.lr=abc", ["optimizer.lr must be a positive number", "'abc'"]),
        ("train_dataloader.batch_size=eight", ["train_dataloader.batch_size must be an integer >= 1", "'eight'"]),
        ("train_cfg.max_epochs=0", ["train_cfg.max_epochs must be an integer >= 1", "got 0"]),
        ("train_dataloader.batch_size=0", ["train_dataloader.batch_size must be an integer >= 1"]),
        ("train_dataloader.num_workers=-1", ["train_dataloader.num_workers must be an integer >= 0"]),
        ("optimizer.lr=[1,2]", ["optimizer.lr must be a positive number", "[1, 2]"]),
        ("val_evaluator.thr=2", ["val_evaluator.thr must be a number in [0, 1]"]),
    ],
)
def test_bad_values_are_one_line_before_any_work(option, needles, config_file, tmp_path, run_tool):
    r = run_tool("tools/train.py", config_file, "--work-dir", tmp_path / "wd", "--cfg-options", option)
    one_line_error(r, *needles)
    assert not (tmp_path / "wd").exists()  # nothing was started


@pytest.mark.parametrize(
    "hook_option", ["default_hooks.checkpoint.save_best=mAPP", "+custom_hooks=[{type: EarlyStoppingHook, monitor: CF2}]"]
)
def test_a_misspelled_metric_stops_before_the_first_step(hook_option, config_file, tmp_path, run_tool):
    r = run_tool("tools/train.py", config_file, "--work-dir", tmp_path / "wd", "--cfg-options", hook_option)
    name = "mAPP" if "mAPP" in hook_option else "CF2"
    msg = one_line_error(r, f"'{name}' is not a validation metric", "did you mean")
    assert "mAP" in msg
    log = tmp_path / "wd" / "scalars.jsonl"
    assert not log.exists() or not [r for r in map(json.loads, log.read_text().splitlines()) if r["mode"] == "train"]
    assert not list((tmp_path / "wd").glob("*.pth"))
