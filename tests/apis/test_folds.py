"""K-fold cross-validation (tools/train.py --folds K) and label fixes, on the tiny shapes set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlcls.report.store import Evaluation, load_eval_scores
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def folds_run(shapes_root, tmp_path_factory):
    """A 3-fold run (one epoch per fold) whose second fold was interrupted and resumed."""
    from mlcls.apis import train_model
    from mlcls.apis.folds import run_folds

    base = tmp_path_factory.mktemp("folds") / "cv"
    cfg = tiny_config(shapes_root, base, max_epochs=1)
    calls = []

    def train(c, resume):
        calls.append((Path(c["work_dir"]).name, resume))
        if Path(c["work_dir"]).name == "fold_1" and not resume and len(calls) == 2:
            train_model({**c, "train_cfg": {**c["train_cfg"], "max_epochs": 1}})
            raise KeyboardInterrupt  # stopped after fold 1 trained, before it scored its held-out part
        return train_model(c, resume="auto" if resume else None)

    with pytest.raises(KeyboardInterrupt):
        run_folds(cfg, 3, train)
    summary = run_folds(cfg, 3, train, resume=True, ci=20)
    return base, summary, calls


def test_every_sample_is_scored_once_by_a_model_that_never_saw_it(folds_run, shapes_root):
    from mlcls.apis.folds import oof_rows_of
    from mlcls.utils.checkpoint import load_checkpoint

    base, summary, calls = folds_run
    oof = load_eval_scores(base / "oof_scores.npz")
    train_paths = [str(shapes_root / line.split(",")[0]) for line in (shapes_root / "train.csv").read_text().splitlines()[1:]]
    assert sorted(oof.paths) == sorted(train_paths) and len(set(oof.paths)) == len(train_paths) == 96
    assert not torch.isnan(oof.scores).any()
    fold_of = oof_rows_of(base / "folds.csv")
    for k in range(3):
        held = load_eval_scores(base / f"fold_{k}" / "heldout_scores.npz")
        assert {fold_of[p] for p in held.paths} == {k}  # fold k's model scored fold k only
        ckpt = load_checkpoint(base / f"fold_{k}" / "latest.pth")
        seen = ckpt["meta"]["config"]["train_dataloader"]["dataset"]["folds"]
        assert seen == {"k": 3, "seed": 0, "fold": k, "part": "train"}  # ...and trained without it
        i = oof.paths.index(held.paths[0])
        assert torch.equal(oof.scores[i], held.scores[0])
    # stratified: each class's positives within one of K-equal across folds
    targets = {p: t for p, t in zip(oof.paths, oof.targets)}
    for c in range(oof.targets.shape[1]):
        per_fold = [sum(int(targets[p][c] == 1) for p, f in fold_of.items() if f == k) for k in range(3)]
        assert max(per_fold) - min(per_fold) <= 1, (c, per_fold)
    # the interrupted fold resumed; the finished one was kept
    assert calls == [("fold_0", False), ("fold_1", False), ("fold_1", True), ("fold_2", False)]
    assert summary["folds"] == 3 and set(summary["pooled_ci"]) == {"mAP", "mAUROC", "CF1", "OF1"}
    assert abs(summary["mean"]["mAP"] - np.mean([f["mAP"] for f in summary["per_fold"]])) < 1e-9
    assert "3-fold cross-validation" in (base / "folds_summary.txt").read_text()


def test_seeds_out_of_fold_scores_are_averaged(folds_run, tmp_path):
    """--folds K --seeds a b: the top-level oof_scores.npz is the mean of the seeds' out-of-fold
    scores (checked against numpy and scikit-learn); seeds that scored other labels are refused."""
    import shutil

    from sklearn.metrics import average_precision_score

    from mlcls.apis.folds import combine_seeds, format_folds_summary
    from mlcls.errors import ConfigError
    from mlcls.report.store import save_eval_scores

    base, _, _ = folds_run
    one = load_eval_scores(base / "oof_scores.npz")
    (tmp_path / "seed_0").mkdir()
    shutil.copy(base / "oof_scores.npz", tmp_path / "seed_0" / "oof_scores.npz")
    other = torch.from_numpy(np.random.default_rng(0).random(one.scores.shape, dtype=np.float32))
    save_eval_scores(tmp_path / "seed_3" / "oof_scores.npz", Evaluation(other, one.targets, one.paths, one.classes,
                     [0.3] * len(one.classes), {**one.meta, "seed": 3}))  # fmt: skip
    summary = combine_seeds(tmp_path, [0, 3])
    mean = load_eval_scores(tmp_path / "oof_scores.npz")
    want = (one.scores.numpy() + other.numpy()) / 2
    np.testing.assert_allclose(mean.scores.numpy(), want, atol=1e-6)
    assert mean.paths == one.paths and torch.equal(mean.targets, one.targets)
    assert mean.meta["folds"] == 3 and mean.meta["seeds"] == [0, 3]
    np.testing.assert_allclose(mean.thr, (np.array(one.thr) + 0.3) / 2, atol=1e-6)
    y = one.targets.numpy()
    has = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    ap = np.mean([average_precision_score(y[:, k], want[:, k]) for k in has])
    assert summary["pooled"]["mAP"] == pytest.approx(100 * ap, abs=1e-3)
    assert summary["per_seed"][1]["mAP"] == pytest.approx(
        100 * np.mean([average_precision_score(y[:, k], other[:, k]) for k in has]), abs=1e-3
    )
    assert summary["std"]["mAP"] > 0 and "seed 3: mAP" in format_folds_summary(summary)
    assert "2 seeds" in (tmp_path / "folds_summary.txt").read_text()
    # a seed whose labels differ (the data or the label fixes changed): refused, nothing rewritten
    flipped = one.targets.clone()
    flipped[0, 0] = 1 - flipped[0, 0]
    save_eval_scores(tmp_path / "seed_4" / "oof_scores.npz", Evaluation(other, flipped, one.paths, one.classes, one.thr, one.meta))
    before = (tmp_path / "oof_scores.npz").read_bytes()
    with pytest.raises(ConfigError, match=r"seed_4.oof_scores\.npz: other samples, classes or labels than .*seed_0"):
        combine_seeds(tmp_path, [0, 4])
    assert (tmp_path / "oof_scores.npz").read_bytes() == before


def test_resume_refuses_finished_folds_of_another_split(folds_run, shapes_root, tmp_path):
    """Finished folds of an interrupted run are kept only for the same split: after a change of
    seed (or data) --resume is one error naming folds.csv's line, nothing is trained or written."""
    import shutil

    from mlcls.apis.folds import run_folds
    from mlcls.errors import ConfigError

    base, _, _ = folds_run
    copy = tmp_path / "cv"
    copy.mkdir()
    shutil.copy(base / "folds.csv", copy / "folds.csv")
    for k in range(3):
        (copy / f"fold_{k}").mkdir()
        shutil.copy(base / f"fold_{k}" / "heldout_scores.npz", copy / f"fold_{k}" / "heldout_scores.npz")
    before = (copy / "folds.csv").read_bytes()

    def train(c, resume):
        raise AssertionError("nothing may be trained")

    with pytest.raises(ConfigError, match=r"folds\.csv line \d+ reads .*the data, K or the seed changed"):
        run_folds({**tiny_config(shapes_root, copy, max_epochs=1), "seed": 1}, 3, train, resume=True)
    assert (copy / "folds.csv").read_bytes() == before and not (copy / "oof_scores.npz").exists()
    lines = before.decode().splitlines()
    (copy / "folds.csv").write_text("\n".join(lines[:-5]) + "\n")  # an earlier, smaller training set
    with pytest.raises(ConfigError, match="lists 91 samples but the training set now has 96"):
        run_folds(tiny_config(shapes_root, copy, max_epochs=1), 3, train, resume=True)


