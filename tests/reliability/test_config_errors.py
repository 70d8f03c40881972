"""A wrong value in the config is one line naming the key, the value and what is allowed, before any work."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.reliability.conftest import one_line_error

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600)


def expect_error(r, pattern):
    one_line_error(r, pattern)


@pytest.mark.parametrize(
    "option, needles",
    [
        ("optimizer.lr=abc", ["optimizer.lr must be a positive number", "'abc'"]),
        ("train_dataloader.batch_size=eight", ["train_dataloader.batch_size must be an integer >= 1", "'eight'"]),
        ("train_cfg.max_epochs=0", ["train_cfg.max_epochs must be an integer >= 1", "got 0"]),
        ("train_dataloader.batch_size=0", ["train_dataloader.batch_size must be an integer >= 1"]),
        ("train_dataloader.num_workers=-1", ["train_dataloader.num_workers must be 'auto' or an integer >= 0"]),
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


def test_bad_inputs_give_one_clear_error(config_file, tmp_path, shapes_root, run_tool):
    # the probes that already behaved: two in real processes (exit status and stderr as a shell sees them), the rest in-process
    expect_error(run("tools/train.py", tmp_path / "nope.yaml"), "config file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {type: ImageClassifier\nseed: 1\n")
    expect_error(run("tools/train.py", bad), "bad.yaml:")

    here = run_tool

    expect_error(here("tools/train.py", config_file, "--cfg-options", "optimizer.lrr=1"), "did you mean 'lr'")
    expect_error(here("tools/train.py", config_file, "--cfg-options", "model.backbone.type=ResNett"), "unknown model type 'ResNett'")
    expect_error(
        here("tools/train.py", config_file, "--cfg-options", "model.head.type=MultiLabelLinearClsHaed"),
        "did you mean 'MultiLabelLinearClsHead'",
    )
    ann = tmp_path / "bad.csv"
    ann.write_text("filename,labels\nimages/train/00000.png,circle\nimages/train/00001.png,circel\n")
    expect_error(
        here("tools/train.py", config_file, "--cfg-options", f"train_dataloader.dataset.ann_file={ann}"),
        "bad.csv:3: unknown class 'circel'",
    )
    ann.write_text("filename,labels\nimages/train/nothere.png,circle\n")
    expect_error(here("tools/train.py", config_file, "--cfg-options", f"train_dataloader.dataset.ann_file={ann}"), "nothere.png")
    ann.write_text("file,label\nimages/train/00000.png,circle\n")
    expect_error(
        here("tools/train.py", config_file, "--cfg-options", f"train_dataloader.dataset.ann_file={ann}"),
        "expected the header 'filename,labels'",
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    expect_error(here("tools/train.py", config_file, "--cfg-options", f"train_dataloader.dataset.classes={empty}"), "class list is empty")
    typo = tmp_path / "typo.yaml"
    typo.write_text(textwrap.dedent(f"_base_: {config_file.name}\noptimiser: {{type: SGD, lr: 0.1}}\n"))
    expect_error(here("tools/train.py", typo), "unknown top-level key 'optimiser'; did you mean 'optimizer'")
    not_ckpt = tmp_path / "x.pth"
    not_ckpt.write_bytes(b"garbage")
    expect_error(here("tools/test.py", config_file, not_ckpt), "cannot load checkpoint")
