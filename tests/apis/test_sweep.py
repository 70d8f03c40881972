"""tools/sweep.py: a space of config keys searched on Optuna by workers sharing one study; killed and
resumed; its table, best config and page."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlcls.apis import prepare_config
from tests.report.browser import chromium_or_skip

optuna = pytest.importorskip("optuna")  # the tests extra installs it; say so where it is missing

ROOT = Path(__file__).resolve().parents[2]
SPACE = {"space": {"optimizer.lr": {"choices": [1.0e-3, 3.0e-3, 1.0e-2]}}}


def _trials(work_dir: Path) -> list:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(work_dir / "study.journal")))
    return optuna.load_study(study_name="sweep", storage=storage).get_trials()


def test_a_sweep_over_two_workers_is_killed_resumed_and_reported(config_file, tmp_path, run_tool):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    wd = tmp_path / "sweep"
    cmd = [sys.executable, "tools/sweep.py", str(config_file), str(space), "--work-dir", str(wd), "--workers", "2",
           "--cfg-options", "train_cfg.max_epochs=3"]  # fmt: skip
    with open(tmp_path / "first.out", "w") as out:
        first = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=out)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:  # killed once a trial has finished and others run
            if (wd / "study.journal").exists() and any(t.state.name == "COMPLETE" for t in _trials(wd)):
                break
            time.sleep(0.5)
        first.send_signal(signal.SIGTERM)  # a scheduler's kill: the workers stop with it
        assert first.wait(timeout=120) == 143, (tmp_path / "first.out").read_text()[-2000:]
    before = {t.number: t.state.name for t in _trials(wd)}
    finished = [n for n, s in before.items() if s in ("COMPLETE", "PRUNED")]
    assert finished and len(finished) < 3, before
    kept = {n: (wd / f"trial_{n}" / "latest.pth").stat().st_mtime_ns for n in finished if (wd / f"trial_{n}" / "latest.pth").exists()}

    r = run_tool("tools/sweep.py", config_file, space, "--work-dir", wd, "--workers", "2", "--cfg-options", "train_cfg.max_epochs=3")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((wd / "trials.csv").open()))
    assert sorted(float(r["optimizer.lr"]) for r in rows) == [1.0e-3, 3.0e-3, 1.0e-2]  # each point once: none lost, none twice
    assert all(r["state"] in ("COMPLETE", "PRUNED") for r in rows), rows
    for n, mtime in kept.items():  # a trial finished before the kill was not trained again
        assert (wd / f"trial_{n}" / "latest.pth").stat().st_mtime_ns == mtime
    attempts = [t for t in _trials(wd) if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(attempts) == 3
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(done, key=lambda r: float(r["mAP"]))
    cfg = prepare_config(wd / "best_config.yaml")  # ready for tools/train.py
    assert cfg["optimizer"]["lr"] == float(best["optimizer.lr"]) and cfg["train_cfg"]["max_epochs"] == 3
    assert "work_dir" not in yaml.safe_load((wd / "best_config.yaml").read_text())
    assert f"trial {int(best['trial']):>3} COMPLETE" in r.stdout

    with chromium_or_skip(tmp_path / "profile") as b:
        b.open((wd / "sweep.html").as_uri())
        assert b.eval("document.querySelectorAll('tbody tr').length") == 3
        assert b.eval("document.querySelectorAll('svg.plot circle.best').length") == 1
        assert b.eval("document.querySelector('tr.best td').textContent") == best["trial"]
        assert not b.errors()


def test_a_sweep_scored_by_folds_draws_each_trials_interval(config_file, tmp_path, run_tool):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"metric": "mAUROC", "space": {"model.head.loss": {"choices": [
        {"type": "BCEWithLogitsLoss"}, {"type": "FocalLoss", "gamma": 1.0}]}}}))  # fmt: skip
    wd = tmp_path / "sweep"
    r = run_tool(
        "tools/sweep.py", config_file, space, "--work-dir", wd, "--folds", "2", "--ci", "20", "--cfg-options", "train_cfg.max_epochs=1"
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((wd / "trials.csv").open()))
    assert [r["model.head.loss"] for r in rows] == ["BCEWithLogitsLoss", "FocalLoss(gamma=1.0)"]
    for row in rows:  # the pooled out-of-fold metric of the trial's folds, inside its bootstrap interval
        summary = yaml.safe_load((wd / f"trial_{row['trial']}" / "folds_summary.json").read_text())
        assert float(row["mAUROC"]) == pytest.approx(summary["pooled"]["mAUROC"])
        assert float(row["low"]) <= float(row["mAUROC"]) <= float(row["high"])
    assert (wd / "sweep.html").read_text().count('class="ci"') == 2
    # the same space and config again: the study is done, nothing trains; another config is refused
    r = run_tool(
        "tools/sweep.py", config_file, space, "--work-dir", wd, "--folds", "2", "--ci", "20", "--cfg-options", "train_cfg.max_epochs=1"
    )
    assert r.returncode == 0 and len(list(csv.DictReader((wd / "trials.csv").open()))) == 2
    r = run_tool("tools/sweep.py", config_file, space, "--work-dir", wd, "--folds", "2", "--cfg-options", "train_cfg.max_epochs=2")
    assert r.returncode == 2 and "was started with another config" in r.stderr


SPACE_PROBES = [
    ({"spaces": {}}, "expected a mapping with 'space:'"),
    ({"space": {"optimizer.lr": {"low": 0.1, "high": 0.01}}}, "space.optimizer.lr: a range needs numbers low < high"),
    ({"space": {"optimizer.lr": {"low": 0.0, "high": 0.1, "log": True}}}, "space.optimizer.lr: log: true needs low > 0"),
    ({"space": {"optimizer.lr": {"choices": [0.1, 0.1]}}}, "space.optimizer.lr: a choice is listed twice"),
    ({"space": {"optimizer.lr": {"low": 0.001, "high": 0.1}}}, "trials: expected a number of trials >= 1 for sampler tpe"),
    ({"sampler": "grid", "space": {"optimizer.lr": {"low": 0.001, "high": 0.1}}}, "sampler grid: every key needs 'choices'"),
    ({"space": {"optimizer.lr": {"choices": [0.1]}}, "metrics": "mAP"}, "unknown key(s) metrics"),
    ({"space": {"optimizer.lrr": {"choices": [0.1]}}}, "space.optimizer.lrr: key 'optimizer.lrr' does not exist in the config"),
    ({"space": {"model.head.loss": {"choices": [{"type": "FocalLos"}]}}}, "space.model.head.loss"),
]


@pytest.mark.parametrize("doc, message", SPACE_PROBES, ids=[m[:40] for _, m in SPACE_PROBES])
def test_a_bad_space_is_one_error_naming_the_key_before_any_training(doc, message, config_file, tmp_path, run_tool):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(doc))
    r = run_tool("tools/sweep.py", config_file, space, "--work-dir", tmp_path / "sweep")
    assert r.returncode == 2 and message in r.stderr and str(space) in r.stderr, r.stderr
    assert not (tmp_path / "sweep").exists()  # refused before the study or any trial was made


def test_the_shipped_spaces_apply_to_the_demo_config():
    from mlcls.apis.sweep import Space, apply_params

    cfg = prepare_config(ROOT / "configs/demo/resnet18_shapes.yaml")
    spaces = sorted((ROOT / "configs/spaces").glob("*.yaml"))
    assert spaces
    for path in spaces:
        space = Space.from_file(path)
        for params in space.grid():
            apply_params(cfg, space, params, source=str(path))
        assert space.trials == len(space.grid())
    assert Space.from_file(ROOT / "configs/spaces/losses.yaml").trials == 10  # 5 losses x 2 learning rates


def test_a_sweep_whose_every_trial_fails_stops_and_says_why(config_file, tmp_path, run_tool):
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump({"sampler": "random", "trials": 20, "space": {"optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True}}})
    )
    r = run_tool("tools/sweep.py", config_file, space, "--work-dir", tmp_path / "sweep",
                 "--cfg-options", f"train_dataloader.dataset.ann_file={tmp_path / 'missing.csv'}")  # fmt: skip
    assert r.returncode == 2 and "3 trials in a row failed, the last with:" in r.stderr and "missing.csv" in r.stderr, r.stderr
    states = [t.state.name for t in _trials(tmp_path / "sweep")]
    assert states == ["FAIL"] * 3  # not 20 trials that could only fail