def test_held_out_folds_scored_with_tta_and_rescored_on_resume(folds_run, tmp_path):
    """--folds K --tta flip: each held-out fold's score is the mean of the fold model's scores of
    the image and of its mirror image (computed here image by image); resuming a finished run
    with another --tta scores the folds again from their checkpoints without training them."""
    import shutil

    from PIL import Image

    from mlcls.apis.folds import run_folds
    from mlcls.apis.inference import inference_model, init_model
    from mlcls.utils.checkpoint import load_checkpoint

    base, _, _ = folds_run
    copy = tmp_path / "cv"
    shutil.copytree(base, copy)
    plain_oof = load_eval_scores(base / "oof_scores.npz")

    def train(c, resume):
        raise AssertionError("a finished fold may not be trained again")

    run_cfg = load_checkpoint(base / "fold_0" / "latest.pth")["meta"]["config"]
    run_cfg["train_dataloader"]["dataset"].pop("folds")
    run_folds({**run_cfg, "work_dir": str(copy)}, 3, train, resume=True, tta="flip")
    held = load_eval_scores(copy / "fold_0" / "heldout_scores.npz")
    assert held.meta["tta"] == ["identity", "hflip"]
    model = init_model(None, copy / "fold_0" / "latest.pth")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in held.paths[:12]]

    def probs(arrays):
        return torch.tensor([[r["scores"][c] for c in held.classes] for r in inference_model(model, arrays)])

    want = (probs(images) + probs([np.ascontiguousarray(a[:, ::-1]) for a in images])) / 2
    torch.testing.assert_close(held.scores[:12].float(), want.float(), atol=1e-5, rtol=1e-4)
    plain = load_eval_scores(base / "fold_0" / "heldout_scores.npz")
    assert plain.meta.get("tta") is None and not torch.allclose(plain.scores[:12], held.scores[:12])
    oof = load_eval_scores(copy / "oof_scores.npz")
    assert oof.meta["tta"] == ["identity", "hflip"] and oof.paths == plain_oof.paths
    # the same --tta again: nothing is scored again
    before = (copy / "fold_0" / "heldout_scores.npz").read_bytes()
    run_folds({**run_cfg, "work_dir": str(copy)}, 3, train, resume=True, tta="flip")
    assert (copy / "fold_0" / "heldout_scores.npz").read_bytes() == before


