"""One damaged file never costs the run: --resume falls back to the newest loadable checkpoint, and
best.pth is a file of its own whenever the best epoch is not the latest."""

from __future__ import annotations

import torch

from mlcls.utils.checkpoint import load_checkpoint
from tests.conftest import tiny_config


def damage(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\0" * 4096  # bit rot in the middle of the file
    path.write_bytes(bytes(data))  # in place: every hard link to it is damaged too


def test_resume_skips_a_damaged_latest_and_best_survives(shapes_root, tmp_path, run_tool):
    import yaml

    cfg = tiny_config(shapes_root, tmp_path / "unused", max_epochs=2)
    # a monitored value that never improves after epoch 1: best.pth stays epoch 1 while latest moves on
    cfg["default_hooks"]["checkpoint"].update({"save_best": "num_samples", "interval": 1})
    del cfg["work_dir"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    wd = tmp_path / "wd"
    assert run_tool("tools/train.py", tmp_path / "c.yaml", "--work-dir", wd).returncode == 0
    assert (wd / "best.pth").stat().st_ino == (wd / "epoch_1.pth").stat().st_ino != (wd / "latest.pth").stat().st_ino

    damage(wd / "latest.pth")  # also epoch_2.pth: the same file
    assert load_checkpoint(wd / "best.pth")["meta"]["epoch"] == 1  # the best survives a damaged latest

    r = run_tool("tools/train.py", tmp_path / "c.yaml", "--work-dir", wd, "--resume", "--cfg-options", "train_cfg.max_epochs=3")
    assert r.returncode == 0, r.stderr
    assert "--resume: latest.pth is damaged" in r.stdout and "epoch_1.pth" in r.stdout
    assert torch.load(wd / "latest.pth", weights_only=True)["meta"]["epoch"] == 3
    assert "resumed from" in (wd / "train.log").read_text() and "epoch_1.pth at epoch 1" in (wd / "train.log").read_text()
