"""decode_on_device: workers read JPEG bytes, the batch is decoded, augmented and normalised where the
model runs. On the CPU this is the same code a GPU run takes (only decode_jpeg's device differs), and
its batches must equal the workers' own decoding bit for bit."""

from __future__ import annotations

import csv
import io
import logging

import numpy as np
import pytest
import torch
import torchvision.io as tv_io
from PIL import Image, ImageOps

from mlcls.datasets import build_dataloader
from mlcls.datasets import device_decode as dd
from mlcls.datasets.image_io import apply_orientation, jpeg_orientation, load_image
from mlcls.errors import ConfigError, DataError
from mlcls.evaluation.loop import batch_to_device, loader_batch_transform
from mlcls.schema import check_config

CLASSES = ["a", "b", "c"]
PIPELINE = [
    {"type": "RandomResizedCrop", "size": 32, "scale": [0.5, 1.0], "antialias": True},
    {"type": "RandomHorizontalFlip"},
    {"type": "ToFloatNormalize"},
]


def _jpeg(arr: np.ndarray, orientation: int = 1, mode: str | None = None) -> bytes:
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    exif = im.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def jpeg_root(tmp_path_factory):
    """24 JPEGs of 40x36 px (not square, so a transposing orientation shows), every EXIF orientation,
    some greyscale, with labels in a CSV."""
    root = tmp_path_factory.mktemp("jpegs")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = [["filename", "labels"]]
    for i in range(24):
        arr = (rng.random((36, 40, 3)) * 255).astype(np.uint8)
        (root / "images" / f"{i:02d}.jpg").write_bytes(_jpeg(arr, orientation=1 + i % 8, mode="L" if i % 5 == 0 else None))
        rows.append([f"images/{i:02d}.jpg", " ".join(c for j, c in enumerate(CLASSES) if (i >> j) & 1)])
    with open(root / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def _section(root, **extra) -> dict:
    dataset = {"type": "CSVDataset", "ann_file": str(root / "train.csv"), "classes": CLASSES, "data_root": str(root), "pipeline": PIPELINE}
    return {"batch_size": 8, "num_workers": 2, "dataset": dataset, **extra}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_read_from_the_header_matches_pillow_and_torchvision(orientation):
    arr = (np.random.default_rng(orientation).random((20, 30, 3)) * 255).astype(np.uint8)
    data = _jpeg(arr, orientation)
    assert jpeg_orientation(data[:65536]) == orientation
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    ours = apply_orientation(tv_io.decode_jpeg(encoded, mode=tv_io.ImageReadMode.RGB), orientation)
    assert torch.equal(ours, tv_io.decode_jpeg(encoded, mode=tv_io.ImageReadMode.RGB, apply_exif_orientation=True))
    pil = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))  # independent reference
    assert ours.permute(1, 2, 0).shape == pil.shape
    assert np.abs(ours.permute(1, 2, 0).numpy().astype(int) - pil.astype(int)).mean() < 2  # same geometry (decoders may differ by a level)


def test_batches_decoded_on_the_device_equal_the_workers_bit_for_bit(jpeg_root):
    in_workers = build_dataloader(_section(jpeg_root), seed=5, seeded_batches=True, batch_normalize=True)
    on_device = build_dataloader(_section(jpeg_root, decode_on_device=True), seed=5, seeded_batches=True)
    assert isinstance(on_device.batch_transform, dd.DeviceDecode)
    n = 0
    for (a, ya), (b, yb) in zip(in_workers, on_device):
        assert isinstance(b, dd.EncodedBatch) and b.data.dtype == torch.uint8 and len(b) == 8  # undecoded bytes crossed from the workers
        x, _ = batch_to_device(b, yb, torch.device("cpu"), torch.channels_last, loader_batch_transform(on_device))  # the trainer's own step
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x, in_workers.batch_transform(a)) and torch.equal(ya, yb)  # crops and flips drawn alike
        n += 1
    assert n == 3


def test_a_file_that_is_not_jpeg_is_named(jpeg_root, tmp_path):
    png = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(png)
    (tmp_path / "l.csv").write_text(f"filename,labels\n{jpeg_root / 'images/00.jpg'},a\n{png},b\n")
    section = _section(jpeg_root, decode_on_device=True, num_workers=0)
    section["dataset"] = {**section["dataset"], "ann_file": str(tmp_path / "l.csv"), "data_root": ""}
    with pytest.raises(DataError, match=r"x\.png.*not a JPEG file.*drop decode_on_device"):
        next(iter(build_dataloader(section)))


def test_an_image_the_device_decoder_refuses_is_decoded_on_the_cpu_with_a_warning(jpeg_root, monkeypatch, mlcls_log):
    """nvjpeg refuses some JPEGs (CMYK, lossless): the batch call fails as a whole, the file is found
    and decoded by the workers' decoder instead, and the log names it. The refusal is simulated."""
    real = tv_io.decode_jpeg
    refused = str(jpeg_root / "images/03.jpg")
    refused_bytes = (jpeg_root / "images/03.jpg").read_bytes()

    def device_decoder(data, mode, device):
        items = data if isinstance(data, list) else [data]
        if any(bytes(t.numpy()) == refused_bytes for t in items):
            raise RuntimeError("nvjpegDecode failed: 6")
        return real(data, mode=mode, device=device)

    monkeypatch.setattr(dd.tv_io, "decode_jpeg", device_decoder)
    loader = build_dataloader({**_section(jpeg_root, decode_on_device=True, num_workers=0), "batch_size": 24})
    batch = next(iter(loader))[0]
    images = loader.batch_transform.decode(batch)
    warned = {id(r): r.getMessage() for r in mlcls_log.records if r.levelno == logging.WARNING}  # a record may reach the handler twice
    assert [m.count(refused) for m in warned.values()] == [1]
    for path, x in zip(batch.paths, images):
        assert torch.equal(x, load_image(path))  # oriented, the same pixels as the workers' decoder


