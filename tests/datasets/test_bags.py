"""Samples made of many images: volumes, folders and lists of images, views, the MRNet layout,
transforms shared by the slices of a bag, packing, and the tools that read datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mlcls.datasets.bags import load_bag, subsample
from mlcls.errors import DataError


def test_volume_dtypes_and_layouts(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (4, 6, 5), dtype=np.uint8)
    np.save(tmp_path / "g.npy", grey)
    x = load_bag(str(tmp_path / "g.npy"))
    assert x.shape == (4, 3, 6, 5) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], torch.from_numpy(grey)) and torch.equal(x[:, 0], x[:, 2])
    rgb = rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", volume=rgb, spacing=np.ones(3))
    assert torch.equal(load_bag(str(tmp_path / "c.npz")), torch.from_numpy(rgb).permute(0, 3, 1, 2))
    np.save(tmp_path / "u16.npy", grey.astype(np.uint16) * 256 + 7)
    assert torch.equal(load_bag(str(tmp_path / "u16.npy")), x)  # 16 bits -> 8 as 16-bit images are
    np.save(tmp_path / "f1.npy", grey / 255.0)
    assert torch.equal(load_bag(str(tmp_path / "f1.npy")), x)
    np.save(tmp_path / "f255.npy", grey.astype(np.float32))
    assert torch.equal(load_bag(str(tmp_path / "f255.npy")), x)
    np.save(tmp_path / "hu.npy", grey.astype(np.float32) - 1000)  # CT Hounsfield units: say so, never clip silently
    with pytest.raises(DataError, match=r"hu\.npy: float volume values must be finite and in 0\.\.1 or 0\.\.255, found -1000"):
        load_bag(str(tmp_path / "hu.npy"))
    np.save(tmp_path / "flat.npy", grey[0])
    with pytest.raises(DataError, match=r"expected a volume of shape \(slices, H, W\)"):
        load_bag(str(tmp_path / "flat.npy"))
    np.savez(tmp_path / "two.npz", a=grey, b=grey)
    with pytest.raises(DataError, match="one array or one named 'volume'"):
        load_bag(str(tmp_path / "two.npz"))
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="cannot read the volume"):  # never unpickled
        load_bag(str(tmp_path / "obj.npy"))


def test_folders_in_natural_order_and_lists_of_images(tmp_path):
    folder = tmp_path / "exam"
    folder.mkdir()
    for i in (1, 2, 10):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(folder / f"slice{i}.png")
    (folder / "notes.txt").write_text("not an image")
    x = load_bag(str(folder))
    assert x[:, 0, 0, 0].tolist() == [1, 2, 10]  # slice2 before slice10
    listed = load_bag(f"{folder / 'slice10.png'}|{folder / 'slice1.png'}")
    assert listed[:, 0, 0, 0].tolist() == [10, 1]
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(folder / "slice3.png")
    with pytest.raises(DataError, match=r"the images of one bag differ in size: 8x8 .*slice1\.png.* and 9x8 .*slice3\.png"):
        load_bag(str(folder))


def test_subsampling_long_bags():
    bag = torch.arange(10).view(10, 1, 1, 1).expand(10, 3, 2, 2)
    assert subsample(bag, 4, training=False)[:, 0, 0, 0].tolist() == [0, 3, 6, 9]  # evenly spaced, ends included
    torch.manual_seed(0)
    kept = subsample(bag, 4, training=True)[:, 0, 0, 0].tolist()
    assert len(kept) == 4 and kept == sorted(kept) and len(set(kept)) == 4
    assert subsample(bag, None, training=True) is bag and subsample(bag, 20, training=False) is bag


@pytest.fixture
def volumes_csv(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "vol").mkdir()
    rows = ["filename,labels"]
    for i, (n, labels) in enumerate([(3, "a"), (5, "b"), (2, "a b"), (4, "")]):
        np.save(tmp_path / "vol" / f"{i}.npy", rng.integers(0, 256, (n, 12, 12), dtype=np.uint8))
        rows.append(f"vol/{i}.npy,{labels}")
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_the_csv_reader_takes_volumes_and_packs_batches_without_padding(volumes_csv):
    from mlcls.datasets import CSVDataset, build_dataloader
    from mlcls.datasets.bags import BagBatch

    ds = CSVDataset("l.csv", ["a", "b"], [{"type": "ToFloatNormalize"}], data_root=str(volumes_csv))
    assert ds.bags and len(ds) == 4
    loader = build_dataloader({"batch_size": 3, "sampler": {"type": "RepeatFactorSampler", "oversample_thr": 0.5}}, dataset=ds)
    batch, targets = next(iter(loader))
    assert isinstance(batch, BagBatch) and len(batch) == 3 and targets.shape == (3, 2)
    x, sizes = batch.views[""]
    assert x.shape == (int(sizes.sum()), 3, 12, 12) and set(sizes.tolist()) <= {2, 3, 4, 5}
    one = batch.select(1).views[""]
    assert torch.equal(one[0], x[int(sizes[0]) : int(sizes[:2].sum())])


def test_one_random_draw_per_bag_and_per_view(tmp_path):
    from mlcls.datasets import CSVDataset

    slice_ = np.random.default_rng(2).integers(0, 256, (20, 20), dtype=np.uint8)
    (tmp_path / "e").mkdir()
    for view in ("ax", "cor"):
        np.save(tmp_path / "e" / f"{view}.npy", np.stack([slice_] * 6))  # six identical slices
    (tmp_path / "l.csv").write_text("filename,labels\ne/{view}.npy,a\n")
    pipeline = [{"type": "RandomResizedCrop", "size": 12}, {"type": "RandomHorizontalFlip"}, {"type": "ColorJitter", "brightness": 0.5}]
    ds = CSVDataset("l.csv", ["a"], pipeline, data_root=str(tmp_path), views=["ax", "cor"])
    differ = 0
    for seed in range(8):
        torch.manual_seed(seed)
        sample, _ = ds[0]
        for bag in sample.values():
            assert bag.shape == (6, 3, 12, 12) and all(torch.equal(bag[0], s) for s in bag)  # the same crop, flip, jitter
        differ += not torch.equal(sample["ax"], sample["cor"])
    assert differ >= 6  # each view draws its own parameters


def test_mrnet_layout(tmp_path):
    from mlcls.datasets import MRNetDataset
    from mlcls.datasets.mrnet import make_mrnet_demo

    root = make_mrnet_demo(tmp_path / "mrnet", seed=3, exams={"train": 12, "valid": 6}, slices=(3, 5))
    ds = MRNetDataset(str(root), "valid", views=["coronal", "axial"])
    assert ds.classes == ["abnormal", "acl", "meniscus"] and len(ds) == 6
    expected = {c: [int(line.split(",")[1]) for line in (root / f"valid-{c}.csv").read_text().split()] for c in ds.classes}
    for i in range(6):
        assert ds.get_target(i).tolist() == [expected[c][i] for c in ds.classes]
        assert ds.view_paths(i) == {v: str(root / "valid" / v / f"{i:04d}.npy") for v in ("coronal", "axial")}
    sample, _ = ds[2]
    assert set(sample) == {"coronal", "axial"} and 3 <= sample["axial"].shape[0] <= 5
    assert torch.equal(sample["axial"][:, 0], torch.from_numpy(np.load(root / "valid" / "axial" / "0002.npy")))
    # ACL and meniscal tears are abnormal
    assert all(ds.get_target(i)[0] == 1 for i in range(6) if ds.get_target(i)[1:].any())
    # one model per task (the MRNet paper's set-up), or the tasks in another order
    for classes in (["acl"], "acl", ["meniscus", "abnormal"]):
        sub = MRNetDataset(str(root), "valid", views=["axial"], classes=classes)
        names = [classes] if isinstance(classes, str) else classes
        assert sub.classes == names
        assert [sub.get_target(i).tolist() for i in range(6)] == [[expected[c][i] for c in names] for i in range(6)]
    for bad in (["ACL"], ["acl", "acl"], []):
        with pytest.raises(DataError, match=r"MRNetDataset.classes: expected a subset of abnormal, acl, meniscus"):
            MRNetDataset(str(root), "valid", classes=bad)
    (root / "valid-acl.csv").write_text("0000,1\n0001,x\n")
    with pytest.raises(DataError, match=r"valid-acl\.csv:2: expected 'exam id,0\|1'"):
        MRNetDataset(str(root), "valid")
    (root / "valid-acl.csv").write_text("0000,1\n0001,0\n")
    with pytest.raises(DataError, match=r"valid-acl\.csv: lists other exams than valid-abnormal\.csv"):
        MRNetDataset(str(root), "valid")
    with pytest.raises(DataError, match="MRNetDataset.views: expected some of sagittal, coronal, axial"):
        MRNetDataset(str(root), "valid", views=["frontal"])


def test_check_dataset_and_bad_bags(tmp_path, volumes_csv):
    from mlcls.datasets import CSVDataset
    from mlcls.datasets.check import check_images

    (volumes_csv / "vol" / "1.npy").write_bytes(b"\x93NUMPY garbage")
    ds = CSVDataset("l.csv", ["a", "b"], data_root=str(volumes_csv))
    problems = check_images(ds)
    assert [(p["kind"], p["path"].rsplit("/", 1)[-1]) for p in problems] == [("unreadable", "1.npy")]
    skip = CSVDataset("l.csv", ["a", "b"], data_root=str(volumes_csv), on_bad_image="skip")
    assert [skip[i][0].shape[0] for i in range(4)] == [3, 2, 2, 4] and skip.num_bad_images == 1
    with pytest.raises(DataError, match="cache: true is for datasets of single images"):
        CSVDataset("l.csv", ["a", "b"], data_root=str(volumes_csv), cache=True)
