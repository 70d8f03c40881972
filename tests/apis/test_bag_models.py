"""A model of samples made of many images through everything downstream: training, tools/test.py
(AUROC, confidence intervals, report), inference on volumes and folders, TTA, ONNX/TorchScript
export with a free slice count, and exact resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def bag_config(root: Path, work_dir: Path, views=("sagittal",), mode="gated_attention", **train_cfg) -> dict:
    pipe = [{"type": "ToFloatNormalize", "mean": [0.35] * 3, "std": [0.1] * 3}]
    train_pipe = [{"type": "RandomHorizontalFlip"}, *pipe]

    def loader(split, pipeline, shuffle):
        ds = {
            "type": "MRNetDataset",
            "data_root": str(root),
            "split": split,
            "views": list(views),
            "pipeline": pipeline,
            "max_instances": 6,
        }
        return {"batch_size": 4, "num_workers": 0, "sampler": {"type": "DefaultSampler", "shuffle": shuffle}, "dataset": ds}

    return {
        "model": {
            "type": "ImageClassifier", "views": list(views), "backbone": {"type": "ResNet", "depth": 18},
            "neck": {"type": "InstancePooling", "mode": mode},
            "head": {"type": "MultiLabelLinearClsHead", "loss": {"type": "BCEWithLogitsLoss", "pos_weight": "auto"}},
        },  # fmt: skip
        "train_dataloader": loader("train", train_pipe, True),
        "val_dataloader": loader("valid", pipe, False),
        "test_dataloader": loader("valid", pipe, False),
        "val_evaluator": {"type": "MultiLabelMetric"},
        "optimizer": {"type": "AdamW", "lr": 1e-3},
        "train_cfg": {"max_epochs": 1, **train_cfg},
        "default_hooks": {"logger": {"type": "LoggerHook", "interval": 2, "progress_bar": False},
                          "checkpoint": {"type": "CheckpointHook", "interval": 1, "save_best": "mAUROC"}},  # fmt: skip
        "work_dir": str(work_dir), "seed": 0, "deterministic": True, "device": "cpu",
    }  # fmt: skip


@pytest.fixture(scope="module")
def mrnet_root(tmp_path_factory) -> Path:
    from mlcls.datasets.mrnet import make_mrnet_demo

    return make_mrnet_demo(tmp_path_factory.mktemp("mrnet"), seed=0, exams={"train": 24, "valid": 16}, slices=(4, 9))


@pytest.fixture(scope="module")
def bag_ckpt(mrnet_root, tmp_path_factory) -> Path:
    from mlcls.apis import train_model

    wd = tmp_path_factory.mktemp("bagrun") / "run"
    metrics = train_model(bag_config(mrnet_root, wd, views=("sagittal", "coronal")))
    assert {"mAUROC", "mSpec", "AUROC"} <= set(metrics)
    return wd / "best.pth"


def test_test_tool_reports_auroc_intervals_and_a_report(bag_ckpt, tmp_path, run_tool):
    # val and test read the same exams (split: valid) under other names: tuning there is refused ...
    r = run_tool("tools/test.py", bag_ckpt, "--work-dir", tmp_path / "x", "--tune-thr", "specificity", "--tune-target", "0.8")
    assert r.returncode == 2 and "refusing to tune thresholds on the samples reported on" in r.stderr
    assert "val_dataloader and test_dataloader read the same samples" in r.stderr
    out = tmp_path / "t"
    r = run_tool("tools/test.py", bag_ckpt, "--work-dir", out, "--ci", "40", "--tune-thr", "specificity", "--tune-target", "0.8",
                 "--tune-split", "val", "--allow-same-split")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "mAUROC" in r.stdout and "95% bootstrap CI (40 resamples of the samples, seed 0): mAP [" in r.stdout
    res = json.loads((out / "test_metrics.json").read_text())
    # ... and, when allowed, said in the JSON and the page's header: thresholds and best.pth were chosen there
    assert [w.split(":")[0] for w in res["same_samples"]] == [
        "thresholds tuned on them",
        "the checkpoint was selected on them (best mAUROC)",
    ]
    from tests.report.conftest import embedded_data

    assert embedded_data(out / "report.html")["meta"]["same_samples"] == res["same_samples"]
    assert res["ci"]["resamples"] == 40 and set(res["ci"]["summary"]) == {"mAP", "mAUROC", "CF1", "OF1"}
    rows = {row["class"]: row for row in res["per_class"]}
    assert set(rows) == {"abnormal", "acl", "meniscus"} and all("AUROC_ci" in row and "spec" in row for row in rows.values())
    lo, hi = res["ci"]["summary"]["mAUROC"]
    assert lo <= res["mAUROC"] <= hi
    html = (out / "report.html").read_text()
    assert "mean ROC AUC" in (Path(__file__).parents[2] / "mlcls" / "report" / "assets" / "report.js").read_text()
    assert "data:image/jpeg;base64," in html  # a slice stands for each exam in the galleries
    # ... a slice of the model's first view (sagittal), never a view picked from the disk (axial
    # comes first by name there), captioned with the exam, the view and the slice
    from mlcls.report.html import thumbnail
    from tests.report.conftest import embedded_data

    images = embedded_data(out / "report.html")["images"]
    assert images
    for entry in images.values():
        assert "{view}" in entry["file"]
        exam = Path(entry["file"]).stem
        sagittal = np.load(Path(entry["file"].replace("{view}", "sagittal")))
        assert entry["caption"] == f"{exam}: sagittal, slice {sagittal.shape[0] // 2} of 0-{sagittal.shape[0] - 1}"
        assert entry["thumb"] == thumbnail(entry["file"].replace("{view}", "sagittal"))[0]
        assert entry["thumb"] != thumbnail(entry["file"].replace("{view}", "axial"))[0]
    # report.py has no model to ask for evidence slices: it keeps test.py's page and writes its own beside it
    page = (out / "report.html").read_bytes()
    r = run_tool("tools/report.py", out)
    assert r.returncode == 0 and "kept, and this page written to report_from_scores.html" in r.stderr, r.stderr
    assert (out / "report.html").read_bytes() == page and (out / "report_from_scores.html").is_file()
    assert f"wrote {out / 'report_from_scores.html'}" in r.stdout
    # --out rows name each exam and its real files
    r = run_tool("tools/test.py", bag_ckpt, "--work-dir", tmp_path / "t2", "--no-report", "--out", tmp_path / "s.csv", "--allow-same-split")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(rows) == 16 and not any("{view}" in v for row in rows for v in row.values())
    assert rows[0]["image"].endswith("valid/0000")
    assert [rows[0][f"file_{v}"] for v in ("sagittal", "coronal")] == [
        rows[0]["image"].replace("valid/", f"valid/{v}/") + ".npy" for v in ("sagittal", "coronal")
    ]


def test_inference_on_volumes_folders_and_views(bag_ckpt, mrnet_root, tmp_path, run_tool):
    from mlcls.apis import inference_model, init_model

    model = init_model(None, bag_ckpt)
    exam = {v: str(mrnet_root / "valid" / v / "0003.npy") for v in ("sagittal", "coronal")}
    a = inference_model(model, exam)
    # the same exam as arrays and as folders of PNG slices
    arrays = {v: np.load(p) for v, p in exam.items()}
    folders = {}
    for v, arr in arrays.items():
        folders[v] = tmp_path / v
        folders[v].mkdir()
        for k, sl in enumerate(arr):
            Image.fromarray(sl).save(folders[v] / f"im{k}.png")
    b = inference_model(model, arrays)
    c = inference_model(model, {v: str(f) for v, f in folders.items()})
    assert a["scores"] == b["scores"] == c["scores"] and set(a["scores"]) == {"abnormal", "acl", "meniscus"}
    flip = inference_model(model, exam, tta="flip")
    assert flip["scores"] != a["scores"]
    from mlcls.errors import DataError

    with pytest.raises(DataError, match=r"reads the views \['sagittal', 'coronal'\]"):
        inference_model(model, exam["sagittal"])


def test_infer_tool_over_a_folder_of_volumes(mrnet_root, tmp_path, run_tool):
    """A single-view model: each .npy under the folder is one exam."""
    from mlcls.apis import train_model

    wd = tmp_path / "one"
    train_model(bag_config(mrnet_root, wd, views=("axial",), mode="max"))
    r = run_tool("tools/infer.py", wd / "latest.pth", mrnet_root / "valid" / "axial", "--out", tmp_path / "p.csv", "--workers", "0")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 17 and lines[1].startswith(str(mrnet_root / "valid" / "axial" / "0000.npy"))
    # the split folder, laid out by view: one row per exam, read from the model's view only
    r = run_tool("tools/infer.py", wd / "latest.pth", mrnet_root / "valid", "--out", tmp_path / "split.csv", "--workers", "0")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "split.csv").open()))
    assert len(rows) == 16 and "16 exams predicted, 0 skipped" in r.stderr
    assert rows[3]["image"] == str(mrnet_root / "valid" / "0003") and rows[3]["file_axial"] == str(
        mrnet_root / "valid" / "axial" / "0003.npy"
    )
    assert not any("sagittal" in v or "coronal" in v for row in rows for v in row.values())
    # an exam that only other views hold is reported as missing the model's view, not dropped:
    # in the by-view layout (no axial/0099.npy) and in one folder per exam (only coronal.npy)
    import shutil

    split = tmp_path / "split"
    for v in ("axial", "coronal"):
        shutil.copytree(mrnet_root / "valid" / v, split / v)
    shutil.copy(split / "coronal" / "0000.npy", split / "coronal" / "0099.npy")
    r = run_tool("tools/infer.py", wd / "latest.pth", split, "--out", tmp_path / "s2.csv", "--workers", "0")
    assert r.returncode == 0 and "16 exams predicted, 1 skipped" in r.stderr and str(split / "axial" / "0099.npy") in r.stderr, r.stderr
    per_exam = tmp_path / "per_exam"
    for name, view in (("a", "axial"), ("b", "coronal")):
        (per_exam / name).mkdir(parents=True)
        shutil.copy(mrnet_root / "valid" / "axial" / "0000.npy", per_exam / name / f"{view}.npy")
    r = run_tool("tools/infer.py", wd / "latest.pth", per_exam, "--out", tmp_path / "s3.csv", "--workers", "0")
    assert r.returncode == 0 and "1 exams predicted, 1 skipped" in r.stderr and str(per_exam / "b" / "axial.npy") in r.stderr, r.stderr
    # nothing predicted is a failure: an empty folder, a folder without volumes
    (tmp_path / "empty").mkdir()
    r = run_tool("tools/infer.py", wd / "latest.pth", tmp_path / "empty", "--workers", "0")
    assert r.returncode == 2 and "none of the 1 exams could be predicted" in r.stderr and "nor volumes (.npy, .npz)" in r.stderr


def test_infer_tool_predicts_exams_with_all_the_model_views(bag_ckpt, mrnet_root, tmp_path, run_tool):
    # a two-view model on MRNet's release folder: one row per exam and split, each with both views' files
    r = run_tool("tools/infer.py", bag_ckpt, mrnet_root, "--out", tmp_path / "p.jsonl", "--workers", "0")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 24 + 16 and "skipped" not in r.stderr.split("predicted")[0]
    assert rows[0]["image"] == str(mrnet_root / "train" / "0000")
    assert rows[0]["files"] == {v: str(mrnet_root / "train" / v / "0000.npy") for v in ("sagittal", "coronal")}
    # an exam without one of the views is named, not predicted from the other one
    (tmp_path / "split" / "sagittal").mkdir(parents=True)
    (tmp_path / "split" / "coronal").mkdir()
    for v in ("sagittal", "coronal"):
        (tmp_path / "split" / v / "0001.npy").write_bytes((mrnet_root / "valid" / v / "0001.npy").read_bytes())
    (tmp_path / "split" / "sagittal" / "0002.npy").write_bytes((mrnet_root / "valid" / "sagittal" / "0002.npy").read_bytes())
    r = run_tool("tools/infer.py", bag_ckpt, tmp_path / "split", "--workers", "0")
    assert r.returncode == 0 and "1 exams predicted, 1 skipped" in r.stderr
    assert str(tmp_path / "split" / "coronal" / "0002.npy") in r.stderr
    r = run_tool("tools/infer.py", bag_ckpt, tmp_path / "split" / "coronal", "--workers", "0")
    assert r.returncode == 2 and "no exams with the views ['sagittal', 'coronal'] found" in r.stderr


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_with_a_free_slice_count(bag_ckpt, tmp_path, fmt):
    from mlcls.apis.export import export_model

    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    summary = export_model(bag_ckpt, fmt, out, verify=True)
    assert set(summary["verify"]) == {"slices_5", "slices_12"} and max(summary["verify"].values()) < 1e-4
    meta = json.loads(out.with_name("m.json").read_text())
    assert meta["input"]["inputs"] == ["instances_sagittal", "instances_coronal"] and meta["input"]["slices"] == "dynamic"
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out))
        probs = sess.run(
            None, {"instances_sagittal": np.zeros((3, 3, 32, 32), np.float32), "instances_coronal": np.zeros((20, 3, 32, 32), np.float32)}
        )[0]
        assert probs.shape == (1, 3)


def test_resume_of_a_bag_model_is_exact(mrnet_root, tmp_path):
    from mlcls.apis import train_model
    from mlcls.utils.checkpoint import load_checkpoint

    full = bag_config(mrnet_root, tmp_path / "full", mode="lse", max_epochs=2)
    train_model(full)
    train_model(bag_config(mrnet_root, tmp_path / "half", mode="lse", max_epochs=1))
    train_model(bag_config(mrnet_root, tmp_path / "half", mode="lse", max_epochs=2), resume="auto")  # as from the YAML file again
    a, b = (load_checkpoint(tmp_path / d / "latest.pth")["state_dict"] for d in ("full", "half"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_amp_ema_and_instance_checkpointing_train_a_bag_model(mrnet_root, tmp_path):
    from mlcls.apis import test_model, train_model

    cfg = bag_config(mrnet_root, tmp_path / "amp", views=("sagittal", "axial"), mode="mean", amp=True)
    cfg["model"].update({"separate_backbones": True, "instance_chunk": 2, "checkpoint_instances": True})
    for split in ("train", "val", "test"):
        cfg[f"{split}_dataloader"]["dataset"]["max_instances"] = 4  # still two chunks per view
    # bf16 autocast is emulated on CPUs without native bf16 (ResNet-18: ~10x its fp32 time on the
    # 2-core CI machine); timm's tiny test ResNet runs the same autocast path in seconds
    cfg["model"]["backbone"] = {"type": "TimmBackbone", "model_name": "test_resnet"}
    cfg["ema"] = {"decay": 0.9}
    metrics = train_model(cfg)
    assert all(np.isfinite(metrics[k]) for k in ("mAP", "mAUROC"))
    m = test_model(None, str(tmp_path / "amp" / "latest.pth"), work_dir=str(tmp_path / "t"), tta="flip")
    assert m["thresholds_source"] and "hflip" in m["report"] and len(m["AUROC"]) == 3


def _ddp_bag_worker(rank: int, world: int, root: str, work_dir: str) -> None:
    from mlcls.apis import train_model

    metrics = train_model(bag_config(Path(root), Path(work_dir), views=("sagittal", "coronal"), mode="attention"), launcher="none")
    Path(work_dir, f"rank{rank}.json").write_text(json.dumps({"mAUROC": metrics["mAUROC"], "num_samples": metrics["num_samples"]}))


def test_two_real_ddp_processes_train_and_evaluate_a_bag_model(mrnet_root, tmp_path):
    from tests.ddp import spawn

    spawn(_ddp_bag_worker, 2, (str(mrnet_root), str(tmp_path / "wd")))
    a, b = (json.loads((tmp_path / "wd" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert a == b and a["num_samples"] == 16  # every validation exam scored once, the same metrics on both ranks


@pytest.fixture(scope="module")
def acl_model(tmp_path_factory):
    """One model per task, as the MRNet paper trains them: ACL on the sagittal view, max over slices,
    on generated exams whose finding slices are known (findings.json)."""
    from mlcls.apis import train_model
    from mlcls.datasets.mrnet import make_mrnet_demo

    root = make_mrnet_demo(tmp_path_factory.mktemp("acl"), seed=0, exams={"train": 64, "valid": 40}, slices=(6, 9))
    cfg = bag_config(root, tmp_path_factory.mktemp("aclrun") / "run", views=("sagittal",), mode="max", max_epochs=3)
    for split in ("train", "val", "test"):
        cfg[f"{split}_dataloader"]["dataset"].update(classes=["acl"], max_instances=None)
    cfg["val_dataloader"]["dataset"].update(split="train", holdout={"fraction": 0.2, "part": "val"})
    cfg["train_dataloader"]["dataset"]["holdout"] = {"fraction": 0.2, "part": "train"}
    train_model(cfg)
    return root, Path(cfg["work_dir"]) / "best.pth"


def test_the_evidence_slice_is_a_finding_slice(acl_model, tmp_path, run_tool):
    from mlcls.apis import inference_model, init_model

    root, ckpt = acl_model
    truth = json.loads((root / "findings.json").read_text())
    labels = [int(line.split(",")[1]) for line in (root / "valid-acl.csv").read_text().split()]
    model = init_model(None, ckpt)
    files = [str(root / "valid" / "sagittal" / f"{i:04d}.npy") for i in range(40)]
    results = inference_model(model, files, evidence=True)
    detected = [i for i, r in enumerate(results) if labels[i] and "acl" in r["labels"]]
    assert len(detected) >= 0.8 * sum(labels)  # the model finds the tears, so its evidence means something
    hits = 0
    for i in detected:
        bar = next(f for f in truth[f"valid/sagittal/{i:04d}.npy"] if f["kind"] == "bar")
        ev = results[i]["evidence"]
        hits += ev["per_class"]["acl"]["slice"] in bar["slices"]
        slices = ev["slices"]["sagittal"]
        assert [s["slice"] for s in slices] == list(range(np.load(files[i]).shape[0]))  # every slice, numbered as in the volume
        assert ev["per_class"]["acl"]["score"] == max(s["scores"]["acl"] for s in slices)
    assert hits >= 0.8 * len(detected), (hits, len(detected))
    # tools/infer.py --evidence: the view:slice per class in the CSV
    r = run_tool("tools/infer.py", ckpt, root / "valid", "--evidence", "--out", tmp_path / "e.csv", "--workers", "0")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert [row["evidence_acl"] for row in rows] == [f"sagittal:{results[i]['evidence']['per_class']['acl']['slice']}" for i in range(40)]
    # the report's galleries show each exam by its evidence slice, and hold every slice's score
    out = tmp_path / "t"
    assert run_tool("tools/test.py", ckpt, "--work-dir", out).returncode == 0
    from tests.report.conftest import embedded_data

    images = embedded_data(out / "report.html")["images"]
    shown = [e for e in images.values() if e.get("evidence")]
    assert shown and all(e["evidence"]["0"]["caption"].endswith("the evidence for acl") for e in shown)
    for e in shown:
        ev = e["evidence"]["0"]
        assert e["slices"]["sagittal"]["index"][ev["slice"]] == ev["slice"] and len(e["slices"]["sagittal"]["thumbs"]) == len(
            e["slices"]["sagittal"]["scores"]
        )
    # tools/vis_predictions.py: exams drawn by their evidence slice, with Grad-CAM on that slice
    r = run_tool("tools/vis_predictions.py", "-", ckpt, "--split", "test", "--cam", "acl", "--num", "4", "--out", tmp_path / "g.png")
    assert r.returncode == 0, r.stderr
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size[0] > 300
    from mlcls.apis.visualize import slice_grad_cam
    from mlcls.datasets.bags import pack

    i = detected[0]
    vol = torch.from_numpy(np.load(files[i]))[:, None].expand(-1, 3, -1, -1)
    bags = pack([{"sagittal": model.info.pipeline(vol)}])
    k = results[i]["evidence"]["per_class"]["acl"]["slice"]
    cam = slice_grad_cam(model, bags, "sagittal", k, 0)
    assert cam.shape == vol.shape[-2:] and float(cam.max()) == 1.0
    # in a real browser: a click on an exam shows its slices with their scores, the evidence outlined
    from tests.report.browser import chromium_or_skip

    with chromium_or_skip(tmp_path / "profile") as b:
        b.open((out / "report.html").as_uri())
        assert b.errors() == []
        first = b.eval("document.querySelector('.thumb.exam .note').parentElement.children[2].textContent")
        assert first.endswith("the evidence for acl")
        b.click(*b.center(".thumb.exam img"))
        n = b.eval("document.querySelectorAll('#exam-slices .slice').length")
        assert n >= 6 and b.eval("document.querySelectorAll('#exam-slices .slice.evidence').length") == 1
        assert "each slice's score for acl" in b.eval("document.querySelector('#exam-slices h3').textContent")
        assert b.errors() == []


def test_folds_on_exams_keep_the_evidence_slice_that_the_review_shows(mrnet_root, tmp_path, run_tool):
    """--folds on exams of two views: each out-of-fold score keeps the view and slice that carried
    it (those of the fold model that scored the exam), and the review of suspected label errors
    shows an exam by that slice, not by its middle one."""
    from mlcls.apis import init_model, train_model
    from mlcls.apis.folds import oof_rows_of, run_folds
    from mlcls.apis.inference import bag_evidence
    from mlcls.datasets.bags import bag_input, load_bag
    from mlcls.report.store import load_eval_scores
    from tests.report.conftest import embedded_data

    cfg = bag_config(mrnet_root, tmp_path / "cv", views=("sagittal", "coronal"), mode="max")
    cfg["model"]["backbone"] = {"type": "TimmBackbone", "model_name": "test_resnet"}  # small: the folds' training is not the point
    run_folds(cfg, 2, lambda c, resume: train_model(c))
    oof = load_eval_scores(tmp_path / "cv" / "oof_scores.npz")
    ev, views = oof.evidence, oof.meta["views"]
    assert views == ["sagittal", "coronal"] and ev is not None and (ev["slice"] >= 0).all()
    fold_of = oof_rows_of(tmp_path / "cv" / "folds.csv")
    models = [init_model(None, tmp_path / "cv" / f"fold_{k}" / "latest.pth") for k in range(2)]
    classes = oof.classes
    for i in (0, 5, 13):  # the fold model that scored the exam says the same
        path = oof.paths[i]
        best = bag_evidence(models[fold_of[path]], [bag_input(path, views)])[0]["per_class"]
        assert [(views.index(best[c]["view"]), best[c]["slice"]) for c in classes] == [
            (int(ev["view"][i, c]), int(ev["slice"][i, c])) for c in range(len(classes))
        ]
    # a pair whose evidence is not the middle slice, under review
    i, c = next((i, c) for i in range(len(oof.paths)) for c in range(len(classes))
                if ev["slice"][i, c] != load_bag(oof.paths[i].replace("{view}", views[ev["view"][i, c]])).shape[0] // 2)  # fmt: skip
    path, view, k = oof.paths[i], views[ev["view"][i, c]], int(ev["slice"][i, c])
    (tmp_path / "cv" / "label_issues.csv").write_text(
        f"path,class,given_label,score,quality,kind,rank\n{path},{classes[c]},0,0.9,0.1,missing,1\n"
    )
    from mlcls.report.store import issues_record
    from mlcls.utils.misc import write_json

    scores_file = tmp_path / "cv" / "oof_scores.npz"  # the record that says which scores the list was found in
    write_json(issues_record(scores_file, oof, tmp_path / "cv" / "label_issues.csv", 1, {}), tmp_path / "cv" / "label_issues.json")
    r = run_tool("tools/report.py", tmp_path / "cv")
    assert r.returncode == 0, r.stderr
    pair = embedded_data(tmp_path / "cv" / "report.html")["label_issues"]["pairs"][0]
    n = load_bag(path.replace("{view}", view)).shape[0]
    assert pair["caption"].endswith(f"{view}, slice {k} of 0-{n - 1}, the evidence for {classes[c]}"), pair["caption"]
    assert pair["thumb"].startswith("data:image/jpeg")
