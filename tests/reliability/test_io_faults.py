"""Kills, signals and unwritable folders: one line, a distinct exit status, nothing half-written, nothing lost."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.reliability.conftest import one_line_error

ROOT = Path(__file__).resolve().parents[2]


def test_stale_temporaries_of_killed_writers_are_swept_and_live_ones_kept(tmp_path):
    from mlcls.utils.fileio import sweep_stale_temporaries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".latest.{dead.pid}-a1b2c3.tmp.pth"
    live = tmp_path / f".latest.{os.getppid()}-a1b2c3.tmp.pth"  # a live process's write in progress
    other = tmp_path / ".hidden.tmp.pth"  # not a name atomic_path makes
    for p in (stale, live, other):
        p.write_bytes(b"x" * 100)
    assert sweep_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted (Ctrl-C)")])
def test_a_signal_during_training_exits_with_one_line_and_no_temporary_files(sig, code, word, config_file, tmp_path):
    wd = tmp_path / "wd"
    cmd = [sys.executable, "tools/train.py", config_file, "--work-dir", wd, "--cfg-options", "train_cfg.max_epochs=50"]
    # a job started in the background by a non-interactive shell inherits SIGINT ignored, and Python
    # then leaves it ignored: the training gets SIGINT at its default, as from a terminal
    proc = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.time() + 240
    while not (wd / "epoch_1.pth").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (wd / "epoch_1.pth").exists(), proc.communicate()[1] if proc.poll() is not None else "timeout"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"{word}: files being written were discarded; finished checkpoints are intact" in err and "Traceback" not in err
    assert not [p for p in wd.iterdir() if ".tmp" in p.name]
    assert torch.load(wd / "latest.pth", weights_only=True)["meta"]["epoch"] >= 1  # the last finished checkpoint loads


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_previous_file(trained_ckpt, tmp_path, monkeypatch):
    import torch as t

    from mlcls.errors import WriteError
    from mlcls.utils.checkpoint import load_checkpoint, save_checkpoint

    target = tmp_path / "latest.pth"
    shutil.copyfile(trained_ckpt, target)

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(t, "save", full)
    try:
        save_checkpoint({"meta": {}}, target)
        raise AssertionError("no error")
    except WriteError as e:
        assert str(e) == f"could not write {target}: No space left on device (the previous latest.pth is intact; no partial file was left)"
        assert e.exit_code == 3
    monkeypatch.undo()
    assert load_checkpoint(target)["meta"]["epoch"] == 1 and [p.name for p in tmp_path.iterdir()] == ["latest.pth"]


def test_test_tool_checks_its_output_folder_before_evaluating(trained_ckpt, tmp_path, run_tool):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    r = run_tool("tools/test.py", trained_ckpt, "--work-dir", blocker / "out")
    one_line_error(r, "cannot write the results to", str(blocker / "out"), "--work-dir")


def test_test_tool_prints_its_report_before_writing(trained_ckpt, tmp_path, monkeypatch, run_tool):
    import mlcls.apis.test as api

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(api, "write_json", full_disk)
    r = run_tool("tools/test.py", trained_ckpt, "--work-dir", tmp_path / "t")
    one_line_error(r, "input/output failure", "No space left on device", code=3)
    assert "mAP" in r.stdout and "class" in r.stdout  # the numbers reached the user before the write failed


def test_testing_a_copied_checkpoint_never_writes_into_the_original_run(trained_ckpt, tmp_path, run_tool):
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    shutil.copyfile(trained_ckpt, copy_dir / "latest.pth")
    before = sorted(p.name for p in trained_ckpt.parent.iterdir())
    r = run_tool("tools/test.py", copy_dir / "latest.pth")
    assert r.returncode == 0, r.stderr
    assert (copy_dir / "test_latest" / "test_metrics.json").is_file()
    assert sorted(p.name for p in trained_ckpt.parent.iterdir()) == before  # the original run is untouched


def test_unsafe_pickles_are_refused_by_every_tool_naming_the_object(trained_ckpt, tmp_path, run_tool):
    evil = tmp_path / "evil.pth"
    evil.write_bytes(
        b"\x80\x02cposix\nsystem\nq\x00X\x0b\x00\x00\x00touch pwnedq\x01\x85q\x02Rq\x03."  # os.system('touch pwned') as a pickle
    )
    torch_file = tmp_path / "evil_zip.pth"

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    torch.save({"format": "mlcls-checkpoint-v1", "x": Evil()}, torch_file)
    for args in (
        ("tools/test.py", torch_file),
        ("tools/infer.py", torch_file, trained_ckpt),
        ("tools/export.py", torch_file),
        ("tools/train.py", "--help"),
    ):
        if args[0] == "tools/train.py":
            continue
        r = run_tool(*args)
        one_line_error(r, "refusing to load", "'posix.system'", "could run arbitrary code")
        assert "weights_only" not in r.stderr  # no advice to switch the protection off
    from mlcls.errors import CheckpointError
    from mlcls.registry import MODELS

    try:
        MODELS.build({"type": "ResNet", "depth": 18, "pretrained": str(torch_file)})
        raise AssertionError("loaded an unsafe file")
    except CheckpointError as e:
        assert "posix.system" in str(e)
    assert not (ROOT / "pwned").exists() and not Path("pwned").exists()


def test_disk_full_during_training_on_a_real_small_filesystem(config_file, trained_ckpt, tmp_path):
    """A tmpfs with room for one checkpoint: the second write fails for real (ENOSPC)."""
    mount = tmp_path / "small"
    mount.mkdir()
    size_mb = int(trained_ckpt.stat().st_size * 1.5 / 2**20) + 1
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here to fill ({r.stderr.strip() or 'mount failed'}); the monkeypatched disk-full tests cover the code path"
        )
    try:
        wd = mount / "wd"
        cmd = [sys.executable, "tools/train.py", config_file, "--work-dir", wd, "--cfg-options", "train_cfg.max_epochs=3",
               "+default_hooks.logger.tensorboard=false"]  # fmt: skip
        p = subprocess.run(list(map(str, cmd)), cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert p.returncode == 3, p.stderr[-3000:]
        one_line_error(p, "could not write", "epoch_2.pth", "No space left on device", code=3)
        assert torch.load(wd / "latest.pth", weights_only=True)["meta"]["epoch"] == 1  # the previous checkpoint survives
        assert not [q for q in wd.iterdir() if ".tmp" in q.name]  # no partial file left
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_an_unwritable_work_dir_is_one_line(config_file, tmp_path, run_tool):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    r = run_tool("tools/train.py", config_file, "--work-dir", blocker / "wd")
    one_line_error(r, "input/output failure", str(blocker / "wd"), "Not a directory", code=3)


def test_the_next_start_sweeps_what_a_killed_checkpoint_write_left(config_file, tmp_path, run_tool):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    wd = tmp_path / "wd"
    wd.mkdir()
    leftover = wd / f".latest.{dead.pid}-0a1b2c.tmp.pth"  # as SIGKILL during a checkpoint write leaves it
    leftover.write_bytes(b"\0" * 4096)
    r = run_tool("tools/train.py", config_file, "--work-dir", wd)
    assert r.returncode == 0, r.stderr
    assert not leftover.exists() and "removed 1 temporary file(s)" in r.stdout
