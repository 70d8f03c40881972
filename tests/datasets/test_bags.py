"""Samples made of many images: volumes, folders and lists of images, views, the MRNet layout,
transforms shared by the slices of a bag, packing, and the tools that read datasets."""

from __future__ import annotations

import warnings

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
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLCLS_VOLUME_UINT16", "full")
        assert torch.equal(load_bag(str(tmp_path / "u16.npy")), x)  # 16 bits -> 8 as 16-bit images are
    np.save(tmp_path / "f1.npy", grey / 255.0)
    assert torch.equal(load_bag(str(tmp_path / "f1.npy")), x)
    np.save(tmp_path / "f255.npy", grey.astype(np.float32))
    assert torch.equal(load_bag(str(tmp_path / "f255.npy")), x)
    np.save(tmp_path / "hu.npy", grey.astype(np.float32) - 1000)  # CT Hounsfield units: say so, never clip silently
    with pytest.raises(DataError, match=r"hu\.npy: float volume values must be in 0\.\.1 or 0\.\.255, found -1000"):
        load_bag(str(tmp_path / "hu.npy"))
    np.save(tmp_path / "flat.npy", grey[0])
    with pytest.raises(DataError, match=r"expected a volume of shape \(slices, H, W\)"):
        load_bag(str(tmp_path / "flat.npy"))
    np.savez(tmp_path / "two.npz", a=grey, b=grey)
    with pytest.raises(DataError, match="one array or one named 'volume'"):
        load_bag(str(tmp_path / "two.npz"))
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy: holds Python objects \(a pickled array\), which mlcls never unpickles"):
        load_bag(str(tmp_path / "obj.npy"))
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(DataError, match=r"text\.npy: not a NumPy \.npy array"):  # not "pickled data"
        load_bag(str(tmp_path / "text.npy"))


def test_uint16_volumes_keep_their_information_by_a_stated_rule(tmp_path, monkeypatch):
    # 12-bit MRI, and values that never leave the low byte, became all zeros with a fixed >> 8
    low = np.arange(0, 200, dtype=np.uint16).reshape(2, 10, 10)
    np.save(tmp_path / "low.npy", low)
    out = load_bag(str(tmp_path / "low.npy"))[:, 0].numpy()
    assert np.array_equal(out, np.rint(low * (255 / 199)).astype(np.uint8)) and out.max() == 255  # default: range
    monkeypatch.setenv("MLCLS_VOLUME_UINT16", "full")
    with pytest.raises(DataError, match=r"low\.npy: volume_uint16 is 'full' \(x >> 8\) but every value is below 256 \(max 199\)"):
        load_bag(str(tmp_path / "low.npy"))
    monkeypatch.setenv("MLCLS_VOLUME_UINT16", "12bit")
    mri = np.array([0, 16, 4095], dtype=np.uint16).reshape(1, 1, 3)
    np.save(tmp_path / "mri.npy", mri)
    assert load_bag(str(tmp_path / "mri.npy"))[0, 0, 0].tolist() == [0, 1, 255]
    np.save(tmp_path / "mri.npy", mri + 1)
    with pytest.raises(DataError, match=r"volume_uint16 is '12bit' but the volume holds 4096 \(above 4095\)"):
        load_bag(str(tmp_path / "mri.npy"))
    monkeypatch.setenv("MLCLS_VOLUME_UINT16", "linear")
    with pytest.raises(DataError, match="MLCLS_VOLUME_UINT16: expected one of range, full, 12bit, got 'linear'"):
        load_bag(str(tmp_path / "mri.npy"))


