"""Saved scores are checked once, where every tool reads them: a malformed file is one error line
naming the file and the problem, the same from the label-error finder, the report and the comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.reliability.conftest import one_line_error


def _good() -> dict:
    rng = np.random.default_rng(0)
    return {
        "scores": rng.random((12, 2)).astype(np.float32),
        "targets": (rng.random((12, 2)) < 0.5).astype(np.int8),
        "paths": np.array([f"img_{i}.png" for i in range(12)]),
        "classes": np.array(["cat", "dog"]),
        "thr": np.array([0.5, 0.5]),
        "meta": np.array(json.dumps({"name": "probe", "folds": 3})),
    }


def _nan(a):
    a["scores"][3, 1] = np.nan


def _inf(a):
    a["scores"][0, 0] = np.inf


# (what is changed in a good file, the words of the one error line)
SCORE_PROBES = [
    ("nan", _nan, "scores are NaN or infinite (the first: row 3, class 'dog')"),
    ("inf", _inf, "scores are NaN or infinite (the first: row 0, class 'cat')"),
    ("percent", lambda a: a.update(scores=a["scores"] * 100), "scores must be probabilities in [0, 1]"),
    ("logits", lambda a: a.update(scores=a["scores"] * 8 - 4), "(logits or percentages?)"),
    ("target 5", lambda a: a["targets"].__setitem__((0, 0), 5), "targets must be 1, 0 or -1 (unknown), found [5]"),
    ("target 0.5", lambda a: a.update(targets=np.full((12, 2), 0.5)), "targets must be 1, 0 or -1 (unknown), found [0.5]"),
    ("same class twice", lambda a: a.update(classes=np.array(["cat", "cat"])), "the class 'cat' is listed twice"),
    ("class without a name", lambda a: a.update(classes=np.array(["cat", " "])), "a class without a name"),
    ("meta a list", lambda a: a.update(meta=np.array("[1, 2]")), "meta must be a JSON object, got list"),
    ("meta null", lambda a: a.update(meta=np.array("null")), "meta must be a JSON object, got NoneType"),
    ("meta.folds text", lambda a: a.update(meta=np.array('{"folds": "3"}')), "meta.folds must be int, got str"),
    ("meta.views not names", lambda a: a.update(meta=np.array('{"views": [1]}')), "meta.views must be a list of view names"),
    ("1-D scores", lambda a: a.update(scores=a["scores"][:, 0]), "scores must be a 2-D array, got shape (12,)"),
    (
        "0 classes",
        lambda a: a.update(
            scores=np.zeros((12, 0), np.float32), targets=np.zeros((12, 0), np.int8), classes=np.array([], dtype=str), thr=np.zeros(0)
        ),
        "no classes in the saved scores (shape 12x0)",
    ),  # fmt: skip
    (
        "0 rows",
        lambda a: a.update(scores=np.zeros((0, 2), np.float32), targets=np.zeros((0, 2), np.int8), paths=np.array([], dtype=str)),
        "no samples in the saved scores (shape 0x2)",
    ),  # fmt: skip
    ("thr 2", lambda a: a.update(thr=np.array([0.5, 2.0])), "thresholds must be numbers in [0, 1], found [2.0]"),
    ("paths 2-D", lambda a: a.update(paths=a["paths"].reshape(6, 2)), "paths must be a 1-D array"),
    ("fewer paths", lambda a: a.update(paths=a["paths"][:5]), "inconsistent arrays (scores 12x2, targets (12, 2), 5 paths"),
]


def _write(folder, arrays) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "oof_scores.npz", "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("name, change, message", SCORE_PROBES, ids=[p[0] for p in SCORE_PROBES])
def test_malformed_saved_scores_are_one_line_in_every_tool(name, change, message, tmp_path, run_tool):
    good, bad = tmp_path / "good", tmp_path / "bad"
    _write(good, _good())
    arrays = _good()
    change(arrays)
    _write(bad, arrays)
    for tool, args in [("tools/find_label_issues.py", [bad]), ("tools/report.py", [bad]), ("tools/report.py", [good, bad])]:
        line = one_line_error(run_tool(tool, *args), message)
        assert str(bad / "oof_scores.npz") in line, (tool, line)
    assert sorted(p.name for p in bad.iterdir()) == ["oof_scores.npz"]  # nothing written beside it


def test_good_saved_scores_pass_and_a_fifo_is_refused_without_blocking(tmp_path, run_tool):
    import os

    from mlcls.report.store import load_eval_scores

    _write(tmp_path / "good", _good())
    run = load_eval_scores(tmp_path / "good" / "oof_scores.npz")
    assert run.scores.shape == (12, 2) and run.meta["folds"] == 3
    os.mkfifo(tmp_path / "pipe.npz")
    one_line_error(run_tool("tools/report.py", tmp_path / "pipe.npz"), "pipe.npz: not a regular file")


def test_a_pipe_among_the_pictures_is_named_not_read_and_pictures_have_a_time_bound(tmp_path, run_tool, monkeypatch):
    """A saved path that is a FIFO used to hang report.py forever: pictures are read from regular
    files only, and a page spends at most its time budget on them, naming the rest as not read."""
    import os
    import signal

    from PIL import Image

    from mlcls.report import build_report
    from tests.report.conftest import embedded_data

    os.mkfifo(tmp_path / "pipe.png")
    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    arrays = _good()
    arrays["paths"] = np.array([str(tmp_path / ("pipe.png" if i % 2 else "ok.png")) + ("" if i < 2 else f"?{i}") for i in range(12)])
    arrays["paths"][:2] = [str(tmp_path / "ok.png"), str(tmp_path / "pipe.png")]
    _write(tmp_path / "run", arrays)
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("report.py hung on a FIFO")))
    signal.alarm(60)
    try:
        r = run_tool("tools/report.py", tmp_path / "run", "--gallery-k", "12")
    finally:
        signal.alarm(0)
    assert r.returncode == 0, r.stderr
    images = embedded_data(tmp_path / "run" / "report.html")["images"]
    errors = {im["file"]: im["error"] for im in images.values()}
    assert errors.get(str(tmp_path / "pipe.png")) == "unreadable: not a regular file (a pipe or device); not read"
    assert errors.get(str(tmp_path / "ok.png")) is None
    # no time left for pictures: every one is named as not read, and the page is still written
    import mlcls.report.html as html

    monkeypatch.setattr(html, "PICTURE_SECONDS", 0.0)
    from mlcls.report.store import load_eval_scores

    run = load_eval_scores(tmp_path / "run" / "oof_scores.npz")
    out = build_report(run, tmp_path / "late.html", gallery_k=12)
    assert all(im["error"].startswith("not read: the report's 0 s for pictures ran out") for im in embedded_data(out)["images"].values())


def _issues_dir(tmp_path, text: bytes):
    """A run folder with good scores and a label_issues.csv of ``text`` found in them (its record beside it)."""
    from mlcls.report.store import issues_record, load_eval_scores
    from mlcls.utils.misc import write_json

    d = tmp_path / "run"
    _write(d, _good())
    (d / "label_issues.csv").write_bytes(text)
    run = load_eval_scores(d / "oof_scores.npz")
    write_json(issues_record(d / "oof_scores.npz", run, d / "label_issues.csv", 1, {}), d / "label_issues.json")
    return d


HEAD = "path,class,given_label,score,quality,kind,rank\n"
# a label_issues.csv after a spreadsheet: (content, the words of the one error line, or None: read as it should be)
ISSUE_PROBES = [
    (("\ufeff" + HEAD + "img_1.png,cat,0,0.9,0.1,missing,1\n").encode(), None),  # a byte-order mark: fine
    ((HEAD.replace(",", ";") + "img_1.png;cat;0;0.9;0.1;missing;1\n").encode(), "label_issues.csv:1: expected the header 'path,class,given_label"),
    ((HEAD + "img_1.png,cat,0.0,0.9,0.1,missing,1\n").encode(), "label_issues.csv:2: given_label and rank must be whole numbers"),
    ((HEAD + "img_1.png,cat,0,0.9,0.1,missing,1\ncaf\xe9.png,dog,0,0.8,0.2,missing,2\n").encode("latin-1"), "label_issues.csv:3: not UTF-8 text"),
    ((HEAD + "img_1.png,bird,0,0.9,0.1,missing,1\n").encode(), "label_issues.csv:2: unknown class 'bird'"),
    ((HEAD + "img_1.png,cat,0,1.9,0.1,missing,1\n").encode(), "label_issues.csv:2: expected given_label 0 or 1, a score in [0, 1]"),
]  # fmt: skip


@pytest.mark.parametrize("content, message", ISSUE_PROBES)
def test_a_label_issue_list_edited_in_a_spreadsheet_is_read_or_one_error(content, message, tmp_path, run_tool):
    from tests.report.conftest import embedded_data

    d = _issues_dir(tmp_path, content)
    r = run_tool("tools/report.py", d)
    if message is None:
        assert r.returncode == 0, r.stderr
        assert [p["path"] for p in embedded_data(d / "report.html")["label_issues"]["pairs"]] == ["img_1.png"]
    else:
        one_line_error(r, message)
        assert not (d / "report.html").exists()


def test_an_evaluation_is_one_value_that_reads_back_as_it_was_saved_and_is_judged_at_other_thresholds_as_a_copy(tmp_path):
    import torch

    from mlcls.report.store import Evaluation, load_eval_scores, save_eval_scores

    a = _good()
    meta = {"name": "probe", "thresholds_source": "config", "tta": ["identity", "hflip"], "same_samples": ["tuned on them"]}
    ev = Evaluation(
        torch.from_numpy(a["scores"]), torch.from_numpy(a["targets"]), a["paths"].tolist(), a["classes"].tolist(), [0.5, 0.5], meta
    )
    back = load_eval_scores(save_eval_scores(tmp_path / "eval_scores.npz", ev))
    assert torch.equal(back.scores, ev.scores) and torch.equal(back.targets, ev.targets) and back.targets.dtype == torch.int8
    assert (back.paths, back.classes, back.thr, back.meta, back.evidence, back.views) == (ev.paths, ev.classes, ev.thr, meta, None, None)
    other = back.with_thresholds([0.25, 0.75], "thresholds.json")
    assert other.thr == [0.25, 0.75] and other.meta["thresholds_source"] == "thresholds.json" and other.scores is back.scores
    assert back.thr == [0.5, 0.5] and back.meta["thresholds_source"] == "config"  # the loaded value is unchanged
