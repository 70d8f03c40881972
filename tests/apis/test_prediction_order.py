"""Score rows belong to their images on every split: the training split is read with its shuffling,
repeat-factor sampler in the config, yet ``tools/test.py --out`` and DDP evaluation stay in dataset order."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from mlcls.apis import inference_model, init_model, train_model
from tests.ddp import spawn


@pytest.fixture(scope="module")
def trained(shapes_root, tmp_path_factory):
    from tests.conftest import tiny_config

    wd = tmp_path_factory.mktemp("order")
    cfg = tiny_config(shapes_root, wd / "run", max_epochs=1)
    # a training section that reorders and repeats: what an evaluation must not inherit
    cfg["train_dataloader"]["sampler"] = {"type": "RepeatFactorSampler", "oversample_thr": 0.3}
    cfg["train_dataloader"]["dataset"]["pipeline"].insert(0, {"type": "RandomHorizontalFlip"})
    train_model(cfg)
    return wd / "run" / "latest.pth"


def read_csv(path):
    rows = list(csv.reader(open(path)))
    n = sum(h.startswith("score_") for h in rows[0])
    return [r[0] for r in rows[1:]], np.array([[float(v) for v in r[1 : 1 + n]] for r in rows[1:]])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_out_rows_equal_direct_inference_of_their_image(split, trained, tmp_path, run_tool):
    r = run_tool("tools/test.py", trained, "--split", split, "--out", tmp_path / "s.csv", "--work-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    paths, scores = read_csv(tmp_path / "s.csv")
    model = init_model(None, trained)
    from mlcls.apis.loaders import build_loader

    dataset = build_loader(model.info.cfg, split, "eval", 0).dataset
    assert paths == [dataset.image_path(i) for i in range(len(dataset))]  # every image once, in dataset order
    direct = np.array([[res["scores"][c] for c in model.info.classes] for res in inference_model(model, paths)])
    np.testing.assert_allclose(scores, direct, atol=1e-5)


def _ddp_worker(rank, world, ckpt, out):
    from mlcls.apis.loaders import build_loader
    from mlcls.evaluation import MultiLabelMetric
    from mlcls.evaluation.loop import predict_loader

    model = init_model(None, ckpt)
    loader = build_loader(model.info.cfg, "train", "eval", 0)  # 96 images, 48 per rank, in DefaultSampler order
    metric = MultiLabelMetric()
    scores, _ = predict_loader(model, loader, metric, torch.device("cpu"))
    if rank == 0:
        paths = [loader.dataset.image_path(int(i)) for i in metric.indices]
        with open(out, "w") as f:
            json.dump({"paths": paths, "scores": scores.tolist()}, f)


def test_two_process_evaluation_of_the_training_split_is_in_dataset_order(trained, tmp_path):
    out = tmp_path / "ddp.json"
    spawn(_ddp_worker, 2, (str(trained), str(out)))
    got = json.loads(out.read_text())
    model = init_model(None, trained)
    direct = np.array([[res["scores"][c] for c in model.info.classes] for res in inference_model(model, got["paths"])])
    assert len(got["paths"]) == len(set(got["paths"])) == 96
    np.testing.assert_allclose(np.array(got["scores"]), direct, atol=1e-5)
