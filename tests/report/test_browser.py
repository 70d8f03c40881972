"""The report in a real headless Chromium: scripts run without error, the threshold control moves and
the page's precision/recall equal compute_metrics, downloaded thresholds reproduce in test_model.

Chromium is the Debian package ``chromium`` (.ci/run installs it); without it these tests are
skipped and say so.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch
from PIL import Image

from mlcls.apis import test_model as evaluate_checkpoint
from mlcls.apis.test import ThresholdOptions
from mlcls.evaluation import compute_metrics
from mlcls.report import load_eval_scores
from mlcls.report.data import report_data
from mlcls.report.html import write_compare, write_report
from tests.report.browser import Chromium, chromium_or_skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium_or_skip(tmp_path_factory.mktemp("chromium-profile")) as b:
        yield b


def shown(b: Chromium) -> dict:
    ids = ("thr-slider", "exp-thr", "exp-p", "exp-r", "exp-f1", "exp-tp", "exp-fp", "exp-fn", "exp-class")
    values = b.eval(
        "["
        + ",".join(f"document.getElementById('{i}').{'value' if i in ('thr-slider', 'exp-class') else 'textContent'}" for i in ids)
        + "]"
    )
    return dict(zip(ids, values))


def assert_matches_compute_metrics(state: dict, saved: dict) -> None:
    c, k = int(state["exp-class"]), int(state["thr-slider"])
    m = compute_metrics(saved.scores, saved.targets, thr=k / 1000)
    assert state["exp-thr"] == f"{k / 1000:.3f}"
    assert (state["exp-p"], state["exp-r"], state["exp-f1"]) == (
        f"{m['precision'][c]:.2f}",
        f"{m['recall'][c]:.2f}",
        f"{m['F1'][c]:.2f}",
    ), (c, k)
    assert (int(state["exp-tp"]), int(state["exp-fp"]), int(state["exp-fn"])) == (m["tp"][c], m["fp"][c], m["fn"][c])


def test_report_in_chromium(browser, evaluated, tmp_path):
    saved = load_eval_scores(evaluated["test_dir"] / "eval_scores.npz")
    browser.open((evaluated["test_dir"] / "report.html").as_uri())
    assert browser.eval("document.body.dataset.ready") == "1"
    assert browser.errors() == []
    # every section is there; the gallery's thumbnails decode
    for section in ("header", "classes", "explorer", "gallery", "calibration", "training"):
        assert browser.eval(f"!!document.getElementById('{section}')"), section
    assert browser.eval("document.querySelectorAll('#class-table tbody tr').length") == 10
    assert browser.eval("[...document.querySelectorAll('.thumb img')].every(i => i.complete && i.naturalWidth > 0)")

    # click the table row of one class (the explorer follows), then click on the slider's track
    target = 3
    browser.click(*browser.center(f'#class-table tbody tr[data-index="{target}"]'))
    assert browser.eval("document.getElementById('exp-class').value") == str(target)
    browser.click(*browser.center("#thr-slider", 0.3))
    first = shown(browser)
    assert 200 < int(first["thr-slider"]) < 400  # it moved to where it was clicked
    assert_matches_compute_metrics(first, saved)
    for _ in range(7):  # and with the keyboard, one step (0.001) at a time
        browser.key("ArrowRight", "ArrowRight", 39)
    second = shown(browser)
    assert int(second["thr-slider"]) == int(first["thr-slider"]) + 7
    assert_matches_compute_metrics(second, saved)
    # sort by AP with a click on its header: the rows come back ordered
    browser.click(*browser.center('#class-table th[data-key="AP"]'))
    aps = browser.eval("[...document.querySelectorAll('#class-table tbody tr')].map(r => +r.dataset.index)")
    ap_values = [json.loads(json.dumps(r)) for r in aps]
    data_ap = [c["AP"] for c in browser.eval("JSON.parse(document.getElementById('report-data').textContent).classes")]
    assert [data_ap[i] for i in ap_values] == sorted(data_ap, reverse=True)

    # "Download thresholds": the file reproduces the explorer's numbers in test_model
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.allow_downloads(downloads)
    browser.click(*browser.center("#exp-download"))
    deadline = time.monotonic() + 30
    while not list(downloads.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    record = json.loads(next(downloads.glob("*.json")).read_text())
    assert record["classes"] == saved.classes and record["edited"] == [saved.classes[target]]
    assert record["values"][target] == int(second["thr-slider"]) / 1000
    assert [v for i, v in enumerate(record["values"]) if i != target] == [v for i, v in enumerate(saved.thr) if i != target]
    f = tmp_path / "thresholds.json"
    f.write_text(json.dumps(record))
    m = evaluate_checkpoint(None, str(evaluated["checkpoint"]), thresholds=ThresholdOptions(thr=str(f)), work_dir=str(tmp_path / "again"))
    assert f"{m['precision'][target]:.2f}" == second["exp-p"] and f"{m['recall'][target]:.2f}" == second["exp-r"]

    shot = browser.screenshot(tmp_path / "report.png")
    img = Image.open(shot).convert("RGB")
    assert img.width >= 1000 and img.height >= 1500
    small = img.resize((img.width // 4, img.height // 4))
    colours = small.getcolors(maxcolors=1 << 20)
    assert len(colours) > 200  # charts, thumbnails and text, not a blank page
    white = sum(n for n, c in colours if min(c) > 240) / (small.width * small.height)
    assert white < 0.9


def test_collapsed_model_page_warns(browser, tmp_path):
    # 30 labels, about one positive per image, a model that scores everything low
    targets = torch.zeros(300, 30, dtype=torch.int8)
    targets[torch.arange(300), torch.arange(300) % 30] = 1
    scores = torch.rand(300, 30, generator=torch.Generator().manual_seed(0)) * 0.2
    data = report_data(scores, targets, [f"label{i}" for i in range(30)], 0.5, meta={"split": "val"})
    page = write_report(data, [f"/nonexistent/{i}.png" for i in range(300)], targets, tmp_path / "r.html")
    browser.open(page.as_uri())
    assert browser.errors() == []
    text = browser.eval("document.getElementById('collapse-warning').textContent")
    assert "predicts almost nothing" in text and "96.7%" in text  # label accuracy of predicting nothing
    # unreadable gallery images are named, not silently dropped
    assert browser.eval("document.querySelectorAll('.thumb .missing').length") > 0


def test_compare_page_in_chromium(browser, evaluated, tmp_path):
    saved = load_eval_scores(evaluated["test_dir"] / "eval_scores.npz")
    a = report_data(saved.scores, saved.targets, saved.classes, saved.thr, meta={"name": "A"}, gallery_classes=0)
    b = report_data(saved.scores**2, saved.targets, saved.classes, saved.thr, meta={"name": "B"}, gallery_classes=0)
    page = write_compare(a, b, tmp_path / "cmp.html")
    browser.open(page.as_uri())
    assert browser.errors() == [] and browser.eval("document.body.dataset.ready") == "1"
    assert browser.eval("document.querySelectorAll('#class-table tbody tr').length") == 10
    browser.click(*browser.center("#class-filter"))
    browser.send("Input.insertText", {"text": saved.classes[0]})
    assert browser.eval("document.querySelectorAll('#class-table tbody tr').length") >= 1
    assert browser.eval("document.querySelector('#class-table tbody tr td').textContent").startswith(saved.classes[0])


def test_compare_page_shows_the_summary_intervals_and_says_which_test_the_stars_follow(browser, evaluated, tmp_path):
    from mlcls.report.data import paired_comparison

    saved = load_eval_scores(evaluated["test_dir"] / "eval_scores.npz")
    other = dataclasses.replace(saved, scores=saved.scores**2, meta={"name": "B"})
    paired = paired_comparison(saved, other, resamples=50)
    a = report_data(saved.scores, saved.targets, saved.classes, saved.thr, meta={"name": "A", "views": ["sagittal"]},
                    gallery_classes=0)  # fmt: skip
    b = report_data(other.scores, saved.targets, saved.classes, saved.thr, meta={"name": "B", "views": ["sagittal"]},
                    gallery_classes=0)  # fmt: skip
    page = write_compare(a, b, tmp_path / "cmp.html", paired=paired)
    browser.open(page.as_uri())
    assert browser.errors() == []
    summary = browser.eval("document.getElementById('compare-summary').textContent")
    lo, hi = paired["summary_ci"]["mAP"]
    assert f"[{lo:.2f}, {hi:.2f}]" in summary and "64 exams" in summary and "images" not in summary
    assert "The stars follow DeLong's test" in browser.eval("document.getElementById('paired-note').textContent")