def test_fold_settings_are_checked():
    from mlcls.datasets.base import check_folds
    from mlcls.errors import DataError

    assert check_folds({"k": 5, "fold": 4, "part": "held"}, "D") == {"k": 5, "seed": 0, "fold": 4, "part": "held"}
    for bad, msg in [({"k": 1, "fold": 0, "part": "train"}, "folds.k: expected an integer >= 2"),
                     ({"k": 3, "fold": 3, "part": "train"}, r"folds.fold: expected an integer in 0\.\.2"),
                     ({"k": 3, "fold": 0, "part": "val"}, "folds.part: expected 'train'")]:  # fmt: skip
        with pytest.raises(DataError, match=msg):
            check_folds(bad, "D")
    _ = (csv, json)


def test_the_finder_flags_contradicted_labels_never_unknown_ones(tmp_path):
    # scores that know the truth (as a good out-of-fold model would) against labels with injected errors
    from mlcls.evaluation.label_issues import find_label_issues

    rng = np.random.default_rng(0)
    n, c = 600, 4
    truth = (rng.random((n, c)) < [0.3, 0.2, 0.4, 0.1]).astype(np.int8)
    scores = np.clip(np.where(truth == 1, rng.beta(8, 2, (n, c)), rng.beta(2, 8, (n, c))), 0, 1)
    given = truth.copy()
    dropped = [(i, k) for i, k in zip(*np.nonzero(truth)) if rng.random() < 0.15]
    for i, k in dropped:
        given[i, k] = 0  # a positive the annotator skipped
    given[:40, 0] = -1  # unknown: never flagged, never counted
    res = find_label_issues(scores, given)
    flagged = {(r, k) for r, k, *_ in res["pairs"]}
    assert not any(r < 40 and k == 0 for r, k in flagged)
    assert res["per_class"][0]["known"] == n - 40
    wrong = {(i, k) for i, k in dropped if given[i, k] == 0}
    precision, recall = len(flagged & wrong) / len(flagged), len(flagged & wrong) / len(wrong)
    assert precision >= 0.8 and recall >= 0.6, (precision, recall)
    # most likely errors first: the contradiction weighted by the class's AP; within a class by quality
    weight = [(1 - q) * res["per_class"][k]["ap"] for _, k, *_, q in res["pairs"]]
    assert weight == sorted(weight, reverse=True)
    for k in range(c):
        qualities = [q for _, kk, *_, q in res["pairs"] if kk == k]
        assert qualities == sorted(qualities)
    for r, k, g, s, q in res["pairs"]:
        assert g == given[r, k] and q == pytest.approx(s if g == 1 else 1 - s)


def test_find_label_issues_tool_on_a_folds_run(folds_run, run_tool):
    base, _, _ = folds_run
    r = run_tool("tools/find_label_issues.py", base, "--min-known", "3")
    assert r.returncode == 0, r.stderr
    assert "est. error rate" in r.stdout and "not out-of-fold" not in r.stderr
    rows = list(csv.DictReader((base / "label_issues.csv").open()))
    assert [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))
    assert all((row["kind"] == "missing") == (row["given_label"] == "0") for row in rows)
    oof = load_eval_scores(base / "oof_scores.npz")
    assert {row["path"] for row in rows} <= set(oof.paths)
    # cleanlab's method is the user's: every pair on the wrong side of 0.5 is at least as many
    r = run_tool("tools/find_label_issues.py", base, "--min-known", "3", "--filter-by", "predicted_neq_given", "--out", base / "all.csv")
    assert r.returncode == 0, r.stderr
    wrong_side = list(csv.DictReader((base / "all.csv").open()))
    assert len(wrong_side) >= len(rows) and all((float(w["score"]) > 0.5) == (w["given_label"] == "0") for w in wrong_side)
    # a plain evaluation's scores: said not to be out of sample
    r = run_tool("tools/find_label_issues.py", base / "fold_0" / "heldout_scores.npz", "--out", base / "x.csv")
    assert r.returncode == 0 and "is not out-of-fold" in r.stderr