def test_volumes_are_checked_from_their_header_before_they_are_read(tmp_path, monkeypatch):
    # 4,000 slices of 256x256 (a header only: nothing past it is read, so no data is needed)
    with open(tmp_path / "long.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (4000, 256, 256)})
    with pytest.raises(
        DataError, match=r"long\.npy: 4000 slices of shape \(256, 256\) is above the limit of 2048 slices, refused before reading"
    ):
        load_bag(str(tmp_path / "long.npy"))
    monkeypatch.setenv("MLCLS_MAX_VOLUME_SLICES", "0")  # no slice limit: the byte limit (1 GiB) still holds
    with open(tmp_path / "wide.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (1200, 512, 512)})
    with pytest.raises(DataError, match=r"wide\.npy: 1200 MiB of float32 data \(shape \(1200, 512, 512\)\) is above the limit of 1024 MiB"):
        load_bag(str(tmp_path / "wide.npy"))
    np.savez(tmp_path / "z.npz", volume=np.zeros((5, 4, 4), np.uint8))
    monkeypatch.setenv("MLCLS_MAX_VOLUME_SLICES", "4")
    with pytest.raises(DataError, match=r"z\.npz: 5 slices .* above the limit of 4 slices"):  # .npz members too
        load_bag(str(tmp_path / "z.npz"))
    # NaN: the message says NaN and the range of the finite values; all-NaN without a numpy warning
    vol = np.full((2, 3, 3), 100, np.float32)
    vol[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", vol)
    with pytest.raises(DataError, match=r"nan\.npy: float volume holds 1 NaN value\(s\) of 18; the finite values span 100\.\.100"):
        load_bag(str(tmp_path / "nan.npy"))
    np.save(tmp_path / "allnan.npy", np.full((2, 3, 3), np.nan, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"allnan\.npy: float volume holds 18 NaN value\(s\) of 18; values must be finite"):
            load_bag(str(tmp_path / "allnan.npy"))


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


def test_symlinks_out_of_the_data_root_and_missing_views_are_named(tmp_path):
    from mlcls.datasets import MRNetDataset
    from mlcls.datasets.check import check_images
    from mlcls.datasets.mrnet import make_mrnet_demo

    root = make_mrnet_demo(tmp_path / "mrnet", seed=3, exams={"train": 4, "valid": 3}, slices=(3, 4))
    outside = tmp_path / "elsewhere.npy"
    np.save(outside, np.zeros((3, 32, 32), np.uint8))
    link = root / "valid" / "axial" / "0001.npy"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(DataError, match=r"0001\.npy \(listed at .*valid-abnormal\.csv:2\) is a symbolic link that leads outside data_root"):
        MRNetDataset(str(root), "valid")  # at start-up
    ds = MRNetDataset(str(root), "valid", check_files=False)
    with pytest.raises(DataError, match="leads outside data_root .* allow_outside_root: true"):
        ds[1]  # and when it is read
    assert [p["kind"] for p in check_images(ds)] == ["outside-root"]
    assert MRNetDataset(str(root), "valid", allow_outside_root=True)[1][0]["axial"].shape[0] == 3  # asked for: followed
    # a link that stays inside the root is fine
    link.unlink()
    link.symlink_to(root / "valid" / "axial" / "0002.npy")
    assert len(MRNetDataset(str(root), "valid")) == 3
    # a missing view names its file, not a '{view}' template
    (root / "valid" / "coronal" / "0002.npy").unlink()
    with pytest.raises(DataError) as e:
        MRNetDataset(str(root), "valid")
    assert "1 sample(s) not found: " + str(root / "valid" / "coronal" / "0002.npy") + " (" in str(e.value) and "{view}" not in str(e.value)
    problems = check_images(MRNetDataset(str(root), "valid", check_files=False))
    assert [(p["kind"], p["path"]) for p in problems] == [("missing", str(root / "valid" / "coronal" / "0002.npy"))]


def test_a_stratified_holdout_splits_a_reader_in_two_disjoint_parts(tmp_path):
    from mlcls.datasets import MRNetDataset
    from mlcls.datasets.mrnet import make_mrnet_demo

    root = make_mrnet_demo(tmp_path / "mrnet", seed=1, exams={"train": 80, "valid": 4}, slices=(3, 4))
    full = MRNetDataset(str(root), "train", check_files=False)
    parts = {p: MRNetDataset(str(root), "train", holdout={"fraction": 0.25, "part": p, "seed": 3}) for p in ("train", "val")}
    names = {p: set(d.label_index.paths.tolist()) for p, d in parts.items()}
    assert not names["train"] & names["val"] and names["train"] | names["val"] == set(full.label_index.paths.tolist())
    assert len(parts["val"]) == 20
    # stratified: each class's positives split 1:3 up to one
    pos = {p: d.class_counts() for p, d in parts.items()}
    assert np.all(np.abs(pos["val"] - full.class_counts() * 0.25) <= 1), (pos, full.class_counts())
    # labels and lines travel with their exam
    for i in range(len(parts["val"])):
        j = full.label_index.paths.tolist().index(parts["val"].label_index.paths[i])
        assert torch.equal(parts["val"].get_target(i), full.get_target(j)) and parts["val"].source(i) == full.source(j)
    again = MRNetDataset(str(root), "train", holdout={"fraction": 0.25, "part": "val", "seed": 3})
    other = MRNetDataset(str(root), "train", holdout={"fraction": 0.25, "part": "val", "seed": 4})
    assert again.label_index.paths.tolist() == parts["val"].label_index.paths.tolist() != other.label_index.paths.tolist()
    for bad, msg in [({"fraction": 0.2}, "holdout.part: expected 'train'"), ({"part": "val", "fraction": 1.5}, r"fraction: expected a number in \(0, 1\)"),
                     ({"part": "val", "frac": 0.2}, "expected {fraction: 0.15, part: train|val, seed: 0}")]:  # fmt: skip
        with pytest.raises(DataError, match=msg):
            MRNetDataset(str(root), "train", holdout=bad)


def test_which_splits_read_the_same_samples_is_decided_by_what_they_read(tmp_path):
    from mlcls.apis.loaders import shared_samples

    def ds(**kw):
        return {"dataset": {"type": "MRNetDataset", "data_root": str(tmp_path), "pipeline": [], **kw}}

    cfg = {"val_dataloader": ds(split="valid"), "test_dataloader": ds(split="valid", views=["axial"])}
    assert "val_dataloader and test_dataloader read the same samples" in shared_samples(cfg, "val", "test")
    cfg["test_dataloader"] = ds(split="train")
    assert shared_samples(cfg, "val", "test") is None
    cfg = {"train_dataloader": ds(split="train", holdout={"fraction": 0.2, "part": "train"}),
           "val_dataloader": ds(split="train", holdout={"fraction": 0.2, "part": "val"}), "test_dataloader": ds(split="train")}  # fmt: skip
    assert shared_samples(cfg, "train", "val") is None  # the two parts of one hold-out
    assert "(hold-out part val) and test_dataloader read the same samples" in shared_samples(cfg, "val", "test")  # a part of the whole
    csv = {"type": "CSVDataset", "data_root": str(tmp_path), "classes": "c.txt"}
    cfg = {
        "val_dataloader": {"dataset": {**csv, "ann_file": "a.csv"}},
        "test_dataloader": {"dataset": {**csv, "ann_file": str(tmp_path / "a.csv")}},
    }
    assert shared_samples(cfg, "val", "test")  # relative and absolute: the same file


def test_the_same_samples_guard_sees_through_links_and_copies(tmp_path):
    """A data_root or ann_file linked to the val files, or a byte-identical copy of val.csv, reads
    the val samples: reporting on it after tuning on val is flagged, not called clean."""
    from mlcls.apis.loaders import shared_samples

    data = tmp_path / "data"
    data.mkdir()
    (data / "val.csv").write_text("filename,labels\na.png,x\nb.png,\n")
    (tmp_path / "link").symlink_to(data)
    (data / "test_link.csv").symlink_to(data / "val.csv")
    (data / "copy.csv").write_bytes((data / "val.csv").read_bytes())
    (data / "test.csv").write_text("filename,labels\nc.png,x\n")
    csv = {"type": "CSVDataset", "classes": "c.txt"}

    def cfg(root, ann):
        return {"val_dataloader": {"dataset": {**csv, "data_root": str(data), "ann_file": "val.csv"}},
                "test_dataloader": {"dataset": {**csv, "data_root": str(root), "ann_file": ann}}}  # fmt: skip

    for root, ann in [(tmp_path / "link", "val.csv"), (data, "test_link.csv"), (data, "copy.csv")]:
        why = shared_samples(cfg(root, ann), "val", "test")
        assert why and f"ann_file={data / 'val.csv'}" in why, (root, ann)
    assert shared_samples(cfg(data, "test.csv"), "val", "test") is None
