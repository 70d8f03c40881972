"""The numbers the report page embeds, checked against direct counts, scikit-learn and known values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlcls.errors import DataError
from mlcls.evaluation import compute_metrics
from mlcls.report.data import (
    NUM_BINS,
    bin_edges,
    calibration,
    gallery,
    report_data,
    score_histograms,
    training_curves,
    zeros_baseline,
)
from mlcls.report.html import render
from mlcls.report.store import Evaluation, load_eval_scores, save_eval_scores
from tests.report.conftest import embedded_data


def scores_with_edge_cases(n: int = 400, c: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, c, generator=g) < 0.2).to(torch.int8)
    scores = (torch.rand(n, c, generator=g) * 0.6 + targets * 0.35).clamp(0, 1)
    targets[torch.rand(n, c, generator=g) < 0.1] = -1  # unknown entries: in neither histogram
    edges = bin_edges()
    scores[:20, 0] = edges[300]  # exactly on a threshold: counted as predicted at thr 0.3
    scores[20:25, 1] = 1.0
    scores[25:30, 1] = 0.0
    scores[30:40, 2] = edges[137] - 1e-7  # just below one
    return scores, targets


def counts_at(hist: dict, k: int) -> tuple[int, int, int]:
    """(tp, fp, fn) at threshold k / bins as the page reads them off a class's sparse histograms
    (report.js countsAt; the browser tests check the page itself)."""
    tp = sum(c for b, c in zip(hist["pb"], hist["pc"]) if b >= k)
    fp = sum(c for b, c in zip(hist["nb"], hist["nc"]) if b >= k)
    return tp, fp, sum(hist["pc"]) - tp


@pytest.mark.parametrize("k", [0, 1, 137, 138, 300, 301, 500, 999, NUM_BINS])
def test_histogram_counts_equal_direct_counts_at_every_threshold(k):
    """The page's counts at threshold k/1000 (read off the histograms) are the confusion counts of
    ``score >= k/1000`` over known entries, edge cases on the bin edges included; scikit-learn's
    precision and recall on the same entries match the evaluation's, so page and evaluation agree."""
    from sklearn.metrics import precision_score, recall_score

    scores, targets = scores_with_edge_cases()
    hist = score_histograms(scores, targets)
    m = compute_metrics(scores, targets, thr=k / NUM_BINS)
    for c in range(scores.shape[1]):
        known = targets[:, c] >= 0
        y, pred = (targets[known, c] == 1).numpy(), (scores[known, c] >= k / NUM_BINS).numpy()
        assert counts_at(hist[c], k) == (int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())), (k, c)
        assert m["precision"][c] == pytest.approx(100 * precision_score(y, pred, zero_division=0), abs=1e-9)
        assert m["recall"][c] == pytest.approx(100 * recall_score(y, pred, zero_division=0), abs=1e-9)


def test_histograms_leave_out_unknown_entries():
    scores, targets = scores_with_edge_cases()
    hist = score_histograms(scores, targets)
    for c, h in enumerate(hist):
        assert sum(h["pc"]) == int((targets[:, c] == 1).sum()) and sum(h["nc"]) == int((targets[:, c] == 0).sum())
        assert h["pb"] == sorted(h["pb"]) and all(0 <= b <= NUM_BINS for b in h["pb"] + h["nb"])


def test_calibration_against_a_direct_loop():
    scores, targets = scores_with_edge_cases(seed=3)
    cal = calibration(scores, targets, bins=10)
    s, t = scores.numpy().astype(np.float64), targets.numpy()
    for c in (None, 0, 3):
        cols = range(s.shape[1]) if c is None else [c]
        pairs = [(s[i, j], t[i, j]) for j in cols for i in range(s.shape[0]) if t[i, j] >= 0]
        ece, n = 0.0, len(pairs)
        for b in range(10):
            inside = [(p, y) for p, y in pairs if min(int(p * 10), 9) == b]
            if inside:
                ece += len(inside) / n * abs(np.mean([y for _, y in inside]) - np.mean([p for p, _ in inside]))
        got = cal["all"] if c is None else cal["per_class"][c]
        assert got["ece"] == pytest.approx(100 * ece, abs=2e-3)
        assert sum(got["n"]) == n


def test_calibration_of_calibrated_scores_is_small():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(20000, 2, generator=g)
    y = (torch.rand(20000, 2, generator=g) < p).to(torch.int8)  # labels drawn with the predicted probability
    assert calibration(p, y)["all"]["ece"] < 1.5
    assert calibration(p.clamp(max=0.05), y)["all"]["ece"] > 30  # a model that never says more than 5 %


def test_gallery_finds_the_known_false_positives_and_misses():
    # classes: cat, dog, car. Image 3 is a dog (not a cat) scored 0.95 for cat: the top false positive
    # of cat, with dog the class it is confused with; image 1 is the cat scored lowest.
    targets = torch.tensor([[1, 0, 0], [1, 0, 1], [0, 0, 1], [0, 1, 0], [0, 1, 1], [-1, 0, 0]], dtype=torch.int8)
    cat = torch.tensor([0.9, 0.2, 0.1, 0.95, 0.6, 0.99])  # the 0.99 is unknown for cat: never a false positive
    scores = torch.stack([cat, torch.full((6,), 0.5), torch.full((6,), 0.5)], 1)
    g = gallery(scores, targets, torch.tensor([0.5, 0.5, 0.5]), k=2)[0]
    assert g["fp"] == [[3, 0.95], [4, 0.6]]
    assert g["miss"] == [[1, 0.2], [0, 0.9]]
    assert g["confused_basis"] == "fp" and g["confused_from"] == 2
    assert g["confused"] == [[1, 2], [2, 1]]  # dog in both false positives, car in one


