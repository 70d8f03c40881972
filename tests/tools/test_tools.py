"""The command-line tools in subprocesses: the train -> test round trip and bad-input errors."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlcls.report.store import load_eval_scores
from tests.conftest import assert_metrics_match_sklearn, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained_dir(shapes_root, tmp_path_factory) -> Path:
    """One real 1-epoch tools/train.py run, shared read-only (tests copy it before writing)."""
    base = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(shapes_root, base / "unused")
    del cfg["work_dir"]
    (base / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    r = run("tools/train.py", base / "tiny.yaml", "--work-dir", base / "wd", "--cfg-options", "train_cfg.max_epochs=1")
    assert r.returncode == 0, r.stderr
    return base / "wd"


def test_train_then_test_round_trip(config_file, tmp_path, run_tool):
    wd = tmp_path / "wd"
    r = run("tools/train.py", config_file, "--work-dir", wd, "--cfg-options", "train_cfg.max_epochs=1", "optimizer.lr=0.002")
    assert r.returncode == 0, r.stderr
    saved = yaml.safe_load((wd / "config.yaml").read_text())
    assert saved["optimizer"]["lr"] == 0.002 and saved["train_cfg"]["max_epochs"] == 1
    out = tmp_path / "scores.csv"
    r = run("tools/test.py", config_file, wd / "best.pth", "--work-dir", wd, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "mAP" in r.stdout and "circle" in r.stdout  # summary and per-class table
    metrics = json.loads((wd / "test_metrics.json").read_text())
    saved = load_eval_scores(wd / "eval_scores.npz")
    assert_metrics_match_sklearn(metrics, saved.scores, saved.targets)
    assert len(metrics["per_class"]) == 10 and {"class", "positives", "AP", "P", "R", "F1"} <= set(metrics["per_class"][0])
    lines = out.read_text().splitlines()
    assert len(lines) == 65 and lines[0].startswith("image,score_circle")
    # the checkpoint alone is enough to rebuild and test the model; --thr changes the threshold
    r = run_tool("tools/test.py", wd / "best.pth", "--work-dir", tmp_path / "wd2", "--thr", "0.3")  # (one real process per tool is enough)
    assert r.returncode == 0, r.stderr
    m2 = json.loads((tmp_path / "wd2/test_metrics.json").read_text())
    assert m2["mAP"] == pytest.approx(metrics["mAP"]) and m2["thresholds"]["values"][0] == 0.3 and m2["thresholds"]["source"] == "--thr 0.3"


def expect_error(r, pattern):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr  # one clear line
    assert pattern in err[0], err[0]


def test_analyze_dataset_writes_json_and_pngs(config_file, tmp_path):
    out = tmp_path / "stats"
    r = run("tools/analyze_dataset.py", config_file, "--out", out, "--oversample-thr", "0.2")
    assert r.returncode == 0, r.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["num_images"] == 96 and stats["num_classes"] == 10 and stats["oversample_thr"] == 0.2
    assert "all-zeros baseline" in r.stdout
    ratio = re.search(r"imbalance ratio \(max/min count\): (\S+)", r.stdout).group(1)
    assert re.fullmatch(r"\d+\.\d", ratio), ratio  # rounded, not 7.333333333333333
    for png in ("class_frequency.png", "cooccurrence.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tuned_thresholds_are_stored_and_used_by_default(config_file, trained_dir, tmp_path, run_tool):
    wd = tmp_path / "wd"
    shutil.copytree(trained_dir, wd)
    ckpt = wd / "latest.pth"
    expect_error(run_tool("tools/test.py", config_file, ckpt, "--tune-thr", "f1", "--tune-split", "test"), "refusing to tune")
    r = run("tools/test.py", config_file, ckpt, "--work-dir", wd, "--tune-thr", "f1", "--min-pos", "1")  # a real process
    assert r.returncode == 0, r.stderr
    assert "thresholds: checkpoint (f1 on 'val')" in r.stdout and "at thr 0.5" in r.stdout
    stored = json.loads((wd / "thresholds.json").read_text())
    assert stored["split"] == "val" and len(stored["values"]) == 10
    from mlcls.utils.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt)["thresholds"]["values"] == stored["values"]  # saved into the checkpoint
    r = run_tool("tools/test.py", ckpt, "--work-dir", tmp_path / "again")  # later runs use them by default
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "again/test_metrics.json").read_text())
    assert m["thresholds"]["values"] == pytest.approx(stored["values"]) and "checkpoint" in m["thresholds"]["source"]
    assert (tmp_path / "again/per_class.csv").read_text().startswith("class,positives,negatives,AP,AUROC,P,R,spec,F1,thr")
    assert (tmp_path / "again/ap_vs_frequency.png").is_file()
    r = run_tool("tools/test.py", ckpt, "--work-dir", tmp_path / "global", "--thr", "0.5")
    assert json.loads((tmp_path / "global/test_metrics.json").read_text())["thresholds"]["source"] == "--thr 0.5"


def test_analyze_logs_plots_several_runs(trained_dir, tmp_path, run_tool):
    runs = [trained_dir, trained_dir / "scalars.jsonl"]  # a folder and a log file, drawn as two runs
    out = tmp_path / "curves.png"
    r = run_tool("tools/analyze_logs.py", *runs, "--keys", "loss", "mAP", "lr", "--names", "a", "b", "--out", out)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    assert "a: best mAP" in r.stdout and "b: best mAP" in r.stdout
    expect_error(run_tool("tools/analyze_logs.py", runs[0], "--keys", "mAPP", "--out", out), "'mAPP' is in none of the logs")
    expect_error(run_tool("tools/analyze_logs.py", tmp_path / "nope"), "scalars.jsonl")


def test_tuning_thresholds_keeps_the_linked_checkpoint_names_one_file(trained_dir, tmp_path, run_tool):
    import os

    wd = tmp_path / "wd"
    wd.mkdir()
    shutil.copyfile(trained_dir / "epoch_1.pth", wd / "epoch_1.pth")
    for name in ("latest.pth", "best.pth"):  # as CheckpointHook leaves them: hard links to the epoch file
        os.link(wd / "epoch_1.pth", wd / name)
    r = run_tool("tools/test.py", wd / "best.pth", "--work-dir", tmp_path / "t", "--tune-thr", "f1", "--min-pos", "1")
    assert r.returncode == 0, r.stderr
    inodes = {(wd / n).stat().st_ino for n in ("epoch_1.pth", "latest.pth", "best.pth")}
    assert len(inodes) == 1 and (wd / "best.pth").stat().st_nlink == 3  # still one file under three names
    from mlcls.utils.checkpoint import load_checkpoint

    assert load_checkpoint(wd / "epoch_1.pth")["thresholds"]["split"] == "val"


@pytest.mark.parametrize(
    "tool, args, message",
    [
        ("test.py", ["--ci", "-5"], "argument --ci: expected a number of resamples from 1 to 100000, got -5"),
        ("test.py", ["--tune-target", "1.5"], "argument --tune-target: expected a number in (0, 1], got 1.5"),
        ("test.py", ["--tune-target", "nan"], "argument --tune-target: expected a number in (0, 1], got nan"),
        ("test.py", ["--thr", "x"], "argument --thr: expected a number in [0, 1], got 'x'"),
        ("infer.py", ["in", "--topk", "0"], "argument --topk: expected an integer >= 1, got 0"),
        ("report.py", ["--gallery-k", "-1"], "argument --gallery-k: expected an integer >= 0, got -1"),
    ],
)
def test_bad_numbers_on_the_command_line_are_usage_errors(tool, args, message, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{tool[:-3]}", ROOT / "tools" / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as e:
        module.parse_args(["a.pth", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err  # argparse's usage error, no traceback
