"""Hostile and careless inputs: a crafted checkpoint, decompression and YAML bombs, two runs in one
work dir, a changed config on --resume, and the odd files users point tools at. Each case asserts
the one-line outcome and that nothing else happened (no file written, no code run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mlcls.errors import ConfigError, DataError
from tests.conftest import ROOT, tiny_config
from tests.reliability.conftest import one_line_error


def _crafted(trained_ckpt: Path, tmp_path: Path, **config_changes) -> Path:
    """A checkpoint of tensors and plain data whose stored config was edited by someone else."""
    from mlcls.utils.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(trained_ckpt)
    ckpt.pop("format")
    for key, value in config_changes.items():
        ckpt["meta"]["config"][key] = value
    out = tmp_path / "downloaded.pth"
    save_checkpoint(ckpt, out)
    return out


def test_a_stored_pipe_url_runs_nothing(trained_ckpt, tmp_path, run_tool):
    marker = tmp_path / "pwned"
    ds = {"type": "WebDatasetShards", "index": str(tmp_path / "index.json"), "shard_url": f"pipe:touch {marker}; cat {{name}}"}
    ckpt = _crafted(trained_ckpt, tmp_path, test_dataloader={"batch_size": 4, "dataset": ds})
    for tool, args in (("tools/test.py", [ckpt]), ("tools/infer.py", [ckpt, tmp_path])):
        r = run_tool(tool, *args)
        one_line_error(r, "test_dataloader.dataset.shard_url", "pipe:touch", "--trust-config")
    assert not marker.exists()
    assert not (tmp_path / "test_downloaded").exists()  # refused before any output folder was made


def test_stored_custom_imports_are_not_imported(trained_ckpt, tmp_path, run_tool, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_plugin.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ckpt = _crafted(trained_ckpt, tmp_path, custom_imports=["evil_plugin"])
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    for tool, args in (
        ("tools/test.py", [ckpt]),
        ("tools/infer.py", [ckpt, img]),
        ("tools/export.py", [ckpt, "--out", tmp_path / "m.onnx"]),
    ):
        one_line_error(run_tool(tool, *args), "custom_imports", "evil_plugin", "--trust-config")
    from mlcls.apis import init_model

    with pytest.raises(ConfigError, match="custom_imports"):
        init_model(None, ckpt)
    assert not marker.exists() and "evil_plugin" not in sys.modules and not (tmp_path / "m.onnx").exists()
    # the user's word opts in
    model = init_model(None, ckpt, trust_config=True)
    assert marker.exists() and model.info.classes
    sys.modules.pop("evil_plugin", None)


@pytest.mark.parametrize(
    "value",
    ["pipe:curl x | sh", "https://host/{name}", "gs://bucket/{name}", " PIPE:ls"],
)
def test_every_program_url_scheme_is_found_anywhere_in_a_config(value):
    from mlcls.config import check_untrusted_config, unsafe_entries

    cfg = {"a": [{"b": {"c": value}}], "custom_imports": {"imports": ["x"]}}
    found = unsafe_entries(cfg)
    assert found[0].startswith("a.0.b.c = ") and found[1].startswith("custom_imports = ")
    with pytest.raises(ConfigError, match=r"a\.0\.b\.c .*and 1 more"):
        check_untrusted_config(cfg, "ckpt")
    check_untrusted_config(cfg, "ckpt", trust=True)  # the user vouched for it
    assert unsafe_entries({"data_root": "/data/pipe:x", "ann_file": "http_list.csv"}) == []


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A 30000 x 30000 PNG of about 110 kB: 2.7 GB once decoded."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (30000, 30000)).save(path, optimize=True)
    assert path.stat().st_size < 200_000
    return path


def test_a_decompression_bomb_is_refused_before_decoding_everywhere(bomb, trained_ckpt, tmp_path, run_tool, monkeypatch):
    import resource

    from mlcls.datasets.image_io import load_image
    from mlcls.report.html import thumbnail

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=r"bomb\.png: 30000x30000 pixels \(900\.0 Mpx\) is above the limit of 89\.5 Mpx"):
        load_image(str(bomb))
    data, why, _ = thumbnail(bomb)
    assert data is None and "30000x30000" in why
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB: nothing near 900 Mpx was allocated
    # infer: the bomb is skipped with its line, the other image predicted
    folder = tmp_path / "imgs"
    folder.mkdir()
    os.link(bomb, folder / "bomb.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "ok.png")
    r = run_tool("tools/infer.py", trained_ckpt, folder, "--workers", "0", "--out", tmp_path / "p.csv")
    assert r.returncode == 0 and "30000x30000" in r.stderr and "1 images predicted, 1 skipped" in r.stderr, r.stderr
    # a larger limit is the user's choice
    monkeypatch.setenv("MLCLS_MAX_IMAGE_PIXELS", "1e9")
    from mlcls.datasets.image_io import max_image_pixels

    assert max_image_pixels() == 10**9


def test_check_dataset_reports_the_bomb_as_a_problem(bomb, shapes_root, tmp_path):
    from mlcls.datasets import CSVDataset
    from mlcls.datasets.check import check_images

    os.link(bomb, tmp_path / "bomb.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "l.csv").write_text("filename,labels\nbomb.png,circle\nok.png,\n")
    ds = CSVDataset("l.csv", str(shapes_root / "classes.txt"), data_root=str(tmp_path))
    problems = check_images(ds)
    assert [(p["kind"], Path(p["path"]).name) for p in problems] == [("too-large", "bomb.png")]
    assert "30000x30000" in problems[0]["detail"]


def test_a_yaml_alias_bomb_fails_small_and_fast(tmp_path):
    from mlcls.config import load_config

    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"_{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")  # 9^9 = 387M values under ignored '_' keys
    t = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: its aliases expand to more than 1,000,000 values"):
        load_config(tmp_path / "bomb.yaml")
    assert time.perf_counter() - t < 5
    # ordinary anchors, as the shipped configs use them, still load
    (tmp_path / "ok.yaml").write_text("_p: &p [{type: Resize, size: 32}]\nval: {pipeline: *p}\ntest: {pipeline: *p}\n")
    assert load_config(tmp_path / "ok.yaml")["test"]["pipeline"] == [{"type": "Resize", "size": 32}]


def test_duplicate_keys_are_errors_in_yaml_and_threshold_files(tmp_path):
    from mlcls.config import apply_overrides, load_config
    from mlcls.evaluation.thresholds import threshold_values

    (tmp_path / "c.yaml").write_text("optimizer: {type: SGD, lr: 0.1}\nseed: 1\noptimizer: {type: AdamW, lr: 0.001}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3:1: the key 'optimizer' is given twice"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "t.json").write_text('{"a": 0.3, "b": 0.4, "a": 0.9}')
    with pytest.raises(ConfigError, match=r"t\.json: not valid JSON \(the key 'a' is given twice"):
        threshold_values(str(tmp_path / "t.json"), ["a", "b"])
    # '_delete_' inside an override's value is done by the override itself, never passed on
    cfg = apply_overrides({"model": {"head": {"type": "A", "x": 1}}}, ["model.head={_delete_: true, type: B}"])
    assert cfg["model"]["head"] == {"type": "B"}


def test_two_trainings_into_one_work_dir_the_second_is_refused(shapes_root, tmp_path):
    # 12 epochs hold the lock about 25 s: the second command's start (about 5 s of imports, more under
    # load) must find the first still training, not finished (2 epochs held it about 4 s: a race)
    cfg = tiny_config(shapes_root, tmp_path / "run", max_epochs=12)
    cfg.pop("work_dir")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), str(tmp_path / "c.yaml"), "--work-dir", str(tmp_path / "run")]
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "run" / ".mlcls.lock"
    deadline = time.time() + 120
    while not (lock.is_file() and lock.read_text()) and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, first.stderr.read()
    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert second.returncode == 2 and f"is in use by another training run (process {first.pid} on " in second.stderr
    assert [ln for ln in second.stderr.strip().splitlines() if ln.strip()] == [second.stderr.strip()]
    # the first run's files are all its own: one log, its 12 epochs, no interleaved lines
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("model: ImageClassifier") == 1 and "in use" not in log
    assert sorted(p.name for p in (tmp_path / "run").glob("epoch_*.pth")) == sorted(f"epoch_{k}.pth" for k in range(1, 13))
    assert not lock.exists()  # released at the end


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    from mlcls.utils.fileio import WorkDirLock

    (tmp_path / ".mlcls.lock").write_text("process 999999 on elsewhere, started long ago")  # no process holds it
    with WorkDirLock(tmp_path):
        holder = subprocess.run(
            [sys.executable, "-c", f"from mlcls.utils.fileio import WorkDirLock; WorkDirLock({str(tmp_path)!r}).acquire()"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert holder.returncode == 1 and f"in use by another training run (process {os.getpid()} " in holder.stderr
    assert not (tmp_path / ".mlcls.lock").exists()


@pytest.fixture
def finished_run(trained_ckpt, tmp_path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_ckpt.parent, run)
    return run


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"model.backbone.depth": 34}, "the model differs: the model has 'backbone.layer1.2.conv1.weight'"),
        ({"optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9}}, "the optimizer differs (AdamW in the checkpoint, SGD now)"),
        ({"classes": ["circle", "square"]}, "the class list differs (10 classes in the checkpoint, 2 now"),
    ],
)
def test_resume_with_a_changed_config_is_one_line_and_touches_nothing(finished_run, shapes_root, change, needle):
    from mlcls.apis import train_model

    cfg = tiny_config(shapes_root, finished_run, max_epochs=3)
    for key, value in change.items():
        if key == "classes":
            for split in ("train", "val", "test"):
                cfg[f"{split}_dataloader"]["dataset"]["classes"] = value
                cfg[f"{split}_dataloader"]["dataset"]["on_bad_image"] = "raise"
        elif key == "optimizer":
            cfg["optimizer"] = value
        else:
            cfg["model"]["backbone"]["depth"] = value
    before = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()}
    with pytest.raises((ConfigError, DataError)) as e:
        train_model(cfg, resume="auto")
    if isinstance(e.value, DataError):  # the 2-class list cannot even read the labels: also refused before anything
        assert "unknown class" in str(e.value)
    else:
        assert needle in str(e.value) and "load_from" in str(e.value) and "--overwrite" in str(e.value)
    after = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()}
    assert after.pop("train.log").startswith(before.pop("train.log"))  # the log only gained the refused attempt's lines
    assert after == before  # config.yaml, checkpoints, scalars: unchanged


def test_a_failed_start_leaves_no_work_dir(shapes_root, tmp_path):
    from mlcls.apis import train_model

    cfg = tiny_config(shapes_root, tmp_path / "work_dirs" / "new_run")  # work_dirs/ too is created by the run
    cfg["optimizer"] = {"type": "NoSuchOptimizer", "lr": 0.1}
    with pytest.raises(Exception, match="NoSuchOptimizer"):
        train_model(cfg)
    assert not (tmp_path / "work_dirs").exists() and tmp_path.is_dir()


def test_csv_oddities_are_one_line(shapes_root, tmp_path):
    from mlcls.datasets import CSVDataset

    classes = str(shapes_root / "classes.txt")
    (tmp_path / "empty.csv").write_text("filename,labels\n")
    with pytest.raises(DataError, match=r"empty\.csv: lists no samples"):
        CSVDataset("empty.csv", classes, data_root=str(tmp_path))
    (tmp_path / "escape.csv").write_text("filename,labels\n../../../etc/passwd,circle\n")
    with pytest.raises(DataError, match=r"escape\.csv:2: '\.\./\.\./\.\./etc/passwd' points outside data_root"):
        CSVDataset("escape.csv", classes, data_root=str(tmp_path))
    (tmp_path / "quoted.csv").write_text('filename,labels\na.png,"circle,square"\n')
    with pytest.raises(DataError, match="labels are separated by spaces, write 'circle square'"):
        CSVDataset("quoted.csv", classes, data_root=str(tmp_path), check_files=False)
    with pytest.raises(DataError, match="class name 'traffic light' contains a space"):
        CSVDataset("quoted.csv", ["traffic light", "car"], data_root=str(tmp_path), check_files=False)
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "dir.csv").write_text("filename,labels\na.png,circle\nsub,circle\n")  # a folder among images
    ds = CSVDataset("dir.csv", classes, data_root=str(tmp_path), check_files=False)
    with pytest.raises(DataError, match="is a folder, not an image file"):
        ds.read_image(1)


def test_animated_gif_and_transparency_decode_as_pillow_shows_them(tmp_path):
    from mlcls.apis.inference import to_uint8_tensor

    frames = [Image.fromarray(np.full((40, 48, 3), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    x = to_uint8_tensor(tmp_path / "anim.gif")
    assert x.shape == (3, 40, 48) and int(x.float().mean().round()) == 10  # the first frame
    rgba = np.random.default_rng(0).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    by_path = to_uint8_tensor(str(tmp_path / "t.png"))
    by_pil = to_uint8_tensor(Image.open(tmp_path / "t.png"))
    assert torch.equal(by_path, by_pil)
    expected = np.round(rgba[..., :3].astype(np.float64) * rgba[..., 3:] / 255)  # over black
    assert np.abs(by_path.permute(1, 2, 0).numpy().astype(np.float64) - expected).max() <= 1


def test_infer_argument_mistakes_write_nothing(trained_ckpt, tmp_path, run_tool):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    for k in ("-3", "0"):  # argparse's usage error: exit 2, the argument named, no traceback
        r = run_tool("tools/infer.py", trained_ckpt, img, "--topk", k)
        assert (
            r.returncode == 2 and f"error: argument --topk: expected an integer >= 1, got {k}" in r.stderr and "Traceback" not in r.stderr
        )
    one_line_error(run_tool("tools/infer.py", trained_ckpt, img, "--topk", "11"), "the model has 10 classes")
    one_line_error(run_tool("tools/infer.py", trained_ckpt, img, "--out", tmp_path / "x.xlsx"), "expected a .jsonl or .csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_saved_evaluations_that_are_not_are_one_line(tmp_path, run_tool):
    d = tmp_path / "t"
    d.mkdir()
    (d / "eval_scores.npz").write_text('{"scores": []}')
    one_line_error(run_tool("tools/report.py", d), "not an .npz evaluation file (it looks like JSON or text)")
    from mlcls.report import Evaluation, save_eval_scores

    good = save_eval_scores(
        tmp_path / "g" / "eval_scores.npz", Evaluation(torch.rand(4, 2), torch.ones(4, 2), ["a"] * 4, ["x", "y"], [0.5] * 2, {})
    )
    (d / "eval_scores.npz").write_bytes(good.read_bytes()[:300])
    one_line_error(run_tool("tools/report.py", d), "cannot read the saved evaluation, damaged or cut short?")
    save_eval_scores(
        tmp_path / "h" / "eval_scores.npz", Evaluation(torch.rand(4, 2), torch.ones(4, 2), ["a"] * 4, ["x", "z"], [0.5] * 2, {})
    )
    one_line_error(
        run_tool("tools/report.py", tmp_path / "g", tmp_path / "h"), "their class lists differ (only in A: ['y']; only in B: ['z'])"
    )


def test_open_images_duplicate_label_name_names_file_and_label(tmp_path):
    from mlcls.datasets.openimages import read_class_descriptions

    (tmp_path / "cd.csv").write_text("/m/01,Cat\n/m/02,Dog\n/m/01,Kitten\n")
    with pytest.raises(DataError, match=r"cd\.csv:3: LabelName '/m/01' is listed again \(first at line 1\)"):
        read_class_descriptions(tmp_path / "cd.csv")


def test_shard_size_must_be_positive():
    from mlcls.datasets.shards import parse_size

    assert parse_size("64KB") == 65536
    for bad in ("0", "-5MB", 0):
        with pytest.raises(ConfigError, match="--shard-size: expected a positive size"):
            parse_size(bad)


def test_typos_in_a_config_file_name_the_file_section_and_a_suggestion(config_file, tmp_path):
    from mlcls.apis import prepare_config
    from mlcls.apis.loaders import build_loader
    from mlcls.errors import BuildError

    cfg = yaml.safe_load(config_file.read_text())
    cfg["val_dataloader"]["batch_sise"] = 8
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"typo\.yaml: val_dataloader: unknown key 'batch_sise'; did you mean 'batch_size'\?"):
        prepare_config(tmp_path / "typo.yaml")
    cfg = yaml.safe_load(config_file.read_text())
    cfg["test_dataloader"]["dataset"]["data_rot"] = "x"
    with pytest.raises(
        BuildError, match=r"test_dataloader: dataset 'CSVDataset' got an unexpected key 'data_rot'; did you mean 'data_root'\?"
    ):
        build_loader(cfg, "test", "eval", 0)


def test_a_training_set_without_any_label_is_warned_about(shapes_root, tmp_path, mlcls_log):
    from mlcls.apis import build_trainer

    rows = [line.split(",")[0] + "," for line in (shapes_root / "train.csv").read_text().splitlines()[1:]]
    (tmp_path / "nolabels.csv").write_text("filename,labels\n" + "\n".join(rows) + "\n")
    cfg = tiny_config(shapes_root, tmp_path / "w")
    cfg["train_dataloader"]["dataset"]["ann_file"] = str(tmp_path / "nolabels.csv")
    build_trainer(cfg)
    assert "the training set has no positive label at all (96 images)" in mlcls_log.text


def test_an_earlier_evaluations_files_are_kept_and_named_as_its_own(trained_ckpt, tmp_path, run_tool):
    out = tmp_path / "t"
    assert run_tool("tools/test.py", trained_ckpt, "--work-dir", out, "--ci", "20").returncode == 0
    assert (out / "report.html").is_file() and (out / "eval_scores.npz").is_file()
    report = (out / "report.html").read_bytes()
    (out / "thresholds.json").write_text("{}")  # e.g. a training run's tuned thresholds, when --work-dir names its folder
    r = run_tool("tools/test.py", trained_ckpt, "--work-dir", out, "--no-report")
    assert r.returncode == 0, r.stderr
    # the earlier report (with its intervals) is not deleted by a run that does not write one
    assert (out / "report.html").read_bytes() == report and (out / "eval_scores.npz").is_file()
    assert (out / "thresholds.json").read_text() == "{}"
    assert f"eval_scores.npz, report.html in {out} are from an earlier evaluation, not this one" in r.stderr
    assert json.loads((out / "test_metrics.json").read_text())["files"] == ["test_metrics.json", "per_class.csv", "ap_vs_frequency.png"]
    # tools/report.py's hints name files that exist
    (out / "eval_scores.npz").unlink()
    r = run_tool("tools/report.py", out)
    assert r.returncode == 2 and f"it was evaluated with --no-report; run python tools/test.py {trained_ckpt} --work-dir {out}" in r.stderr
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "latest.pth").write_bytes(b"")
    r = run_tool("tools/report.py", run_dir)
    assert (
        r.returncode == 2
        and f"python tools/test.py {run_dir / 'latest.pth'} writes {run_dir / 'test_latest' / 'eval_scores.npz'}" in r.stderr
    )


def test_onnx_export_takes_any_batch_by_default_and_says_what_is_fixed(trained_ckpt, tmp_path):
    import onnxruntime as ort

    from mlcls.apis.export import export_model

    summary = export_model(trained_ckpt, "onnx", tmp_path / "m.onnx", verify=True)
    assert {k for k in summary["verify"] if k.endswith("32x32")} == {"batch_1_32x32", "batch_3_32x32"}
    assert json.loads((tmp_path / "m.json").read_text())["input"]["batch"] == "dynamic"
    export_model(trained_ckpt, "onnx", tmp_path / "f.onnx", dynamic_batch=False)
    assert json.loads((tmp_path / "f.json").read_text())["input"]["batch"] == 1
    sess = ort.InferenceSession(str(tmp_path / "f.onnx"))
    assert sess.run(None, {"images": np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 10)
