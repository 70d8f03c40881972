"""tools/train.py as users run it: killed with SIGKILL and resumed; two gloo processes under torchrun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from mlcls.report.store import load_eval_scores
from tests.conftest import assert_metrics_match_sklearn, tiny_config

ROOT = Path(__file__).resolve().parents[2]

KILLER = textwrap.dedent('''
    import os, signal
    from mlcls.engine import Hook
    from mlcls.registry import HOOKS

    @HOOKS.register_module()
    class KillAt(Hook):
        """SIGKILLs its own process in the middle of epoch `epoch`, after iteration `it` of it."""
        def __init__(self, epoch, it):
            self.epoch, self.it = epoch, it
        def after_step(self, trainer, outputs):
            if trainer.epoch + 1 == self.epoch and (trainer.iter - 1) % trainer.iters_per_epoch + 1 == self.it:
                os.kill(os.getpid(), signal.SIGKILL)
''')


def run(args, env_extra=None, timeout=600):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def val_records(work_dir: Path) -> list[dict]:
    return [r for r in map(json.loads, (work_dir / "scalars.jsonl").read_text().splitlines()) if r["mode"] == "val"]


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(shapes_root, tmp_path, run_tool, monkeypatch):
    # latest.pth is also written every 2 iterations inside an epoch; the kill comes at iteration 5
    # of epoch 2, so the run resumes from batch 4 of epoch 2 (random flips, a worker process, EMA)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "killer.py").write_text(KILLER)
    # the three runs with the same threads, whatever else trains on the machine (a training without
    # OMP_NUM_THREADS takes its share of the cores: mlcls.utils.cores); the killed process inherits them
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    env = {"PYTHONPATH": str(tmp_path / "plugins")}
    cfg = tiny_config(shapes_root, tmp_path / "unused", max_epochs=2)
    cfg["train_dataloader"]["num_workers"] = 2  # the workers' seeding is part of the guarantee
    cfg["train_dataloader"]["dataset"]["pipeline"][:0] = [{"type": "RandomHorizontalFlip"}, {"type": "RandomVerticalFlip"}]
    cfg["default_hooks"]["checkpoint"]["interval_iters"] = 2
    cfg["default_hooks"]["logger"]["interval"] = 1  # iteration 11 is logged after the last checkpoint (10)
    cfg["ema"] = {"decay": 0.9}
    # Mixup/CutMix draws are part of the guarantee too
    cfg["train_cfg"]["batch_augments"] = [{"type": "Mixup", "alpha": 0.4, "prob": 0.5}, {"type": "CutMix", "alpha": 1.0, "prob": 0.5}]
    del cfg["work_dir"]
    plain = write_config(cfg, tmp_path / "plain.yaml")
    cfg_kill = {**cfg, "custom_imports": ["killer"], "custom_hooks": [{"type": "KillAt", "epoch": 2, "it": 5}]}
    killed = write_config(cfg_kill, tmp_path / "killed.yaml")

    ref, wd = tmp_path / "ref", tmp_path / "wd"
    # the uninterrupted run and the resume in this process (the same threads as the killed process,
    # which inherits them); the kill needs a process of its own
    assert run_tool("tools/train.py", plain, "--work-dir", ref).returncode == 0
    # output to files, not pipes: waiting for a pipe's end would wait for the orphaned workers too,
    # and the resume below comes the moment the killed process is gone, as a scheduler's requeue does
    with open(tmp_path / "killed.out", "w") as out:
        r = subprocess.run(
            [sys.executable, "tools/train.py", killed, "--work-dir", wd], cwd=ROOT, stdout=out, stderr=out, env={**os.environ, **env}
        )
    assert r.returncode == -9, (tmp_path / "killed.out").read_text()  # really killed, in epoch 2
    meta = torch.load(wd / "latest.pth", weights_only=True)["meta"]
    assert (meta["epoch"], meta["inner_iter"]) == (1, 4)  # 1 epoch + 4 batches done
    r = run_tool("tools/train.py", plain, "--work-dir", wd, "--resume")
    assert r.returncode == 0, r.stderr
    assert "batch 4 of epoch 2" in (wd / "train.log").read_text()

    # first where the runs part, if they do: iterations 1-10 of wd were logged by the killed run, 11-12 after the resume
    losses = [
        {
            r["iter"]: (r["loss"], r["grad_norm"])
            for r in map(json.loads, (d / "scalars.jsonl").read_text().splitlines())
            if r["mode"] == "train"
        }
        for d in (ref, wd)
    ]
    parted = [i for i in losses[0] if losses[0][i] != losses[1].get(i)]
    assert not parted, f"(loss, grad norm) differ from iteration {parted[0]} on: {losses[0][parted[0]]} vs {losses[1].get(parted[0])}"
    a = torch.load(ref / "latest.pth", weights_only=True)
    b = torch.load(wd / "latest.pth", weights_only=True)
    assert a["meta"]["epoch"] == b["meta"]["epoch"] == 2
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k  # bit-identical weights
    for k, v in a["ema"]["state_dict"].items():
        assert torch.equal(v, b["ema"]["state_dict"][k]), k
    # the resumed log describes one run: iteration 11, logged before the kill, is not there twice
    train_iters = [
        [r["iter"] for r in map(json.loads, (d / "scalars.jsonl").read_text().splitlines()) if r["mode"] == "train"] for d in (ref, wd)
    ]
    assert train_iters[1] == train_iters[0] == list(range(1, 13))
    ra, rb = val_records(ref)[-1], val_records(wd)[-1]
    assert ra["epoch"] == rb["epoch"] == 2
    assert {k: v for k, v in ra.items() if k != "iter"} == {k: v for k, v in rb.items() if k != "iter"}


def test_two_gloo_processes_match_one_process_with_the_same_total_batch(shapes_root, tmp_path, run_tool):
    # VGG-11 has no BatchNorm, so per-process batch statistics cannot make the runs differ: with
    # DistributedSampler the two ranks' batches of 8 are exactly one process's batch of 16.
    cfg = tiny_config(shapes_root, tmp_path / "unused", max_epochs=2)
    cfg["model"]["backbone"] = {"type": "VGG", "depth": 11}
    cfg["optimizer"] = {"type": "SGD", "lr": 0.02, "momentum": 0.9}
    cfg["default_hooks"]["logger"]["interval"] = 1
    del cfg["work_dir"]
    single = dict(cfg, train_dataloader={**cfg["train_dataloader"], "batch_size": 16})
    # validation under DDP by class blocks (no rank gathers the scores): the same metrics as one process
    ddp = dict(
        cfg, train_dataloader={**cfg["train_dataloader"], "batch_size": 8}, val_evaluator={**cfg["val_evaluator"], "gather": "classes"}
    )
    one, two = tmp_path / "one", tmp_path / "two"
    r = run_tool("tools/train.py", write_config(single, tmp_path / "single.yaml"), "--work-dir", one)  # the reference, in this process
    assert r.returncode == 0, r.stderr
    r = run(
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "tools/train.py",
         write_config(ddp, tmp_path / "ddp.yaml"), "--work-dir", two, "--launcher", "pytorch"],
        {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    log = (two / "train.log").read_text()
    assert "distributed: 2 processes, backend cpu:gloo" in log  # the mapped form a CUDA run extends with cuda:nccl

    def records(wd, mode):
        return [r for r in map(json.loads, (wd / "scalars.jsonl").read_text().splitlines()) if r["mode"] == mode]

    t1, t2 = records(one, "train"), records(two, "train")
    assert [r["iter"] for r in t1] == [r["iter"] for r in t2] == list(range(1, 13))
    # logged loss = mean over both ranks = the single process's loss on the same 16 images; the
    # tolerance only covers float summation order in the gradient all-reduce (measured: 6e-8)
    for x, y in zip(t1, t2):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5)
    assert t1[-1]["loss"] < t1[0]["loss"] - 0.05  # it did train
    v1, v2 = records(one, "val"), records(two, "val")
    assert len(v1) == len(v2) == 2
    for x, y in zip(v1, v2):  # validation over both ranks' rows: the same 64 images, same metrics
        for key in ("mAP", "CF1", "OF1"):
            assert y[key] == pytest.approx(x[key], abs=1e-3), key
    # rank 0 alone wrote files; the DDP checkpoint loads and tests in a single process
    r = run_tool("tools/test.py", two / "latest.pth", "--work-dir", tmp_path / "test2")
    assert r.returncode == 0, r.stderr
    saved = load_eval_scores(tmp_path / "test2" / "eval_scores.npz")  # the scores the evaluation saw
    assert_metrics_match_sklearn(json.loads((tmp_path / "test2" / "test_metrics.json").read_text()), saved.scores, saved.targets)
    ckpt = torch.load(two / "latest.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])


def test_folds_under_torchrun_score_every_sample_once_in_the_right_rows(shapes_root, tmp_path):
    """--folds K with --launcher pytorch: every rank runs the folds one after another, the held-out
    prediction is gathered over both ranks, and rank 0 alone writes. Each out-of-fold row must be
    what the fold's checkpoint gives that very image in a single process (a rank mix-up or a
    padding duplicate would put another image's scores there)."""
    from mlcls.apis import inference_model, init_model

    cfg = tiny_config(shapes_root, tmp_path / "unused", max_epochs=1)
    del cfg["work_dir"], cfg["val_dataloader"]  # no validation split: folds train on the rest, score their own
    cfg["train_dataloader"]["batch_size"] = 8
    cfg["default_hooks"]["checkpoint"]["save_best"] = None
    wd = tmp_path / "cv"
    r = run(
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "tools/train.py",
         write_config(cfg, tmp_path / "cv.yaml"), "--work-dir", wd, "--launcher", "pytorch", "--folds", "2"],
        {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    rows = list(csv.DictReader((wd / "folds.csv").open()))
    assert len(rows) == 96 and len({row["path"] for row in rows}) == 96 and {row["fold"] for row in rows} == {"0", "1"}
    oof = load_eval_scores(wd / "oof_scores.npz")
    assert sorted(oof.paths) == sorted(row["path"] for row in rows) and not torch.isnan(oof.scores).any()
    assert len(json.loads((wd / "folds_summary.json").read_text())["per_fold"]) == 2
    for k in (0, 1):
        held = [row["path"] for row in rows if row["fold"] == str(k)]
        model = init_model(None, wd / f"fold_{k}" / "latest.pth")
        alone = inference_model(model, [str(p) for p in held])
        for path, res in zip(held, alone):
            got = oof.scores[oof.paths.index(path)]
            assert torch.allclose(got, torch.tensor([res["scores"][c] for c in oof.classes]), atol=2e-6), path
