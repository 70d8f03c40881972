"""Inputs that used to fail badly: mixed image sizes, odd inference arguments and image modes, labels
that are legal but almost certainly wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mlcls.errors import ConfigError, DataError


def test_images_of_different_sizes_without_resize_name_both_sizes_and_files(tmp_path):
    from mlcls.datasets import CSVDataset, build_dataloader

    (tmp_path / "a.png").write_bytes(b"")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "l.csv").write_text("filename,labels\na.png,x\nb.png,y\n")
    ds = CSVDataset("l.csv", ["x", "y"], [{"type": "ToFloatNormalize"}], data_root=str(tmp_path))
    loader = build_dataloader({"batch_size": 2}, dataset=ds, shuffle=False)
    with pytest.raises(DataError) as e:
        next(iter(loader))
    msg = str(e.value)
    assert "32x32" in msg and "40x48" in msg and "a.png" in msg and "b.png" in msg and "Resize" in msg


@pytest.fixture(scope="module")
def model(trained_ckpt):
    from mlcls.apis import init_model

    return init_model(None, trained_ckpt)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"topk": -1}, "topk: expected an integer from 1 to 10"),
        ({"topk": 0}, "topk: expected an integer from 1 to 10"),
        ({"topk": 11}, "topk: expected an integer from 1 to 10"),
        ({"thr": "0.5"}, "thr: expected a number in [0, 1]"),
        ({"thr": float("nan")}, "thr: expected a number in [0, 1]"),
        ({"thr": 1.5}, "thr: expected a number in [0, 1]"),
        ({"thr": [0.5] * 3}, "thr: 3 thresholds given for 10 classes"),
    ],
)
def test_invalid_inference_arguments_are_one_line_errors(model, kwargs, message):
    with pytest.raises(ConfigError) as e:
        from mlcls.apis import inference_model

        inference_model(model, np.zeros((32, 32, 3), np.uint8), **kwargs)
    assert message in str(e.value)


def test_empty_images_are_refused(model):
    from mlcls.apis import inference_model

    for empty in (np.zeros((0, 0, 3), np.uint8), torch.zeros(3, 0, 5, dtype=torch.uint8), Image.new("RGB", (0, 0))):
        with pytest.raises(DataError, match="empty image"):
            inference_model(model, empty)


def test_a_16_bit_image_gives_the_same_scores_as_a_path_or_a_pil_image(model, tmp_path):
    from mlcls.apis import inference_model

    grey = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    from_path = inference_model(model, str(tmp_path / "g16.png"))["scores"]
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I;16")
        from_pil = inference_model(model, im)["scores"]
    assert from_pil == from_path
    from mlcls.datasets import load_image

    img = load_image(str(tmp_path / "g16.png"))
    assert img.dtype == torch.uint8 and int(img.max()) == 255 and int(img.min()) == 0  # scaled, not clipped to white


def test_check_dataset_warns_about_unlabelled_sets_and_classes_never_seen(shapes_root, tmp_path, run_tool):
    import yaml

    lines = (shapes_root / "val.csv").read_text().splitlines()
    (tmp_path / "nolabels.csv").write_text("\n".join([lines[0], *[ln.split(",")[0] + "," for ln in lines[1:]]]) + "\n")
    ds = {
        "type": "CSVDataset",
        "data_root": str(shapes_root),
        "ann_file": str(tmp_path / "nolabels.csv"),
        "classes": str(shapes_root / "classes.txt"),
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"train_dataloader": {"dataset": ds}}))
    r = run_tool("tools/check_dataset.py", tmp_path / "c.yaml", "--no-decode")
    assert "warning    no image has any positive label" in r.stdout
    only_circles = "\n".join([lines[0], *[ln.split(",")[0] + ",circle" for ln in lines[1:]]]) + "\n"
    (tmp_path / "circles.csv").write_text(only_circles)
    ds["ann_file"] = str(tmp_path / "circles.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"train_dataloader": {"dataset": ds}}))
    r = run_tool("tools/check_dataset.py", tmp_path / "c.yaml", "--no-decode")
    assert "warning    9 class(es) with no positive image: square" in r.stdout and "cap" in r.stdout


def test_auto_pos_weight_says_which_classes_hit_the_cap(mlcls_log):
    from mlcls.losses import BCEWithLogitsLoss

    BCEWithLogitsLoss(pos_weight="auto", label_stats={"num_samples": 10, "pos": [5, 0], "neg": [5, 10], "classes": ["cat", "dog"]})
    assert "pos_weight auto: 1 class(es) capped at max_pos_weight=100" in mlcls_log.text and "dog" in mlcls_log.text


def test_bytes_that_are_not_utf8_are_named_by_file_and_line(tmp_path):
    from mlcls.apis.inference import collect_inputs
    from mlcls.datasets import CSVDataset

    (tmp_path / "l.csv").write_bytes(b"filename,labels\na.png,x\nb\xff.png,y\n")
    with pytest.raises(DataError, match=r"l.csv:3: byte 0xff at column 2 is not valid utf-8"):
        CSVDataset("l.csv", ["x", "y"], data_root=str(tmp_path), check_files=False)
    (tmp_path / "list.txt").write_bytes(b"a.png\n# fine\nc\xfe.png\n")
    with pytest.raises(DataError, match=r"list.txt:3: byte 0xfe at column 2"):
        collect_inputs([tmp_path / "list.txt"])


def test_infer_writes_non_utf8_file_names_losslessly(trained_ckpt, tmp_path, run_tool):
    import os

    folder = tmp_path / "imgs"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.png")  # a Latin-1 name, as old cameras and zips leave them
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(os.fsdecode(raw), format="PNG")
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(folder / "ok.png")
    r = run_tool("tools/infer.py", trained_ckpt, folder, "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "p.csv").read_bytes()
    assert raw in data and b"ok.png" in data  # both rows, the odd name byte for byte