def test_a_label_issue_list_found_in_other_scores_is_not_reviewed(folds_run, run_tool, tmp_path):
    """The folds were rerun (other labels, fixes): label_issues.csv names pairs of the old scores,
    so the report leaves it out and says why instead of reviewing old flags against new scores."""
    import hashlib
    import shutil

    from mlcls.report.store import save_eval_scores
    from tests.report.conftest import embedded_data

    base, _, _ = folds_run
    d = tmp_path / "cv"
    d.mkdir()
    shutil.copy(base / "oof_scores.npz", d / "oof_scores.npz")
    r = run_tool("tools/find_label_issues.py", d, "--min-known", "3")
    assert r.returncode == 0 and "label_issues.json" in r.stderr, r.stderr
    record = json.loads((d / "label_issues.json").read_text())
    assert record["scores_sha256"] == hashlib.sha256((d / "oof_scores.npz").read_bytes()).hexdigest()
    assert record["labels_sha256"] == json.loads((base / "folds_run.json").read_text())["labels_sha256"]
    assert run_tool("tools/report.py", d).returncode == 0 and "label_issues" in embedded_data(d / "report.html")
    oof = load_eval_scores(d / "oof_scores.npz")
    save_eval_scores(d / "oof_scores.npz", Evaluation(oof.scores.flip(0), oof.targets, oof.paths, oof.classes, oof.thr, oof.meta))
    r = run_tool("tools/report.py", d)
    assert r.returncode == 0 and "no review section" in r.stderr and "was found in other scores" in r.stderr, r.stderr
    assert "label_issues" not in embedded_data(d / "report.html")
    (d / "label_issues.json").unlink()  # a list from before the record: also not reviewed, and said so
    r = run_tool("tools/report.py", d)
    assert "has no record of the scores it was found in" in r.stderr and "label_issues" not in embedded_data(d / "report.html")


def test_label_noise_injection_keeps_the_truth(shapes_root, tmp_path):
    import shutil

    from mlcls.datasets.shapes import inject_label_noise

    for name in ("train.csv", "classes.txt"):
        shutil.copy(shapes_root / name, tmp_path / name)
    noisy = inject_label_noise(tmp_path, "train", missing=0.3, extra=0.1, seed=1)
    clean = {ln.split(",")[0]: set(ln.split(",")[1].split()) for ln in (tmp_path / "train.csv").read_text().splitlines()[1:]}
    given = {ln.split(",")[0]: set(ln.split(",")[1].split()) for ln in noisy.read_text().splitlines()[1:]}
    changes = list(csv.DictReader((tmp_path / "train_noise.csv").open()))
    assert changes and set(clean) == set(given)
    for row in changes:  # every difference is listed, with the true and the given label
        assert (row["class"] in clean[row["path"]]) == (row["true_label"] == "1")
        assert (row["class"] in given[row["path"]]) == (row["given_label"] == "1")
    diff = sum(len(clean[p] ^ given[p]) for p in clean)
    assert diff == len(changes)
    dropped = sum(r["given_label"] == "0" for r in changes)
    assert 0.15 < dropped / sum(len(v) for v in clean.values()) < 0.45


def _verdict(rank: int) -> str:
    """The reviewer of the browser test: a verdict for every flag, known in advance."""
    return ("accept", "reject", "unsure")[rank % 3]


