"""Several seeds of one config: mean ± std written and printed, and a comparison that says whether a
difference between two configs exceeds the spread between seeds."""

from __future__ import annotations

import json

import pytest

from mlcls.apis.seeds import compare_summaries


def val_mAP(work_dir):
    recs = [json.loads(x) for x in (work_dir / "scalars.jsonl").read_text().splitlines()]
    return [r["mAP"] for r in recs if r["mode"] == "val"][-1]


def test_seeds_run_one_after_the_other_and_summarise(config_file, tmp_path, run_tool):
    wd = tmp_path / "runs"
    r = run_tool("tools/train.py", config_file, "--work-dir", wd, "--seeds", "0", "1", "--cfg-options", "train_cfg.max_epochs=1")
    assert r.returncode == 0, r.stderr
    summary = json.loads((wd / "seeds_summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    values = [val_mAP(wd / f"seed_{k}") for k in (0, 1)]
    assert summary["metrics"]["mAP"]["values"] == pytest.approx(values)
    assert summary["metrics"]["mAP"]["mean"] == pytest.approx(sum(values) / 2)
    assert summary["metrics"]["mAP"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert len(summary["per_class"]) == 10 and all("positives" in c for c in summary["per_class"])
    assert "2 seeds (0, 1): mean ± std" in r.stdout and "mAP" in (wd / "seeds_summary.txt").read_text()
    r = run_tool("tools/analyze_logs.py", "--compare", wd, wd)
    assert r.returncode == 0, r.stderr
    assert "within the seed spread: not a difference" in r.stdout


def test_a_difference_is_judged_against_the_spread():
    def summary(values):
        import numpy as np

        return {"metrics": {"mAP": {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)), "values": values}}}

    a = summary([60.0, 60.5, 59.5])
    assert compare_summaries(a, summary([62.0, 62.5, 61.5]))[0]["beyond_spread"]  # +2 with a spread of ~0.4
    assert not compare_summaries(a, summary([59.0, 62.0, 61.0]))[0]["beyond_spread"]  # +0.7 with a spread of ~0.9


def test_folds_with_seeds_average_the_out_of_fold_scores(config_file, tmp_path, run_tool):
    """--folds 2 --seeds 0 1: each seed's folds in seed_<s>, and the run folder's oof_scores.npz
    (what the finder and the report read) is the mean of the two seeds' out-of-fold scores."""
    import numpy as np

    from mlcls.report.store import load_eval_scores

    wd = tmp_path / "cv"
    r = run_tool("tools/train.py", config_file, "--work-dir", wd, "--tta", "flip")
    assert r.returncode != 0 and "--tta: only with --folds" in r.stderr and not wd.exists()
    r = run_tool(
        "tools/train.py", config_file, "--work-dir", wd, "--folds", "2", "--seeds", "0", "1", "--tta", "flip",
        "--cfg-options", "train_cfg.max_epochs=1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    seeds = [load_eval_scores(wd / f"seed_{s}" / "oof_scores.npz") for s in (0, 1)]
    assert seeds[0].meta["tta"] == seeds[1].meta["tta"] == ["identity", "hflip"]  # held-out folds scored over both views
    assert (wd / "seed_0" / "folds.csv").read_text() != (wd / "seed_1" / "folds.csv").read_text()  # each seed its own split
    mean = load_eval_scores(wd / "oof_scores.npz")
    assert mean.paths == seeds[0].paths == seeds[1].paths and mean.meta["seeds"] == [0, 1]
    np.testing.assert_allclose(mean.scores.numpy(), (seeds[0].scores.numpy() + seeds[1].scores.numpy()) / 2, atol=1e-6)
    assert "2-fold cross-validation, 2 seeds" in r.stdout and "seed 1: mAP" in (wd / "folds_summary.txt").read_text()
    r = run_tool("tools/find_label_issues.py", wd, "--min-known", "3")
    assert r.returncode == 0 and "not out-of-fold" not in r.stderr, r.stderr
    assert (wd / "label_issues.csv").is_file()
