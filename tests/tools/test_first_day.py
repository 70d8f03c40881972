"""What a new user meets on the first day: runs never mix in one folder, a finished run says how to
go on, short epochs still log, every tool names what it wrote, threshold fallbacks are visible."""

from __future__ import annotations

import json

from tests.conftest import tiny_config


def train_records(work_dir):
    return [r for r in map(json.loads, (work_dir / "scalars.jsonl").read_text().splitlines()) if r["mode"] == "train"]


def test_runs_never_mix_in_one_work_dir(shapes_root, tmp_path, run_tool):
    import yaml

    cfg = tiny_config(shapes_root, tmp_path / "unused", max_epochs=1)
    cfg["default_hooks"]["logger"].update(interval=20, tensorboard=True)  # interval longer than the 6-iteration epoch
    del cfg["work_dir"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    wd = tmp_path / "wd"
    r = run_tool("tools/train.py", tmp_path / "c.yaml", "--work-dir", wd)
    assert r.returncode == 0, r.stderr
    # a short epoch still logs (every ceil(6/4) = 2 iterations, and its last one)
    assert [x["iter"] for x in train_records(wd)] == [2, 4, 6]
    assert f"outputs in {wd}: checkpoints" in r.stdout and "epoch_1.pth" in r.stdout and "tensorboard --logdir" in r.stdout

    r = run_tool("tools/train.py", tmp_path / "c.yaml", "--work-dir", wd)  # again, same folder
    assert r.returncode == 2 and "already holds a run" in r.stderr and "--resume" in r.stderr and "--overwrite" in r.stderr
    assert len(train_records(wd)) == 3  # nothing appended

    r = run_tool("tools/train.py", tmp_path / "c.yaml", "--work-dir", wd, "--resume")
    assert r.returncode == 0, r.stderr
    assert "is complete (1 of 1 epochs)" in r.stdout and "train_cfg.max_epochs=2 --resume" in r.stdout

    r = run_tool("tools/train.py", tmp_path / "c.yaml", "--work-dir", wd, "--overwrite", "--cfg-options", "train_cfg.max_epochs=2")
    assert r.returncode == 0, r.stderr
    assert [x["iter"] for x in train_records(wd)] == [2, 4, 6, 8, 10, 12]  # one run's curve only
    assert (wd / "train.log").read_text().count("model: ImageClassifier") == 1
    assert sorted(p.name for p in wd.glob("epoch_*.pth")) == ["epoch_1.pth", "epoch_2.pth"]


def test_test_tool_lists_its_files_and_marks_fallback_thresholds(shapes_root, tmp_path, run_tool):
    from mlcls.apis import train_model

    cfg = tiny_config(shapes_root, tmp_path / "run", max_epochs=1)
    train_model(cfg)
    ckpt = tmp_path / "run" / "latest.pth"
    out = tmp_path / "t"
    # every class has fewer than 1000 validation positives: all fall back to the global threshold
    r = run_tool("tools/test.py", ckpt, "--work-dir", out, "--tune-thr", "f1", "--min-pos", "1000", "--out", out / "s.csv")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.rstrip().endswith("*")]
    assert len(rows) == 10  # each class row marked
    assert "* fewer than 1000 positives on 'val' to tune on: these classes use the global threshold" in r.stdout
    assert f"wrote 7 files to {out}:" in r.stdout
    for name in ("test_metrics.json", "per_class.csv", "ap_vs_frequency.png", "thresholds.json", "s.csv", "eval_scores.npz", "report.html"):
        assert f"  {out / name}" in r.stdout and (out / name).is_file()
    # thresholds of 0.5 everywhere: the "at thr 0.5" line would only repeat the summary
    r = run_tool("tools/test.py", ckpt, "--work-dir", out, "--thr", "0.5")
    assert r.returncode == 0 and "at thr 0.5" not in r.stdout