def test_every_flag_is_reviewed_in_the_page_and_its_fixes_equal_the_same_verdicts_written_outside(folds_run, run_tool, tmp_path):
    """The review page holds every flag in the finder's rank, filtered by kind and class a page at a
    time; a reviewer who judges every one of them in the page (real clicks in Chromium) downloads
    exactly the fixes the same verdicts give outside it, and a reload keeps the verdicts."""
    import shutil
    import time

    from tests.report.browser import chromium_or_skip
    from tests.report.conftest import embedded_data

    base, _, _ = folds_run
    d = tmp_path / "cv"
    d.mkdir()
    shutil.copy(base / "oof_scores.npz", d / "oof_scores.npz")
    assert run_tool("tools/find_label_issues.py", d, "--min-known", "3").returncode == 0
    r = run_tool("tools/report.py", d)  # the folds run: its out-of-fold scores and label_issues.csv
    assert r.returncode == 0, r.stderr
    data = embedded_data(d / "report.html")
    issues = list(csv.DictReader((d / "label_issues.csv").open()))
    pairs = data["label_issues"]["pairs"]
    names = load_eval_scores(d / "oof_scores.npz").classes
    assert len(pairs) == len(issues) > 40  # every flag, more than one page of them
    assert [(p["path"], names[p["class"]], p["rank"]) for p in pairs] == [(i["path"], i["class"], int(i["rank"])) for i in issues]
    assert all(p["thumb"].startswith("data:image/jpeg") for p in pairs)
    expected = [{"path": i["path"], "class": i["class"], "label": {"accept": str(1 - int(i["given_label"])), "unsure": "-1"}[_verdict(int(i["rank"]))]}
                for i in issues if _verdict(int(i["rank"])) != "reject"]  # fmt: skip
    with chromium_or_skip(tmp_path / "profile") as b:
        b.open((d / "report.html").as_uri())
        assert b.errors() == []

        def choose(select: str, value: str) -> None:
            b.eval(f"(() => {{ const s = document.getElementById({json.dumps(select)}); s.value = {json.dumps(value)}; "
                   "s.dispatchEvent(new Event('change')); })()")  # fmt: skip

        def review_shown() -> int:
            done = 0
            while True:
                for i in b.eval("[...document.querySelectorAll('#issues-body .issue')].map((e) => +e.id.slice(6))"):
                    b.click(*b.center(f'#issue-{i} [data-d="{_verdict(pairs[i]["rank"])}"]'))
                    done += 1
                if b.eval("document.getElementById('issues-next').disabled"):
                    return done
                b.click(*b.center("#issues-next"))

        reviewed = 0
        for kind in ("missing", "extra"):  # missing flags first, as the docs advise, then the rest
            choose("issues-kind", kind)
            assert b.eval("document.querySelectorAll('#issues-body .issue').length") == min(40, sum(p["kind"] == kind for p in pairs))
            reviewed += review_shown()
        assert reviewed == len(pairs)
        choose("issues-kind", "")
        choose("issues-state", "open")  # nothing left to review
        assert b.eval("document.querySelectorAll('#issues-body .issue').length") == 0
        c = pairs[0]["class"]
        choose("issues-state", "")
        choose("issues-class", str(c))
        assert b.eval("[...document.querySelectorAll('#issues-body .issue')].every((e) => P_class(e))".replace(
            "P_class(e)", f"e.textContent.includes({json.dumps(names[c] + ':')})"))  # fmt: skip
        b.open((d / "report.html").as_uri())  # a reload keeps every verdict
        assert (
            b.eval("document.getElementById('fixes-count').textContent") == f"{len(pairs)} of {len(pairs)} reviewed; {len(expected)} fixes"
        )
        assert b.eval(f"document.querySelector('#issue-0 [data-d=\"{_verdict(pairs[0]['rank'])}\"]').classList.contains('chosen')")
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        b.allow_downloads(downloads)
        b.click(*b.center("#fixes-download"))
        deadline = time.monotonic() + 20
        while not list(downloads.glob("label_fixes*.csv")) and time.monotonic() < deadline:
            time.sleep(0.1)
        rows = list(csv.DictReader(next(downloads.glob("label_fixes*.csv")).open()))
        assert b.errors() == []
    assert sorted(rows, key=lambda r: (r["path"], r["class"])) == sorted(expected, key=lambda r: (r["path"], r["class"]))
    # the downloaded file goes straight back in as label_fixes
    from mlcls.datasets import CSVDataset

    shapes_root = Path(pairs[0]["path"]).parents[2]
    fixed = CSVDataset(
        "train.csv", "classes.txt", data_root=str(shapes_root), check_files=False, label_fixes=str(next(downloads.glob("label_fixes*.csv")))
    )
    assert fixed.label_fixes["rows"] == len(expected) == fixed.label_fixes["applied"]


def test_recall_corrected_counts_the_positives_an_annotator_left_out():
    """A left-out positive scores like the labelled ones, so about half of them score below the
    labelled positives' mean: cleanlab's confident joint counts about half of them; divided by the
    threshold's recall the count is the truth's (a class the scores know, 15 % of positives dropped)."""
    from cleanlab.count import compute_confident_joint

    from mlcls.evaluation.label_issues import recall_corrected_counts

    rng = np.random.default_rng(3)
    n = 4000
    truth = (rng.random(n) < 0.3).astype(int)
    p = np.clip(np.where(truth == 1, rng.beta(6, 3, n), rng.beta(1, 12, n)), 1e-6, 1 - 1e-6)
    y = truth.copy()
    dropped = np.flatnonzero(truth)[rng.random(truth.sum()) < 0.15]
    y[dropped] = 0
    cj = compute_confident_joint(y, np.stack([1 - p, p], 1), calibrate=False)
    missing, extra = recall_corrected_counts(y, p)
    assert abs(missing - len(dropped)) <= 0.1 * len(dropped), (missing, len(dropped))
    assert cj[0, 1] < 0.7 * len(dropped)  # what the confident joint alone sees
    assert extra <= 0.02 * y.sum()  # no positive was added


