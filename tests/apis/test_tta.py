"""Test-time augmentation: the mean of the views' probabilities, the same in test.py, inference and infer.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlcls.apis import inference_model, init_model
from mlcls.apis.tta import TTAModel, parse_views
from mlcls.errors import ConfigError


@pytest.fixture(scope="module")
def ckpt(shapes_root, tmp_path_factory):
    from mlcls.apis import train_model
    from tests.conftest import tiny_config

    wd = tmp_path_factory.mktemp("tta") / "run"
    train_model(tiny_config(shapes_root, wd, max_epochs=1))
    return wd / "latest.pth"


def test_flip_tta_is_the_mean_of_the_image_and_its_mirror(ckpt):
    model = init_model(None, ckpt)
    x = torch.rand(3, 3, 32, 32)
    want = (model(x, mode="predict") + model(x.flip(-1), mode="predict")) / 2
    torch.testing.assert_close(TTAModel(model, "flip")(x, mode="predict"), want)
    scaled = TTAModel(model, ["identity", {"scale": 1.5}])(x, mode="predict")
    assert scaled.shape == (3, 10)
    with pytest.raises(ConfigError, match="unknown view"):
        parse_views(["rotate"])


def test_tta_in_test_tool_and_inference_agree(ckpt, tmp_path, shapes_root, run_tool):
    r = run_tool(
        "tools/test.py",
        ckpt,
        "--tta",
        "flip",
        "--out",
        tmp_path / "t" / "s.csv",
        "--work-dir",
        tmp_path / "t",
        "--tune-thr",
        "f1",
        "--min-pos",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert "test-time augmentation: identity + hflip" in r.stdout
    assert json.loads((tmp_path / "t" / "test_metrics.json").read_text())["tta"] == ["identity", "hflip"]
    rows = [line.split(",") for line in (tmp_path / "t" / "s.csv").read_text().splitlines()[1:]]
    model = init_model(None, ckpt)
    paths = [r[0] for r in rows[:6]]
    direct = np.array([[res["scores"][c] for c in model.info.classes] for res in inference_model(model, paths, tta="flip")])
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:11]] for r in rows[:6]]), direct, atol=1e-5)
    r = run_tool("tools/infer.py", ckpt, *paths, "--tta", "flip", "--out", tmp_path / "p.jsonl")
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([[g["scores"][c] for c in model.info.classes] for g in got], direct, atol=1e-5)
