"""Numbers and options that used to fail late (after every fold trained) or with a traceback: each is
refused before any work, with one line naming the option or key, exit status 2 and nothing written."""

from __future__ import annotations

import pytest

CKPT = "__ckpt__"  # replaced by a checkpoint path where a probe needs one

# (tool, its arguments after the config, words of the error)
CLI_PROBES = [
    ("tools/train.py", ["--seed", "-1"], "argument --seed: expected a seed from 0 to 4294967295, got -1"),
    ("tools/train.py", ["--seed", str(2**64)], "argument --seed: expected a seed from 0 to 4294967295"),
    ("tools/train.py", ["--seeds", "0", "0"], "--seeds: each seed once, got 0 0"),
    ("tools/train.py", ["--folds", "2", "--ci", str(10**10)], "argument --ci: expected a number of resamples from 1 to 100000"),
    ("tools/train.py", ["--ci", "100"], "--ci: only with --folds"),
    ("tools/train.py", ["--workers", "2"], "--workers: only with --folds K or --seeds"),
    ("tools/train.py", ["--folds", "2", "--workers", "0"], "argument --workers: expected an integer >= 1, got 0"),
    ("tools/train.py", ["--folds", "2", "--workers", "2", "--merge"], "--workers and --merge: one at a time"),
    ("tools/train.py", ["--folds", "2", "--part", "0", "--overwrite"], "--part: not with --overwrite"),
    ("tools/train.py", ["--seeds", "0", "1", "--workers", "2", "--launcher", "pytorch"], "--workers: not under torchrun"),
    ("tools/train.py", ["--cfg-options", "seed=-1"], "seed must be an integer from 0 to 2^32 - 1, got -1"),
    (
        "tools/train.py",
        ["--cfg-options", "+train_dataloader.dataset.holdout={part: train, seed: -1}"],
        "CSVDataset.holdout.seed: expected an integer from 0 to 2^32 - 1, got -1",
    ),  # fmt: skip
    (
        "tools/train.py",
        ["--cfg-options", "+train_dataloader.dataset.label_fixes=123"],
        "CSVDataset.label_fixes: expected the path of a CSV",
    ),
    ("tools/train.py", ["--cfg-options", "+model.views=[sag.ittal]"], "model.views: a view name is a folder name"),
    ("tools/test.py", [CKPT, "--ci", str(10**10)], "argument --ci: expected a number of resamples from 1 to 100000"),
    ("tools/test.py", [CKPT, "--ci-seed", str(2**63)], "argument --ci-seed: expected a seed"),
    ("tools/test.py", [CKPT, "--tune-thr", "specificity"], "--tune-thr specificity needs --tune-target"),
    ("tools/test.py", [CKPT, "--tune-thr", "f1", "--tune-target", "0.9"], "--tune-target is the goal of --tune-thr precision"),
    ("tools/report.py", ["a", "b", "--resamples", str(10**10)], "argument --resamples: expected a number of resamples"),
]


@pytest.mark.parametrize("tool, args, message", CLI_PROBES, ids=[" ".join(p[1])[:60] for p in CLI_PROBES])
def test_out_of_range_options_are_refused_before_any_work(tool, args, message, config_file, tmp_path, run_tool):
    work = tmp_path / "work"
    args = [str(tmp_path / "missing.pth") if a == CKPT else a for a in args]
    lead = [] if tool == "tools/report.py" else [config_file]
    r = run_tool(tool, *lead, *args, "--work-dir", work) if tool != "tools/report.py" else run_tool(tool, *args)
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
    errors = [ln for ln in r.stderr.splitlines() if "error: " in ln]
    assert len(errors) == 1, r.stderr
    assert not work.exists()  # nothing written: no config.yaml of a run that never starts