def test_min_class_ap_leaves_out_classes_the_model_has_not_learned():
    from sklearn.metrics import average_precision_score

    from mlcls.evaluation.label_issues import find_label_issues

    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < 0.3).astype(int)
    s = np.stack([np.clip(y[:, 0] * 0.8 + rng.normal(0.1, 0.1, 400), 0.05, 0.95), rng.random(400)], axis=1)  # class 1: unlearned
    y[np.flatnonzero(y[:, 0])[::8], 0] = 0  # class 0: positives the annotator skipped, which the scores contradict
    res = find_label_issues(s, y, min_class_ap=0.7)
    assert [r["ap"] for r in res["per_class"]] == pytest.approx([average_precision_score(y[:, c], s[:, c]) for c in range(2)])
    assert res["skipped"] == [1] and res["per_class"][1]["unlearned"] and all(c == 0 for _, c, *_ in res["pairs"])
    ranked = find_label_issues(s, y)["pairs"]
    assert 1 in {c for _, c, *_ in ranked}  # without the floor its flags are there...
    # ...ranked after the learned class's: its lowest qualities are noise, not contradictions
    classes = [c for _, c, *_ in ranked]
    assert classes[: classes.count(0)] == [0] * classes.count(0)
    assert min(q for _, c, *_, q in ranked if c == 1) < min(q for _, c, *_, q in ranked if c == 0)  # quality alone: class 1 first


def test_filter_by_flags_what_cleanlab_flags_per_class_with_that_method():
    from cleanlab.filter import find_label_issues as cleanlab_filter

    from mlcls.evaluation.label_issues import find_label_issues

    rng = np.random.default_rng(1)
    truth = (rng.random((500, 3)) < [0.4, 0.25, 0.15]).astype(int)
    s = np.clip(np.where(truth == 1, rng.beta(5, 2, truth.shape), rng.beta(2, 5, truth.shape)), 1e-6, 1 - 1e-6)
    given = np.where(rng.random(truth.shape) < 0.1, 1 - truth, truth)
    counts = {}
    for method in ("prune_by_noise_rate", "confident_learning", "predicted_neq_given"):
        flagged = {(r, c) for r, c, *_ in find_label_issues(s, given, filter_by=method)["pairs"]}
        want = {(int(r), c) for c in range(3) for r in np.flatnonzero(
            cleanlab_filter(labels=given[:, c], pred_probs=np.stack([1 - s[:, c], s[:, c]], 1), filter_by=method))}  # fmt: skip
        assert flagged == want, method
        counts[method] = len(flagged)
    # recall_corrected: cleanlab's prune_by_class told how many pairs of each given label to flag
    flagged = {(r, c) for r, c, *_ in find_label_issues(s, given, filter_by="recall_corrected")["pairs"]}
    want = set()
    for c in range(3):
        y, p = given[:, c], s[:, c]
        t1, t0 = p[y == 1].mean(), (1 - p[y == 0]).mean()  # cleanlab's thresholds: each label's mean self-confidence
        n_missing = round((p[y == 0] >= t1).sum() / (p[y == 1] >= t1).mean())
        n_extra = round(((1 - p[y == 1]) >= t0).sum() / ((1 - p[y == 0]) >= t0).mean())
        mask = cleanlab_filter(
            labels=y, pred_probs=np.stack([1 - p, p], 1), filter_by="prune_by_class", num_to_remove_per_class=[n_missing, n_extra]
        )
        want |= {(int(r), c) for r in np.flatnonzero(mask)}
    assert flagged == want and len(flagged) > 0
    # the methods differ: every pair on the wrong side of 0.5 is the most
    assert counts["predicted_neq_given"] > counts["prune_by_noise_rate"] >= counts["confident_learning"]
    with pytest.raises(ValueError, match="filter_by: expected one of prune_by_noise_rate"):
        find_label_issues(s, given, filter_by="low_self_confidence")


def _never_train(c, resume):
    raise AssertionError(f"trained {c['work_dir']}: the run should have been refused first")


def _snapshot(base: Path) -> dict:
    return {str(p.relative_to(base)): p.stat().st_mtime_ns for p in sorted(base.rglob("*"))}