def test_zeros_baseline_shows_what_predicting_nothing_scores():
    targets = torch.zeros(100, 30, dtype=torch.int8)
    targets[torch.arange(100), torch.arange(100) % 30] = 1  # one positive of 30 per image
    z = zeros_baseline(targets)
    assert z["CF1"] == 0 and z["OR"] == 0
    assert z["label_accuracy"] == pytest.approx(100 * 29 / 30)  # "accuracy" near 100 % with recall 0


def test_report_data_table_against_independent_counts_and_scikit_learn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores, targets = scores_with_edge_cases(seed=5)
    thr = [0.3, 0.5, 0.42, 0.6, 0.5]
    data = report_data(scores, targets, [f"c{i}" for i in range(5)], thr, meta={"split": "test"}, train_counts=[5, 4, 3, 2, 1])
    s, t = scores.numpy(), targets.numpy()
    for c, row in enumerate(data["classes"]):
        known = t[:, c] >= 0
        y, x = t[known, c], s[known, c]
        pred = x >= np.float32(thr[c])
        assert (row["tp"], row["fp"], row["fn"]) == (
            int((pred & (y == 1)).sum()),
            int((pred & (y == 0)).sum()),
            int((~pred & (y == 1)).sum()),
        )
        assert row["AP"] == pytest.approx(average_precision_score(y, x) * 100, abs=1e-4)
        assert row["AUROC"] == pytest.approx(roc_auc_score(y, x) * 100, abs=1e-4)
        assert row["spec"] == pytest.approx((~pred & (y == 0)).sum() / (y == 0).sum() * 100, abs=1e-4)
    tp, fp, fn = (sum(r[k] for r in data["classes"]) for k in ("tp", "fp", "fn"))
    assert data["summary"]["OP"] == pytest.approx(100 * tp / (tp + fp)) and data["summary"]["OR"] == pytest.approx(100 * tp / (tp + fn))
    assert (data["classes"][2]["thr"], data["classes"][2]["train_pos"]) == (0.42, 3)
    # the evaluation's own metrics are reused as they are: the same page data, without computing them again
    m = compute_metrics(scores, targets, thr=thr, sample_metrics=True)
    again = report_data(scores, targets, [f"c{i}" for i in range(5)], thr, meta={"split": "test"}, train_counts=[5, 4, 3, 2, 1], metrics=m)
    assert json.dumps(again, sort_keys=True, default=str) == json.dumps(data, sort_keys=True, default=str)


def test_gallery_is_capped_for_many_classes():
    g = torch.Generator().manual_seed(0)
    targets = (torch.rand(300, 40, generator=g) < 0.3).to(torch.int8)
    scores = torch.rand(300, 40, generator=g)
    data = report_data(scores, targets, [f"c{i}" for i in range(40)], 0.5, gallery_classes=7)
    assert len(data["gallery"]) == 7 and "7 classes with the lowest AP" in data["gallery_note"]
    worst = sorted(range(40), key=lambda c: data["classes"][c]["AP"])[:7]
    assert sorted(data["gallery"]) == sorted(worst)


def test_training_curves_read_scalars_and_skip_a_cut_line(tmp_path):
    lines = [{"mode": "train", "epoch": 1, "iter": i, "loss": 1 / i, "lr": 0.1} for i in range(1, 6)]
    lines.append({"mode": "val", "epoch": 1, "iter": 5, "mAP": 40.0, "CF1": 30.0, "hamming_loss": 2.0})
    text = "\n".join(json.dumps(r) for r in lines) + '\n{"mode": "tra'  # a crash cut the last line
    (tmp_path / "scalars.jsonl").write_text(text)
    curves = training_curves(tmp_path)
    assert [r[0] for r in curves["train"]] == [1, 2, 3, 4, 5] and curves["val"] == [{"epoch": 1, "mAP": 40.0, "CF1": 30.0}]
    assert training_curves(tmp_path / "missing") is None


def test_page_data_cannot_close_its_script_element():
    scores, targets = scores_with_edge_cases(n=50, c=3)
    names = ["</script><script>alert(1)</script>", "<!--x", "ok"]
    data = report_data(scores, targets, names, 0.5)
    page = render({**data, "images": {}}, "t")
    assert page.count("</script>") == 2  # the data's and the code's, nothing from the class names
    out = embedded_data_from_text(page)
    assert [c["name"] for c in out["classes"]] == names


def embedded_data_from_text(page: str) -> dict:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "r.html").write_text(page, encoding="utf-8")
        return embedded_data(Path(d) / "r.html")


def test_saved_scores_round_trip_and_refuse_pickles(tmp_path):
    scores, targets = scores_with_edge_cases(n=30, c=3)
    meta = {"split": "val", "train_counts": {"pos": [1, 2, 3]}}
    f = save_eval_scores(
        tmp_path / "eval_scores.npz",
        Evaluation(scores, targets, [f"img{i}.png" for i in range(30)], ["a", "b", "c"], [0.5, 0.4, 0.3], meta),
    )
    got = load_eval_scores(f)
    assert torch.equal(got.scores, scores) and torch.equal(got.targets, targets)
    assert got.paths[3] == "img3.png" and got.classes == ["a", "b", "c"] and got.thr == [0.5, 0.4, 0.3] and got.meta == meta
    np.savez(
        tmp_path / "evil.npz",
        scores=np.array([object()], dtype=object),
        targets=np.zeros(1),
        paths=np.zeros(1),
        classes=np.zeros(1),
        thr=np.zeros(1),
        meta=np.zeros(1),
    )
    with pytest.raises(DataError, match="evil.npz: cannot read"):
        load_eval_scores(tmp_path / "evil.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(DataError, match="not an mlcls evaluation file"):
        load_eval_scores(tmp_path / "other.npz")
