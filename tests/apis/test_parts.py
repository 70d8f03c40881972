"""Many trainings of one command at once: the parts of --folds / --seeds over worker processes, or as
separate jobs merged, give the files of the run in one process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from mlcls.report.store import load_eval_scores
from mlcls.utils.cores import worker_env

ROOT = Path(__file__).resolve().parents[2]
ONE_EPOCH = ["--cfg-options", "train_cfg.max_epochs=1"]


def _times(log: Path) -> tuple[str, str]:
    stamps = re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", log.read_text(), flags=re.M)
    return stamps[0], stamps[-1]


def test_folds_over_two_workers_and_as_separate_jobs_equal_the_run_in_one_process(config_file, tmp_path, run_tool, monkeypatch):
    # the run in one process, with the threads each of two workers gets: the same float operations
    share = worker_env(2, 0)["OMP_NUM_THREADS"]
    monkeypatch.setenv("OMP_NUM_THREADS", share)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(share))
    try:
        r = run_tool("tools/train.py", config_file, "--folds", "2", "--work-dir", tmp_path / "one", *ONE_EPOCH)
        assert r.returncode == 0, r.stderr

        wd = tmp_path / "two"
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}  # the pool sets them
        p = subprocess.run([sys.executable, "tools/train.py", str(config_file), "--folds", "2", "--workers", "2", "--work-dir", str(wd),
                            *ONE_EPOCH], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        assert f"2 processes, 2 at a time ({share} compute thread(s) each)" in p.stdout + p.stderr
        logs = [wd / "parts" / f"part_{i}.log" for i in (0, 1)]
        assert "fold 1 of 2: training" in logs[0].read_text() and "fold 2 of 2: training" in logs[1].read_text()
        (start0, end0), (start1, end1) = _times(logs[0]), _times(logs[1])
        assert start1 <= end0 and start0 <= end1, "the two parts did not run side by side"

        one, two = load_eval_scores(tmp_path / "one" / "oof_scores.npz"), load_eval_scores(wd / "oof_scores.npz")
        assert (tmp_path / "one" / "folds.csv").read_bytes() == (wd / "folds.csv").read_bytes()
        assert one.paths == two.paths and torch.equal(one.targets, two.targets)
        assert torch.equal(one.scores, two.scores)  # same threads, same operations: bit-identical
        assert json.loads((tmp_path / "one" / "folds_summary.json").read_text()) == json.loads((wd / "folds_summary.json").read_text())

        # a scheduler's job array: each part alone, then the merge, which checks before it gathers
        arr = tmp_path / "array"
        shutil.copytree(wd, arr)
        shutil.rmtree(arr / "fold_0")
        (arr / "oof_scores.npz").unlink()
        r = run_tool("tools/train.py", config_file, "--folds", "2", "--merge", "--work-dir", arr, *ONE_EPOCH)
        assert r.returncode == 2 and "1 of 2 folds" in r.stderr and "fold 0; run their parts first" in r.stderr
        assert not (arr / "oof_scores.npz").exists()
        r = run_tool(
            "tools/train.py", config_file, "--folds", "2", "--part", "0", "--work-dir", arr, "--cfg-options", "train_cfg.max_epochs=2"
        )
        assert r.returncode == 2 and "started with another config" in r.stderr and not (arr / "fold_0").exists()
        r = run_tool("tools/train.py", config_file, "--folds", "2", "--part", "2", "--work-dir", arr, *ONE_EPOCH)
        assert r.returncode == 2 and "--part: expected 0 to 1 (this command has 2 parts), got 2" in r.stderr
        kept = (arr / "fold_1" / "heldout_scores.npz").stat().st_mtime_ns
        r = run_tool("tools/train.py", config_file, "--folds", "2", "--part", "1", "--work-dir", arr, *ONE_EPOCH)
        assert r.returncode == 0 and (arr / "fold_1" / "heldout_scores.npz").stat().st_mtime_ns == kept  # a requeued job keeps it
        r = run_tool("tools/train.py", config_file, "--folds", "2", "--part", "0", "--work-dir", arr, *ONE_EPOCH)
        assert r.returncode == 0, r.stderr
        r = run_tool("tools/train.py", config_file, "--folds", "2", "--merge", "--work-dir", arr, *ONE_EPOCH)
        assert r.returncode == 0, r.stderr
        assert torch.equal(load_eval_scores(arr / "oof_scores.npz").scores, one.scores)
    finally:
        torch.set_num_threads(threads)


def test_seeds_as_separate_jobs_merge_into_the_summary_of_one_process(config_file, tmp_path, run_tool):
    r = run_tool("tools/train.py", config_file, "--seeds", "0", "1", "--work-dir", tmp_path / "one", *ONE_EPOCH)
    assert r.returncode == 0, r.stderr
    wd = tmp_path / "parts"
    (wd).mkdir()
    shutil.copytree(tmp_path / "one" / "seed_1", wd / "seed_1")  # part 1 ran as a job of its own
    kept = (wd / "seed_1" / "latest.pth").stat().st_mtime_ns
    r = run_tool("tools/train.py", config_file, "--seeds", "0", "1", "--part", "1", "--work-dir", wd, *ONE_EPOCH)
    assert r.returncode == 0 and (wd / "seed_1" / "latest.pth").stat().st_mtime_ns == kept  # a requeued job keeps it
    r = run_tool("tools/train.py", config_file, "--seeds", "0", "1", "--merge", "--work-dir", wd, *ONE_EPOCH)
    assert r.returncode == 2 and "1 of 2 seeds" in r.stderr and "seed 0; run their parts first" in r.stderr
    r = run_tool("tools/train.py", config_file, "--seeds", "0", "1", "--part", "0", "--work-dir", wd, *ONE_EPOCH)
    assert r.returncode == 0 and "part 0 (seed 0) is finished" in r.stdout
    r = run_tool("tools/train.py", config_file, "--seeds", "0", "1", "--merge", "--work-dir", wd, "--cfg-options", "train_cfg.max_epochs=2")
    assert r.returncode == 2 and "was trained with another config" in r.stderr and not (wd / "seeds_summary.json").exists()
    r = run_tool("tools/train.py", config_file, "--seeds", "0", "1", "--merge", "--work-dir", wd, *ONE_EPOCH)
    assert r.returncode == 0, r.stderr
    assert json.loads((wd / "seeds_summary.json").read_text()) == json.loads((tmp_path / "one" / "seeds_summary.json").read_text())


def test_each_worker_gets_one_gpu_and_a_failed_part_is_named_with_its_last_line(tmp_path, monkeypatch):
    """The pool's own code path on a machine with 2 GPUs (CUDA reported by monkeypatching; the
    commands only print what they were given, so no GPU is needed here)."""
    from mlcls.apis.parts import run_workers
    from mlcls.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    show = "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['OMP_NUM_THREADS'])"
    run_workers([[sys.executable, "-c", show]] * 2, 2, tmp_path / "logs", ["a", "b"])
    seen = sorted((tmp_path / "logs" / f"part_{i}.log").read_text().split()[0] for i in (0, 1))
    assert seen == ["0", "1"]  # one GPU each, never both on one
    fail = [sys.executable, "-c", "import sys; print('error: the thing that went wrong'); sys.exit(2)"]
    try:
        run_workers([[sys.executable, "-c", "pass"], fail], 2, tmp_path / "logs2", ["fine", "broken"])
    except ConfigError as e:
        message = str(e)
    else:
        raise AssertionError("a failed part was not reported")
    assert message.startswith("1 of 2 failed: broken: error: the thing that went wrong (log: ") and "part_1.log" in message