def test_resume_after_adding_label_fixes_is_refused_and_changes_nothing(folds_run, shapes_root, tmp_path):
    """A 0 -> -1 fix leaves the stratification (and folds.csv) as it was: the finished folds were
    trained on the old labels, so resuming would mix two sets of labels in oof_scores.npz."""
    from mlcls.apis.folds import run_folds
    from mlcls.errors import ConfigError

    base, _, _ = folds_run
    oof = load_eval_scores(base / "oof_scores.npz")
    row = int(np.flatnonzero((oof.targets == 0).any(1).numpy())[0])
    c = int(np.flatnonzero(oof.targets[row].numpy() == 0)[0])
    rel = Path(oof.paths[row]).relative_to(shapes_root)
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(f"path,class,label\n{rel},{oof.classes[c]},-1\n")
    cfg = tiny_config(shapes_root, base, max_epochs=1)
    cfg["train_dataloader"]["dataset"]["label_fixes"] = str(fixes)
    before = _snapshot(base)
    with pytest.raises(ConfigError, match=r"the training labels differ from those the run .* started with .*fixes\.csv"):
        run_folds(cfg, 3, _never_train, resume=True)
    # a run from before folds_run.json: each finished fold's held-out labels are compared instead
    record = (base / "folds_run.json").read_bytes()
    (base / "folds_run.json").unlink()
    try:
        with pytest.raises(ConfigError, match=r"heldout_scores\.npz holds other labels than the training set now"):
            run_folds(cfg, 3, _never_train, resume=True)
    finally:
        (base / "folds_run.json").write_bytes(record)
    assert _snapshot(base) == {**before, "folds_run.json": (base / "folds_run.json").stat().st_mtime_ns}
    # without fixes the run is the one it was: resuming keeps every fold
    assert run_folds(tiny_config(shapes_root, base, max_epochs=1), 3, _never_train, resume=True)["folds"] == 3


def test_a_refused_folds_run_changes_nothing_and_overwrite_removes_every_old_fold(folds_run, shapes_root, tmp_path):
    from mlcls.apis.folds import run_folds
    from mlcls.errors import ConfigError

    base, _, _ = folds_run
    before = _snapshot(base)
    with pytest.raises(ConfigError, match=r"already holds a folds run \(fold_0, fold_1, fold_2, folds\.csv.*--overwrite"):
        run_folds(tiny_config(shapes_root, base, max_epochs=1), 2, _never_train)
    assert _snapshot(base) == before  # folds.csv not replaced: the 3-fold run can still be resumed
    # --overwrite of a 5-fold run by a 2-fold one: fold_2..fold_4 and the old scores go before any training
    old = tmp_path / "cv"
    for k in range(5):
        (old / f"fold_{k}").mkdir(parents=True)
        (old / f"fold_{k}" / "heldout_scores.npz").write_bytes(b"old")
    for name in ("folds.csv", "oof_scores.npz", "label_issues.csv", "folds_summary.json"):
        (old / name).write_text("old")

    def stop(c, resume):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_folds(tiny_config(shapes_root, old, max_epochs=1), 2, stop, overwrite=True)
    assert sorted(p.name for p in old.iterdir()) == ["folds.csv", "folds_run.json"]
    assert json.loads((old / "folds_run.json").read_text())["folds"] == 2


def test_folds_refuse_a_val_split_that_reads_the_training_samples(shapes_root, tmp_path):
    from mlcls.apis.folds import run_folds
    from mlcls.errors import ConfigError

    cfg = tiny_config(shapes_root, tmp_path / "cv", max_epochs=1)
    cfg["val_dataloader"]["dataset"]["ann_file"] = str(shapes_root / "train.csv")
    with pytest.raises(ConfigError, match=r"--folds: train_dataloader and val_dataloader read the same samples .* its own held-out"):
        run_folds(cfg, 3, _never_train)
    assert not (tmp_path / "cv").exists()


