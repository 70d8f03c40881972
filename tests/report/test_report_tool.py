"""tools/test.py's report and tools/report.py: rebuilding from saved scores, comparing, thresholds files."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from mlcls.apis import test_model as evaluate_checkpoint
from mlcls.apis.inference import inference_model, init_model
from mlcls.apis.test import ThresholdOptions
from mlcls.errors import ConfigError
from mlcls.evaluation import compute_metrics
from mlcls.report import load_eval_scores
from tests.report.conftest import embedded_data


def test_test_model_writes_the_report_and_what_rebuilds_it(evaluated):
    d, m = evaluated["test_dir"], evaluated["metrics"]
    assert {str(d / "report.html"), str(d / "eval_scores.npz")} <= set(m["written"])
    saved = load_eval_scores(d / "eval_scores.npz")
    assert saved.scores.shape == (64, 10) and saved.thr == m["thr"]
    # the saved scores are the evaluated ones: they give test_metrics.json's numbers again
    again = compute_metrics(saved.scores, saved.targets, thr=saved.thr)
    assert again["mAP"] == pytest.approx(m["mAP"]) and again["CF1"] == pytest.approx(m["CF1"])
    data = embedded_data(d / "report.html")
    assert data["summary"]["mAP"] == pytest.approx(m["mAP"]) and data["meta"]["num_images"] == 64
    assert data["meta"]["split"] == "test" and data["meta"]["thresholds_source"] == "config evaluator (thr 0.5)"
    assert [c["name"] for c in data["classes"]] == saved.classes
    # training frequencies come from the checkpoint, curves from the run's scalars.jsonl
    counts = torch.load(evaluated["checkpoint"], weights_only=True)["meta"]["train_counts"]
    assert [c["train_pos"] for c in data["classes"]] == counts["pos"] and counts["num_samples"] == 96
    assert data["curves"]["source"].endswith("scalars.jsonl") and len(data["curves"]["val"]) == 2
    # every gallery image is embedded with its file name, true labels and a thumbnail
    rows = {r for g in data["gallery"].values() for key in ("fp", "miss") for r, _ in g[key]}
    assert rows and {int(r) for r in data["images"]} == rows
    for r, im in data["images"].items():
        assert im["file"] == saved.paths[int(r)] and im["thumb"].startswith("data:image/jpeg;base64,")
        assert im["labels"] == torch.nonzero(saved.targets[int(r)] == 1).flatten().tolist()


def test_report_tool_rebuilds_the_same_page_from_saved_scores(evaluated, tmp_path, run_tool):
    d = tmp_path / "copy"
    shutil.copytree(evaluated["test_dir"], d)
    original = embedded_data(d / "report.html")
    (d / "report.html").unlink()
    r = run_tool("tools/report.py", d)
    assert r.returncode == 0, r.stderr
    rebuilt = embedded_data(d / "report.html")
    for key in ("summary", "classes", "hist", "calibration", "gallery", "images", "curves", "zeros", "at_half"):
        assert rebuilt[key] == original[key], key
    # a training work dir with one evaluation in it is enough
    r = run_tool("tools/report.py", tmp_path, "--out", tmp_path / "again.html")
    assert r.returncode == 0 and (tmp_path / "again.html").is_file()


def test_report_tool_says_what_it_needs(tmp_path, run_tool):
    r = run_tool("tools/report.py", tmp_path)
    assert r.returncode == 2 and "no eval_scores.npz here" in r.stderr and "tools/test.py" in r.stderr
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval_scores.npz").write_bytes(b"x")
    r = run_tool("tools/report.py", tmp_path)
    assert r.returncode == 2 and "2 evaluations found, name one" in r.stderr
    r = run_tool("tools/report.py", tmp_path / "a")
    assert r.returncode == 2 and "not an .npz evaluation file" in r.stderr


def test_compare_two_evaluations_in_class_order_with_paired_statistics(evaluated, tmp_path, run_tool):
    other = tmp_path / "thr03"
    evaluate_checkpoint(None, str(evaluated["checkpoint"]), thresholds=ThresholdOptions(thr=0.3), work_dir=str(other), report=True)
    r = run_tool("tools/report.py", evaluated["test_dir"], other, "--out", tmp_path / "cmp.html", "--resamples", "50")
    assert r.returncode == 0, r.stderr
    assert "AUROC with DeLong's test" in r.stdout and "10 classes tested" in r.stdout
    data = embedded_data(tmp_path / "cmp.html")
    assert data["mode"] == "compare"
    a = json.loads((evaluated["test_dir"] / "test_metrics.json").read_text())["per_class"]
    b = json.loads((other / "test_metrics.json").read_text())["per_class"]
    by_a, by_b = {r["class"]: r for r in a}, {r["class"]: r for r in b}
    for row in data["rows"]:
        assert row["dF1"] == pytest.approx(by_b[row["name"]]["F1"] - by_a[row["name"]]["F1"], abs=1e-3)
        assert row["dAP"] == pytest.approx(0, abs=1e-9)  # same scores: only the threshold changed
    assert [row["name"] for row in data["rows"]] == [row["class"] for row in b]  # the dataset's class order
    # the same scores at another threshold: AUROC and AP cannot differ, F1 can (within its paired interval)
    for row in data["rows"]:
        assert row["dAUROC"] == 0 and row["p_delong"] == 1.0 and row["significant"] is False
        assert row["dAP_ci"] == [0, 0] and row["dF1_ci"][0] - 1e-6 <= row["dF1"] <= row["dF1_ci"][1] + 1e-6
    paired = json.loads((tmp_path / "cmp.json").read_text())
    assert paired["classes_tested"] == 10 and paired["bonferroni"] == pytest.approx(0.005) and paired["resamples"] == 50
    assert data["summary"]["b"]["CF1"] == pytest.approx(json.loads((other / "test_metrics.json").read_text())["CF1"])


def test_thresholds_file_works_in_test_and_inference(evaluated, tmp_path, run_tool):
    classes = load_eval_scores(evaluated["test_dir"] / "eval_scores.npz").classes
    values = [round(0.1 + 0.05 * i, 3) for i in range(len(classes))]
    record = {"values": values[::-1], "classes": classes[::-1], "objective": "manual", "source": "report.html"}
    f = tmp_path / "thresholds.json"
    f.write_text(json.dumps(record))
    r = run_tool("tools/test.py", evaluated["checkpoint"], "--thr-file", f, "--work-dir", tmp_path / "t", "--no-report")
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "t/test_metrics.json").read_text())
    assert out["thresholds"]["values"] == pytest.approx(values) and out["thresholds"]["source"] == f"file {f}"
    assert not (tmp_path / "t/report.html").exists()  # --no-report
    model = init_model(None, evaluated["checkpoint"])
    image = load_eval_scores(evaluated["test_dir"] / "eval_scores.npz").paths[0]
    assert inference_model(model, image, thr=str(f)) == inference_model(model, image, thr=values)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"values": values[:3], "classes": classes[:3]}))
    r = run_tool("tools/test.py", evaluated["checkpoint"], "--thr-file", bad, "--work-dir", tmp_path / "t2")
    assert r.returncode == 2 and "do not match the model's 10 classes" in r.stderr and not (tmp_path / "t2/test_metrics.json").exists()
    with pytest.raises(ConfigError, match="bad.json"):
        inference_model(model, image, thr=str(bad))


def test_no_tool_writes_over_its_input_or_another_steps_result(evaluated, tmp_path, run_tool):
    from tests.reliability.conftest import one_line_error

    d = tmp_path / "copy"
    shutil.copytree(evaluated["test_dir"], d)
    (d / "folds.csv").write_text("path,fold\n")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    one_line_error(run_tool("tools/report.py", d, "--out", d / "eval_scores.npz"), "that is this command's input")
    (tmp_path / "link.npz").symlink_to(d / "eval_scores.npz")  # the input by another name
    one_line_error(run_tool("tools/report.py", d, "--out", tmp_path / "link.npz"), "that is this command's input")
    one_line_error(run_tool("tools/find_label_issues.py", d / "eval_scores.npz", "--out", d / "eval_scores.npz"), "expected a .csv file")
    one_line_error(run_tool("tools/find_label_issues.py", d / "eval_scores.npz", "--out", d / "folds.csv"),
                   "folds.csv: another step's result would be replaced")  # fmt: skip
    # compare: B/test_metrics.html would put the paired statistics over B's test_metrics.json
    one_line_error(run_tool("tools/report.py", evaluated["test_dir"], d, "--out", d / "test_metrics.html"),
                   "test_metrics.json: another step's result would be replaced")  # fmt: skip
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_an_evaluation_under_test_time_augmentation_is_rebuilt_by_report_py(evaluated, tmp_path, run_tool):
    # its meta says which views were averaged, as a list like the folds' held-out scores (the loader checks the type)
    evaluate_checkpoint(None, str(evaluated["checkpoint"]), tta="flip", work_dir=str(tmp_path / "tta"), report=True)
    saved = load_eval_scores(tmp_path / "tta" / "eval_scores.npz")
    assert saved.meta["tta"] == ["identity", "hflip"]
    r = run_tool("tools/report.py", tmp_path / "tta", "--out", tmp_path / "again.html")
    assert r.returncode == 0, r.stderr
    assert embedded_data(tmp_path / "again.html")["meta"]["tta"] == ["identity", "hflip"]
    assert "Array.isArray(M.tta) ? M.tta.map(" in (tmp_path / "again.html").read_text(encoding="utf-8")  # shown joined


def test_compare_aligns_the_same_samples_in_another_order(evaluated, tmp_path, run_tool):
    from mlcls.report.data import align_samples

    a = load_eval_scores(evaluated["test_dir"] / "eval_scores.npz")
    order = torch.randperm(len(a.paths), generator=torch.Generator().manual_seed(0))
    b = dataclasses.replace(a, scores=a.scores[order], targets=a.targets[order], paths=[a.paths[i] for i in order])
    aligned = align_samples(a, b)
    assert aligned.paths == a.paths and torch.equal(aligned.scores, a.scores) and torch.equal(aligned.targets, a.targets)
    from mlcls.report import save_eval_scores

    save_eval_scores(tmp_path / "b" / "eval_scores.npz", b)
    r = run_tool("tools/report.py", evaluated["test_dir"], tmp_path / "b", "--resamples", "20")
    assert r.returncode == 0 and "no paired statistics" not in r.stderr, r.stderr
    assert (
        "wrote " + str(tmp_path / "b" / "compare_test_latest.html") + " and " + str(tmp_path / "b" / "compare_test_latest.json") in r.stdout
    )
    paired = json.loads((tmp_path / "b" / "compare_test_latest.json").read_text())
    assert all(c["dAUROC"] == 0 for c in paired["classes"])  # the same scores, row by row
