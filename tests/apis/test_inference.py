"""init_model / inference_model, tools/infer.py, tools/export.py and tools/vis_predictions.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlcls.apis import train_model
from mlcls.apis.inference import inference_model, init_model
from mlcls.datasets.builder import auto_num_workers
from mlcls.errors import ConfigError, DataError
from mlcls.models import build_model
from mlcls.utils.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(shapes_root, tmp_path_factory) -> Path:
    """A checkpoint of ResNet-18 trained 1 epoch on the tiny shapes set, with tuned thresholds stored."""
    wd = tmp_path_factory.mktemp("infer") / "work"
    cfg = tiny_config(shapes_root, wd, max_epochs=1)
    cfg["custom_hooks"] = [{"type": "ThresholdTuningHook", "min_pos": 1}]
    train_model(cfg)
    return wd / "latest.pth"


def test_inference_model_on_every_input_kind(trained, shapes_root):
    model = init_model(None, trained)
    assert model.info.classes[0] == "circle" and model.info.thresholds_source.startswith("checkpoint (f1 on 'val')")
    ckpt = load_checkpoint(trained)
    assert model.info.thresholds.tolist() == pytest.approx(ckpt["thresholds"]["values"])
    paths = sorted((shapes_root / "images" / "test").glob("*.png"))[:5]
    by_path = inference_model(model, [str(p) for p in paths])
    assert len(by_path) == 5
    single = inference_model(model, paths[0])  # one input -> one dict
    pil = inference_model(model, Image.open(paths[0]))
    arr = inference_model(model, np.asarray(Image.open(paths[0]).convert("RGB")))
    for r in (single, pil, arr):
        assert r["scores"] == pytest.approx(by_path[0]["scores"], abs=1e-5)
    # labels: exactly the classes at or above their own stored threshold, most probable first
    for r in by_path:
        expect = [c for c, t in zip(model.info.classes, model.info.thresholds.tolist()) if r["scores"][c] >= t]
        assert sorted(r["labels"]) == sorted(expect)
        assert [r["scores"][c] for c in r["labels"]] == sorted((r["scores"][c] for c in r["labels"]), reverse=True)
    low = inference_model(model, paths[0], thr=0.0)
    assert low["labels"] and len(low["labels"]) == 10  # every class clears 0
    top = inference_model(model, [paths[0], paths[1]], topk=2)
    assert all(len(r["labels"]) == 2 for r in top)
    assert top[0]["labels"][0] == max(top[0]["scores"], key=top[0]["scores"].get)
    with pytest.raises(ConfigError, match="either thr or topk"):
        inference_model(model, paths[0], thr=0.5, topk=1)
    with pytest.raises(DataError, match="not found"):
        inference_model(model, "/nonexistent.png")
    with pytest.raises(DataError, match="uint8"):
        inference_model(model, np.zeros((8, 8, 3), dtype=np.float32))


def test_infer_tool_over_a_folder_with_a_corrupt_file(trained, shapes_root, tmp_path, run_tool):
    folder = tmp_path / "imgs" / "nested"
    folder.mkdir(parents=True)
    for p in sorted((shapes_root / "images" / "val").glob("*.png"))[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "res.jsonl"
    r = run("tools/infer.py", trained, tmp_path / "imgs", "--out", out, "--batch-size", "4", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "6 images predicted, 1 skipped" in r.stderr and "broken.png" in r.stdout + r.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 6 and set(rows[0]) == {"image", "labels", "scores"}
    api = inference_model(init_model(None, trained), rows[0]["image"])
    assert rows[0]["labels"] == api["labels"]
    csv_out = tmp_path / "res.csv"
    from mlcls.datasets import builder

    builder._SAID.clear()  # said once per process: an earlier test in this process may have said it
    r = run_tool(
        "tools/infer.py", trained, *(folder / f for f in sorted(p.name for p in folder.glob("0*.png"))), "--topk", "1", "--out", csv_out
    )
    assert r.returncode == 0, r.stderr
    assert (
        f"num_workers auto: {auto_num_workers(torch.device('cpu'))[0]} (" in r.stderr
    )  # --workers' default, chosen for the model's device
    lines = csv_out.read_text().splitlines()
    assert (
        lines[0].startswith("image,labels,score_circle") and len(lines) == 7 and all(len(x.split(",")[1].split()) == 1 for x in lines[1:])
    )
    r = run_tool("tools/infer.py", trained, tmp_path / "missing_dir")
    assert r.returncode == 2 and "input not found" in r.stderr


@pytest.mark.parametrize("backbone", [{"type": "ResNet", "depth": 18}, {"type": "VGG", "depth": 11}], ids=["resnet18", "vgg11"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_with_verification(backbone, fmt, shapes_root, tmp_path, run_tool):
    cfg = tiny_config(shapes_root, tmp_path / "w")
    cfg["model"]["backbone"] = backbone
    classes = (shapes_root / "classes.txt").read_text().split()
    model = build_model(cfg["model"], num_classes=len(classes))
    ckpt = tmp_path / "model.pth"
    thr = [0.3 + 0.01 * i for i in range(len(classes))]
    save_checkpoint(
        {"meta": {"config": cfg, "classes": classes}, "state_dict": model.state_dict(), "thresholds": {"values": thr, "split": "val"}}, ckpt
    )
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    args = ["tools/export.py", ckpt, "--format", fmt, "--out", out, "--input-size", "64", "64", "--verify"]
    # one combination as a real process, the others in-process (same code path, no start-up cost)
    runner = run if (fmt, backbone["type"]) == ("onnx", "ResNet") else run_tool
    r = runner(*args, *(["--dynamic-batch"] if fmt == "onnx" else []))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert set(summary["verify"]) == {"batch_1_64x64", "batch_3_64x64"} and max(summary["verify"].values()) < 1e-4
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["classes"] == classes and meta["thresholds"] == pytest.approx(thr) and meta["input"]["size"] == [64, 64]
    assert meta["input"]["mean"] == [0.5] * 3
    # the deployed artefact alone (no mlcls): probabilities out
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model.eval()(x, mode="predict")
    if fmt == "onnx":
        import onnxruntime as ort

        got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
        got = torch.from_numpy(got)
    else:
        got = torch.jit.load(str(out))(x)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
    assert not list(tmp_path.glob(".*tmp*"))


def test_export_without_a_size_in_the_pipeline_has_free_height_and_width(trained, tmp_path, run_tool):
    # the demo-style pipeline has no Resize: the export keeps H and W free, checked at the data's size and another
    r = run_tool("tools/export.py", trained, "--out", tmp_path / "m.onnx", "--verify")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["input"]["dynamic_hw"] is True and summary["input"]["checked_sizes"] == [[32, 32], [64, 64]]
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for hw in (32, 48, 96):
        assert session.run(["probs"], {"images": np.zeros((2, 3, hw, hw), np.float32)})[0].shape == (2, 10)


def test_export_of_a_fixed_size_model_without_a_size_names_the_fix(shapes_root, tmp_path, run_tool):
    from mlcls.utils.checkpoint import save_checkpoint
    from tests.conftest import tiny_config

    cfg = tiny_config(shapes_root, tmp_path / "w")
    cfg["model"]["backbone"] = {"type": "TimmBackbone", "model_name": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8}
    model = build_model(cfg["model"], num_classes=10)
    save_checkpoint(
        {"meta": {"config": cfg, "classes": [str(i) for i in range(10)]}, "state_dict": model.state_dict()}, tmp_path / "vit.pth"
    )
    r = run_tool("tools/export.py", tmp_path / "vit.pth", "--out", tmp_path / "m.onnx")
    assert r.returncode == 2 and "accepts only a fixed input size" in r.stderr and "--input-size" in r.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_vis_predictions_writes_a_grid_with_gradcam(trained, tmp_path, run_tool):
    out = tmp_path / "grid.png"
    r = run("tools/vis_predictions.py", "-", trained, "--num", "6", "--cam", "circle", "--sort", "errors", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "feature map is only 1x1 for 32x32 inputs" in r.stdout + r.stderr  # 32 px images: a coarse map, said so
    img = np.asarray(Image.open(out))
    assert img.shape[0] > 150 and img.shape[1] > 500 and img.std() > 10
    r = run_tool("tools/vis_predictions.py", "-", trained, "--cam", "unicorn", "--out", out)
    assert r.returncode == 2 and "unknown class 'unicorn'" in r.stderr


def test_grad_cam_highlights_where_the_class_evidence_is():
    from mlcls.apis.visualize import grad_cam

    class Spot(torch.nn.Module):
        """Class 0 reads channel 0 of a 1x1-conv feature map; class 1 reads channel 1 negatively."""

        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Conv2d(3, 2, 1, bias=False)
            self.backbone.weight.data.fill_(1.0)

        def forward(self, x, mode="tensor"):
            f = self.backbone(x).mean((2, 3))
            return torch.stack([f[:, 0], -f[:, 1]], 1)

    x = torch.zeros(1, 3, 16, 16)
    x[:, :, :8, :8] = 1.0  # the evidence sits in the top-left quadrant
    cam = grad_cam(Spot(), x, 0)[0]
    assert cam.shape == (16, 16) and cam.max() == pytest.approx(1.0)
    assert cam[:6, :6].min() > 0.9 and cam[10:, 10:].max() < 1e-6
    assert grad_cam(Spot(), x, 1).max() == 0  # negative evidence: ReLU leaves nothing


def test_failed_export_verification_keeps_the_previous_file(trained, tmp_path):
    from mlcls.apis.export import export_model
    from mlcls.errors import MlclsError

    out = tmp_path / "exp" / "m.pt"
    export_model(trained, "torchscript", out, input_size=[32, 32])
    before = out.read_bytes()
    with pytest.raises(MlclsError, match="export verification failed: batch 1"):
        export_model(trained, "torchscript", out, input_size=[32, 32], verify=True, atol=-1.0)  # no diff is < 0
    assert out.read_bytes() == before  # the earlier, good export is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.json", "m.pt"]  # no temporary file left