def test_an_interrupted_fold_with_only_an_epoch_checkpoint_resumes_and_rare_classes_are_named(shapes_root, tmp_path, mlcls_log):
    from mlcls.apis.folds import run_folds

    calls = []

    def stop(c, resume):
        calls.append((Path(c["work_dir"]).name, resume))
        Path(c["work_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(c["work_dir"]) / "epoch_1.pth").write_bytes(b"a checkpoint")  # latest.pth lost, an epoch file kept
        raise KeyboardInterrupt

    cfg = tiny_config(shapes_root, tmp_path / "cv", max_epochs=1)
    with pytest.raises(KeyboardInterrupt):
        run_folds(cfg, 40, stop)
    counts = {c: int(n) for c, n in zip(*np.unique([x for ln in (shapes_root / "train.csv").read_text().splitlines()[1:]
                                                    for x in ln.split(",")[1].split()], return_counts=True))}  # fmt: skip
    assert "have fewer positives than folds" in mlcls_log.text
    assert all(f"{c} ({n})" in mlcls_log.text for c, n in counts.items() if n < 40)
    assert "fold 1 of 40: training on" in mlcls_log.text
    with pytest.raises(KeyboardInterrupt):
        run_folds(cfg, 40, stop, resume=True)
    assert calls == [("fold_0", False), ("fold_0", True)]  # resumed from epoch_1.pth, not refused as a new run


def test_a_folds_csv_edited_into_latin1_is_one_error_on_resume(folds_run, shapes_root, tmp_path):
    from mlcls.apis.folds import run_folds
    from mlcls.errors import ConfigError

    base, _, _ = folds_run
    d = tmp_path / "cv"
    d.mkdir()
    (d / "folds.csv").write_bytes((base / "folds.csv").read_bytes() + "caf\xe9.png,0\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"folds\.csv: not UTF-8 text .* was it edited\?"):
        run_folds(tiny_config(shapes_root, d, max_epochs=1), 3, _never_train, resume=True)


def test_the_finder_keeps_cleanlabs_warnings_and_guards_formula_cells(folds_run, run_tool, tmp_path):
    """cleanlab's RuntimeWarning (divide by zero on tiny classes) no longer reaches the user; a class
    named like a formula is written with a leading ' and read back as itself by label_fixes."""
    from mlcls.datasets.label_fixes import read_label_fixes, read_label_issues
    from mlcls.report.store import save_eval_scores

    base, _, _ = folds_run
    oof = load_eval_scores(base / "oof_scores.npz")
    classes = ["=HYPERLINK(1)", *oof.classes[1:]]
    save_eval_scores(tmp_path / "oof_scores.npz", Evaluation(oof.scores, oof.targets, oof.paths, classes, oof.thr, oof.meta))
    r = run_tool("tools/find_label_issues.py", tmp_path / "oof_scores.npz", "--min-known", "1")
    assert r.returncode == 0 and "Warning" not in r.stderr and "divide by zero" not in r.stderr, r.stderr
    text = (tmp_path / "label_issues.csv").read_text()
    assert ",=HYPERLINK" not in text
    flags = read_label_issues(str(tmp_path / "label_issues.csv"), classes)
    formula = [f for f in flags if f["class"] == 0]
    assert formula and text.count(",'=HYPERLINK(1),") == len(formula)  # guarded, and read back as the class itself
    fixes = tmp_path / "fixes.csv"  # the page's export guards the same way; label_fixes reads it back
    fixes.write_text(f"path,class,label\n{formula[0]['path']},'=HYPERLINK(1),-1\n")
    got = read_label_fixes(str(fixes), np.array([p.encode() for p in oof.paths]), classes)
    assert got.entries == [[formula[0]["path"], "=HYPERLINK(1)", -1]]


@pytest.mark.parametrize("policy", ["missing_ignore", "all"])
def test_the_finder_writes_the_fixes_of_a_policy_that_train_without_review(policy, folds_run, shapes_root, run_tool, tmp_path):
    import shutil

    from mlcls.datasets import CSVDataset

    base, _, _ = folds_run
    shutil.copy(base / "oof_scores.npz", tmp_path / "oof_scores.npz")
    r = run_tool("tools/find_label_issues.py", tmp_path, "--min-known", "3", "--write-fixes", policy)
    assert r.returncode == 0 and f"label_fixes: {tmp_path / f'label_fixes_{policy}.csv'}" in r.stderr, r.stderr
    flags = list(csv.DictReader((tmp_path / "label_issues.csv").open()))
    fixes = list(csv.DictReader((tmp_path / f"label_fixes_{policy}.csv").open()))
    if policy == "missing_ignore":
        expected = [(f["path"], f["class"], "-1") for f in flags if f["kind"] == "missing"]
    else:
        expected = [(f["path"], f["class"], str(1 - int(f["given_label"]))) for f in flags]
    assert [(f["path"], f["class"], f["label"]) for f in fixes] == expected and expected
    ds = CSVDataset("train.csv", "classes.txt", data_root=str(shapes_root), check_files=False,
                    label_fixes=str(tmp_path / f"label_fixes_{policy}.csv"))  # fmt: skip
    assert ds.label_fixes["applied"] == len(expected)


def test_single_positive_labels_and_partial_annotation_noise(shapes_root, tmp_path):
    import shutil

    from mlcls.datasets import CSVDataset
    from mlcls.datasets.shapes import inject_label_noise

    for name in ("train.csv", "classes.txt"):
        shutil.copy(shapes_root / name, tmp_path / name)
    single = inject_label_noise(tmp_path, "train", single=True, seed=1, name="single")
    clean = {ln.split(",")[0]: set(ln.split(",")[1].split()) for ln in (tmp_path / "train.csv").read_text().splitlines()[1:]}
    given = {ln.split(",")[0]: set(ln.split(",")[1].split()) for ln in single.read_text().splitlines()[1:]}
    assert all(len(given[p]) == (1 if clean[p] else 0) and given[p] <= clean[p] for p in clean)
    assert (tmp_path / "single_noise.csv").is_file()
    inject_label_noise(tmp_path, "train", unknown=0.3, seed=1, name="partial")
    ds = CSVDataset("partial.csv", "classes.txt", data_root=str(tmp_path), check_files=False, label_fixes="partial_unknown_fixes.csv")
    share = float((ds.dense_targets(range(len(ds))) == -1).mean())
    assert 0.2 < share < 0.4
