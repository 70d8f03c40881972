"""Every saved variant reloads everywhere: for each loss and head, with and without EMA and tuned
thresholds, a 1-epoch checkpoint evaluated by tools/test.py (with its stored config and with the
config file it was trained from), init_model + inference_model and an ONNX export gives the same
scores, and the data-derived values are plain numbers in the stored config."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from mlcls.apis import inference_model, init_model, prepare_config, train_model
from mlcls.apis.export import export_model

BCE = {"type": "BCEWithLogitsLoss"}
CASES = {
    # name: (head, ema, tuned thresholds); every loss and every head appears at least once
    "linear-bce": ({"type": "MultiLabelLinearClsHead", "loss": BCE}, False, False),
    "linear-bce_pos_weight_auto-ema": ({"type": "MultiLabelLinearClsHead", "loss": {**BCE, "pos_weight": "auto"}}, True, False),
    "linear-bce_effective-thr": ({"type": "MultiLabelLinearClsHead", "loss": {**BCE, "class_weight": "effective"}}, False, True),
    "mlp-balanced_bce_auto-ema-thr": (
        {"type": "MultiLabelMLPHead", "hidden_channels": 32, "loss": {"type": "BalancedBCELoss"}},
        True,
        True,
    ),
    "mlp-focal": ({"type": "MultiLabelMLPHead", "hidden_channels": 32, "loss": {"type": "FocalLoss"}}, False, False),
    "csra-asl-thr": ({"type": "CSRAClsHead", "num_heads": 2, "loss": {"type": "AsymmetricLoss"}}, False, True),
    "mldecoder-bce_auto-ema": (
        {"type": "MLDecoderHead", "embed_dim": 32, "num_heads": 2, "dim_feedforward": 32, "loss": {**BCE, "pos_weight": "auto"}},
        True,
        False,
    ),  # fmt: skip
    "powerset-ema-thr": ({"type": "LabelPowersetHead", "min_count": 1}, True, True),
}
DATA_DERIVED = {"pos_weight", "class_weight", "pos_weights", "neg_weights", "combinations"}


def read_scores(path) -> tuple[list[str], np.ndarray]:
    rows = list(csv.reader(open(path)))
    n = sum(h.startswith("score_") for h in rows[0])
    return [r[0] for r in rows[1:]], np.array([[float(v) for v in r[1 : 1 + n]] for r in rows[1:]])


@pytest.mark.parametrize("case", list(CASES))
def test_checkpoint_reloads_in_test_inference_and_export(case, shapes_root, tmp_path, run_tool):
    from tests.conftest import tiny_config

    head, ema, tuned = CASES[case]
    cfg = tiny_config(shapes_root, tmp_path / "run", max_epochs=1)
    cfg["model"]["head"] = head
    if ema:
        cfg["ema"] = {"decay": 0.5}
    if tuned:
        cfg["custom_hooks"] = [{"type": "ThresholdTuningHook", "min_pos": 1}]
    del cfg["work_dir"]
    config_file = tmp_path / "mine.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    train_model(prepare_config(config_file, work_dir=str(tmp_path / "run")))
    ckpt_path = tmp_path / "run" / "latest.pth"
    ckpt = torch.load(ckpt_path, weights_only=True)

    # the stored config holds the numbers training derived from the labels, no placeholders
    stored_head = ckpt["meta"]["config"]["model"]["head"]
    section = stored_head if head["type"] == "LabelPowersetHead" else stored_head["loss"]
    for key, value in section.items():
        assert value not in ("auto", "effective"), key
    derived = {k for k in section if k in DATA_DERIVED and section[k] is not None}
    if head["type"] == "LabelPowersetHead" or "auto" in json.dumps(head) or "effective" in json.dumps(head):
        assert derived and all(isinstance(section[k], list) for k in derived)
    assert not any(".loss_module." in k for k in ckpt["state_dict"])  # loss weights shape training only
    assert (ckpt.get("thresholds") is not None) == tuned

    # tools/test.py with the stored config, then with the config file the run came from
    r = run_tool("tools/test.py", ckpt_path, "--out", tmp_path / "a.csv", "--work-dir", tmp_path / "t1")
    assert r.returncode == 0, r.stderr
    r = run_tool("tools/test.py", config_file, ckpt_path, "--out", tmp_path / "b.csv", "--work-dir", tmp_path / "t2")
    assert r.returncode == 0, r.stderr
    paths, a = read_scores(tmp_path / "a.csv")
    _, b = read_scores(tmp_path / "b.csv")
    np.testing.assert_allclose(a, b, atol=1e-5)

    # init_model + inference_model on the same files
    model = init_model(None, ckpt_path)
    if tuned:
        assert model.info.thresholds.tolist() == pytest.approx(ckpt["thresholds"]["values"])
    results = inference_model(model, paths)
    direct = np.array([[r["scores"][c] for c in model.info.classes] for r in results])
    np.testing.assert_allclose(direct, a, atol=1e-5)

    # ONNX export (dynamic height/width: the tiny pipeline has no Resize), then onnxruntime
    import onnxruntime as ort

    summary = export_model(ckpt_path, "onnx", tmp_path / "m.onnx", dynamic_batch=True, verify=True)
    session = ort.InferenceSession(summary["model"], providers=["CPUExecutionProvider"])
    from mlcls.apis.inference import to_uint8_tensor

    images = torch.stack([model.info.pipeline(to_uint8_tensor(p)) for p in paths[:8]]).numpy()
    exported = session.run(["probs"], {"images": images})[0]
    np.testing.assert_allclose(exported, a[:8], atol=1e-5)