def test_decode_on_device_refuses_what_it_cannot_do(jpeg_root, tmp_path):
    with pytest.raises(DataError, match="decode_on_device and cache: true exclude each other"):
        build_dataloader(_section(jpeg_root, decode_on_device=True) | {"dataset": {**_section(jpeg_root)["dataset"], "cache": True}})
    with pytest.raises(ConfigError, match="train_dataloader.decode_on_device must be true or false, got 'yes'"):
        check_config({"train_dataloader": _section(jpeg_root, decode_on_device="yes")})
    with pytest.raises(DataError, match="decode_on_device is for datasets of single images"):
        (tmp_path / "bags.csv").write_text("filename,labels\nimages/00.jpg|images/01.jpg,a\n")  # a bag of two images
        bags = {**_section(jpeg_root)["dataset"], "ann_file": str(tmp_path / "bags.csv")}
        build_dataloader({"dataset": bags, "decode_on_device": True})


def test_training_with_decode_on_device_gives_the_same_model(jpeg_root, tmp_path):
    """The trainer's path end to end (train loader, batch transform, channels_last, evaluation): one
    epoch each way, the same weights and validation scores bit for bit."""
    from mlcls.apis import build_trainer
    from tests.conftest import tiny_config

    def run(on_device: bool):
        cfg = tiny_config(jpeg_root, tmp_path / str(on_device), max_epochs=1, channels_last=True)
        for split in ("train", "val"):
            cfg[f"{split}_dataloader"]["dataset"] = _section(jpeg_root)["dataset"]
            cfg[f"{split}_dataloader"]["decode_on_device"] = on_device
        cfg["val_dataloader"]["dataset"]["pipeline"] = [{"type": "Resize", "size": [32, 32]}, {"type": "ToFloatNormalize"}]
        del cfg["test_dataloader"]
        cfg["default_hooks"]["checkpoint"] = {"type": "CheckpointHook", "interval": 0, "save_best": None}
        trainer = build_trainer(cfg)
        trainer.train()
        return trainer.model.state_dict(), trainer.last_eval[0]  # the validation scores [N, C]

    (a, sa), (b, sb) = run(False), run(True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sa.shape == (24, 3) and torch.equal(sa, sb)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/bench_gpu.sh runs it)")
def test_nvjpeg_batches_match_the_cpu_decoder(jpeg_root):
    loader = build_dataloader(_section(jpeg_root, decode_on_device=True, num_workers=0), seed=1, seeded_batches=True)
    for batch, _ in loader:
        gpu = loader.batch_transform.decode(batch.to("cuda"))
        cpu = loader.batch_transform.decode(batch)
        for g, c in zip(gpu, cpu):
            assert g.device.type == "cuda" and g.shape == c.shape  # EXIF orientation applied on the GPU too
            assert (g.cpu().int() - c.int()).abs().float().mean() < 2  # nvjpeg and libjpeg-turbo differ by a level at most


@pytest.mark.parametrize("on_device", [False, True])
def test_images_of_different_sizes_in_a_batch_name_a_file_of_each(jpeg_root, on_device):
    """Orientations 5-8 turn the 40x36 files into 36x40 images: without a crop they cannot be stacked."""
    section = _section(jpeg_root, decode_on_device=on_device, num_workers=0)
    section["dataset"] = {**section["dataset"], "pipeline": [{"type": "ToFloatNormalize"}]}
    loader = build_dataloader(section, batch_normalize=True, shuffle=False)
    with pytest.raises(
        DataError, match=r"different sizes in one batch: 36x40 \(.*images/00\.jpg\) and 40x36 \(.*images/04\.jpg\); add a Resize"
    ):
        batch_to_device(*next(iter(loader))[:2], torch.device("cpu"), torch.contiguous_format, loader_batch_transform(loader))


def test_samples_read_one_by_one_stack_into_the_loaders_batch(jpeg_root):
    """What vis_predictions and Grad-CAM do with dataset[i]: the same batch the loader makes, either way."""
    for on_device in (False, True):
        section = _section(jpeg_root, decode_on_device=on_device, num_workers=0)
        section["dataset"] = {**section["dataset"], "pipeline": [{"type": "Resize", "size": [32, 32]}, {"type": "ToFloatNormalize"}]}
        loader = build_dataloader(section, batch_normalize=True, shuffle=False)
        by_loader, _ = batch_to_device(*next(iter(loader))[:2], torch.device("cpu"), torch.contiguous_format, loader.batch_transform)
        one_by_one = loader.batch_transform(dd.stack_images([loader.dataset[i][0] for i in range(8)]))
        assert isinstance(dd.stack_images([loader.dataset[0][0]]), dd.EncodedBatch if on_device else torch.Tensor)
        assert torch.equal(by_loader, one_by_one)
