"""VOC, COCO, TXT-list and mmcls-JSON readers on fixtures written in their real layouts; decoding
of odd image modes; the shared-memory cache; the bad-image policy and tools/check_dataset.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mlcls.apis.model import check_same_classes
from mlcls.datasets import COCODataset, CSVDataset, MMClsJSONDataset, TXTListDataset, VOCDataset, load_image
from mlcls.datasets.builder import build_dataloader
from mlcls.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]


def write_img(path: Path, color=(200, 30, 30), size=(24, 16), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


# -- Pascal VOC ---------------------------------------------------------------------------------
def voc_xml(filename: str, objects: list[tuple[str, int]]) -> str:
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>1</xmin></bndbox></object>" for n, d in objects)
    return f"<annotation><folder>VOC2007</folder><filename>{filename}</filename>{objs}</annotation>"


@pytest.fixture
def voc_root(tmp_path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2007"
    anns = {
        "000001": [("dog", 0), ("person", 0)],
        "000002": [("cat", 1)],  # only a difficult cat
        "000003": [("cat", 1), ("cat", 0), ("car", 1)],  # a difficult and a clear cat
    }
    for image_id, objs in anns.items():
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.jpg", objs))
        write_img(root / "JPEGImages" / f"{image_id}.jpg")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n000003\n")
    return root


def targets(ds) -> list[list[float]]:
    return [ds.get_target(i).tolist() for i in range(len(ds))]


def cls_targets(ds, names):
    idx = [ds.classes.index(n) for n in names]
    return [[t[i] for i in idx] for t in targets(ds)]


@pytest.mark.parametrize(
    "mode, expected",
    [
        # columns: cat, car, dog, person
        ("ignore", [[0, 0, 1, 1], [-1, 0, 0, 0], [1, -1, 0, 0]]),
        ("positive", [[0, 0, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]),
        ("negative", [[0, 0, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]]),
    ],
)
def test_voc_difficult_handling(voc_root, mode, expected):
    ds = VOCDataset(data_root=str(voc_root), split="trainval", difficult_as=mode)
    assert len(ds.classes) == 20 and ds.classes[0] == "aeroplane"
    assert cls_targets(ds, ["cat", "car", "dog", "person"]) == expected
    img, target = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 16, 24) and target.shape == (20,)
    assert ds.source(1).endswith("trainval.txt:2")


def test_voc_errors_name_the_file(voc_root):
    (voc_root / "Annotations" / "000002.xml").write_text("<annotation><object><name>cat</name>")
    with pytest.raises(DataError, match=r"000002.xml: malformed XML"):
        VOCDataset(data_root=str(voc_root))
    (voc_root / "Annotations" / "000002.xml").write_text(voc_xml("000002.jpg", [("kitten", 0)]))
    with pytest.raises(DataError, match=r"000002.xml: unknown class 'kitten'"):
        VOCDataset(data_root=str(voc_root))
    with pytest.raises(DataError, match="VOC split list not found"):
        VOCDataset(data_root=str(voc_root), split="test")


# -- COCO ---------------------------------------------------------------------------------------
@pytest.fixture
def coco_root(tmp_path) -> Path:
    root = tmp_path / "coco"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_img(root / "train2014" / name)
    data = {
        "images": [{"id": 10, "file_name": "a.jpg"}, {"id": 20, "file_name": "b.jpg"}, {"id": 30, "file_name": "c.jpg"}],
        # non-contiguous ids, listed out of order
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 1, "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 90, "iscrowd": 0},
            {"id": 3, "image_id": 10, "category_id": 1, "iscrowd": 0},
            {"id": 4, "image_id": 30, "category_id": 18, "iscrowd": 1},
        ],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(data))
    return root


def test_coco_ids_mapped_by_id_order_and_unannotated_images_kept(coco_root):
    ann = str(coco_root / "annotations" / "instances_train2014.json")
    ds = COCODataset(ann_file=ann, data_root=str(coco_root / "train2014"))
    assert ds.classes == ["person", "dog", "toothbrush"]  # ordered by category id 1, 18, 90
    assert targets(ds) == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]  # b.jpg: no annotation, all negative
    assert targets(COCODataset(ann_file=ann, data_root=str(coco_root / "train2014"), crowd_as="ignore"))[2] == [0, -1, 0]
    dropped = COCODataset(ann_file=ann, data_root=str(coco_root / "train2014"), drop_empty=True)
    assert len(dropped) == 2 and dropped.image_path(1).endswith("c.jpg")
    sub = COCODataset(ann_file=ann, data_root=str(coco_root / "train2014"), classes=["dog", "person"])
    assert targets(sub) == [[0, 1], [0, 0], [1, 0]]


def test_coco_bad_references_are_reported(coco_root):
    path = coco_root / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 99, "image_id": 12345, "category_id": 1})
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="annotations\\[4\\] \\(id 99\\) refers to image_id 12345"):
        COCODataset(ann_file=str(path), data_root=str(coco_root / "train2014"))
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"instances_train2014.json:2:\d+: malformed JSON"):
        COCODataset(ann_file=str(path))


# -- TXT lists and mmcls JSON ----------------------------------------------------------------------
def test_txt_list_with_comments_names_and_indices(tmp_path):
    for n in ("x/1.png", "x/2.png", "x/ö3.png"):
        write_img(tmp_path / n)
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n")
    (tmp_path / "names.txt").write_text("# header comment\nx/1.png cat bird\n\nx/2.png   # no labels\nx/ö3.png dog\n")
    ds = TXTListDataset("names.txt", "classes.txt", data_root=str(tmp_path))
    assert targets(ds) == [[1, 0, 1], [0, 0, 0], [0, 1, 0]] and ds.source(2).endswith("names.txt:5")
    assert ds.image_path(2).endswith("x/ö3.png") and ds[2][0].shape == (3, 16, 24)  # non-ASCII paths survive
    (tmp_path / "idx.txt").write_text("x/1.png 0 2\nx/2.png\nx/ö3.png 1 1\n")
    assert targets(TXTListDataset("idx.txt", ["cat", "dog", "bird"], data_root=str(tmp_path), label_type="index")) == targets(ds)
    (tmp_path / "bad.txt").write_text("x/1.png 0\nx/2.png 7\n")
    with pytest.raises(DataError, match=r"bad.txt:2: class index 7 out of range 0..2"):
        TXTListDataset("bad.txt", ["cat", "dog", "bird"], data_root=str(tmp_path), label_type="index")
    with pytest.raises(DataError, match=r"names.txt:2: unknown class 'cat'"):
        TXTListDataset("names.txt", ["dog", "bird"], data_root=str(tmp_path))


def test_mmcls_json_loads_unchanged(tmp_path):
    for n in ("a.jpg", "b.jpg"):
        write_img(tmp_path / "imgs" / n)
    ann = {
        "metainfo": {"classes": ["cat", "dog", "bird"]},
        "data_list": [{"img_path": "imgs/a.jpg", "gt_label": [0, 2]}, {"img_path": "imgs/b.jpg", "gt_label": 1}],
    }
    (tmp_path / "train.json").write_text(json.dumps(ann))
    ds = MMClsJSONDataset("train.json", data_root=str(tmp_path))
    assert ds.classes == ["cat", "dog", "bird"] and targets(ds) == [[1, 0, 1], [0, 1, 0]]
    ann["data_list"][1]["gt_label"] = [5]
    (tmp_path / "train.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match=r"data_list\[1\] gt_label 5"):
        MMClsJSONDataset("train.json", data_root=str(tmp_path))


def test_class_lists_must_agree_between_splits():
    with pytest.raises(ConfigError, match="first difference at index 1: 'dog' vs 'bird'"):
        check_same_classes(["cat", "dog"], ["cat", "bird"], "train_dataloader", "val_dataloader")


# -- decoding -----------------------------------------------------------------------------------
def test_decode_grayscale_rgba_palette_and_exif_rotation(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (12, 20), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = load_image(str(tmp_path / "g.png"))
    assert out.shape == (3, 12, 20) and all(torch.equal(out[c], torch.from_numpy(gray)) for c in range(3))
    rgba = rng.integers(0, 255, (12, 20, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert torch.equal(load_image(str(tmp_path / "a.png")), torch.from_numpy(rgba[..., :3]).permute(2, 0, 1))
    pal = Image.fromarray(rng.integers(0, 255, (12, 20, 3), dtype=np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    assert torch.equal(load_image(str(tmp_path / "p.png")), torch.from_numpy(np.array(pal.convert("RGB"))).permute(2, 0, 1))
    pal.convert("RGB").save(tmp_path / "p.bmp")  # a format torchvision does not decode: Pillow fallback
    assert load_image(str(tmp_path / "p.bmp")).shape == (3, 12, 20)
    # EXIF orientation 6 (rotate 90 CW to display): a 20x12 stored JPEG shows as 12 wide, 20 high
    img = Image.new("RGB", (20, 12), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 4, 12))  # blue band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(str(tmp_path / "r.jpg"))
    assert out.shape == (3, 20, 12)
    assert out[2, :3, :].float().mean() > 200 and out[0, -3:, :].float().mean() > 200  # blue on top after rotation


# -- cache and bad images -------------------------------------------------------------------------
def test_cache_gives_identical_tensors_through_workers(shapes_root):
    pipe = [{"type": "Resize", "size": [20, 20]}, {"type": "RandomHorizontalFlip"}, {"type": "ToFloatNormalize"}]
    kw = dict(ann_file="val.csv", classes="classes.txt", data_root=str(shapes_root), pipeline=pipe)
    plain, cached = CSVDataset(**kw), CSVDataset(**kw, cache=True)
    assert cached._cache.nbytes == len(cached) * 3 * 20 * 20  # stored after the Resize
    batches = []
    for ds in (plain, cached):
        loader = build_dataloader(
            {"batch_size": 16, "num_workers": 2, "sampler": {"type": "DefaultSampler", "shuffle": True}}, seed=3, dataset=ds
        )
        batches.append([b for b in loader])
    for (xa, ya), (xb, yb) in zip(*batches):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # same random flips too: same seeds


def bad_image_dataset(tmp_path, shapes_root, policy):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    lines = ["filename,labels"]
    for p in sorted((shapes_root / "images" / "val").glob("*.png"))[:6]:
        (tmp_path / "imgs" / p.name).write_bytes(p.read_bytes())
        lines.append(f"imgs/{p.name},circle")
    (tmp_path / "imgs" / "zero.png").write_bytes(b"")
    (tmp_path / "imgs" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg \xff\xd9")
    lines[3:3] = ["imgs/zero.png,square", "imgs/corrupt.jpg,star"]  # rows 3 and 4 (file lines 4 and 5)
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    return CSVDataset(
        "list.csv", str(shapes_root / "classes.txt"), [{"type": "ToFloatNormalize"}], data_root=str(tmp_path), on_bad_image=policy
    )


def test_bad_images_raise_with_path_and_line(tmp_path, shapes_root):
    ds = bad_image_dataset(tmp_path, shapes_root, "raise")
    with pytest.raises(DataError, match=r"cannot decode image .*zero.png \(listed at .*list.csv:4\)"):
        ds[2]
    with pytest.raises(DataError, match=r"corrupt.jpg \(listed at .*list.csv:5\).*'on_bad_image: skip'.*check_dataset.py"):
        ds[3]


def test_bad_images_skipped_counted_and_substituted(tmp_path, shapes_root, caplog):
    ds = bad_image_dataset(tmp_path, shapes_root, "skip")
    loader = build_dataloader({"batch_size": 4, "num_workers": 2}, dataset=ds, shuffle=False)
    seen = torch.cat([y for _, y in loader])
    assert len(seen) == 8 and ds.num_bad_images == 2  # counted across worker processes
    x2, y2 = ds[2]  # the zero-byte file: replaced by the next readable sample (index 4)
    x4, y4 = ds[4]
    assert torch.equal(x2, x4) and torch.equal(y2, y4)


def test_check_dataset_reports_every_problem_with_its_line(tmp_path, shapes_root):
    bad_image_dataset(tmp_path, shapes_root, "raise")
    good = sorted((tmp_path / "imgs").glob("0*.png"))
    trunc = tmp_path / "imgs" / "trunc.png"
    trunc.write_bytes(good[0].read_bytes()[:-20])
    csv = (tmp_path / "list.csv").read_text().rstrip("\n").split("\n")
    (tmp_path / "imgs" / "extra.png").write_bytes(good[1].read_bytes())
    (tmp_path / "imgs" / "page.png").write_text("<html>404 Not Found</html>")  # a failed download saved as an image
    csv += [
        "imgs/trunc.png,circle",
        "imgs/missing.png,circle",
        csv[1],
        "imgs/extra.png,circel star",
        "imgs/extra2.png",
        "imgs/page.png,star",
    ]
    # truncated, missing, duplicate, an unknown class, a row without the labels column
    (tmp_path / "list.csv").write_text("\n".join(csv) + "\n")
    ds_cfg = {"type": "CSVDataset", "ann_file": "list.csv", "classes": str(shapes_root / "classes.txt"), "data_root": str(tmp_path)}
    cfg = {"train_dataloader": {"dataset": ds_cfg}, "val_dataloader": {"dataset": {**ds_cfg, "ann_file": "nope.csv"}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run(
        [sys.executable, "tools/check_dataset.py", tmp_path / "cfg.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert (
        "[train] 13 images, 10 classes: 2 annotation, 1 missing, 1 zero-byte, 1 not-an-image, 1 truncated, 1 unreadable, 1 duplicate" in out
    )
    assert "no image signature at its start (it holds text" in out and "404" not in out
    assert "list.csv:13: unknown class 'circel'; did you mean 'circle'?" in out and "list.csv:14: expected 2 columns" in out
    assert "zero-byte  " in out and "list.csv:4" in out and "list.csv:5" in out and "trunc.png" in out
    assert "missing.png" in out and "also listed at" in out
    assert "[val] annotation error: annotation file not found" in out and "FAILED: 9 problem(s)" in out
    assert "warning    7 class(es) with no positive image" in out  # legal, but worth a word
    buf = io.StringIO(out)
    assert sum(1 for line in buf if line.startswith("  ") and "warning" not in line) == 8


def test_image_pipeline_equals_v2_compose_with_the_same_random_numbers():
    import torchvision.transforms.v2 as T

    from mlcls.datasets.transforms import build_pipeline

    cfgs = [
        {"type": "RandomResizedCrop", "size": 24},
        {"type": "RandomHorizontalFlip"},
        {"type": "RandomVerticalFlip", "p": 0.3},
        {"type": "ColorJitter", "brightness": 0.4, "hue": 0.1},
        {"type": "RandAugment", "num_ops": 2},  # has its own forward: called normally
        {"type": "ToFloatNormalize"},
        {"type": "RandomErasing", "p": 0.5},
    ]
    ours = build_pipeline(cfgs)
    reference = T.Compose(ours.transforms)
    img = torch.randint(0, 256, (3, 40, 32), dtype=torch.uint8)
    for seed in range(20):
        torch.manual_seed(seed)
        a = ours(img)
        torch.manual_seed(seed)
        b = reference(img)
        assert torch.equal(a, b), seed
    torch.manual_seed(0)
    ours(img)
    after_ours = torch.rand(1)
    torch.manual_seed(0)
    reference(img)
    assert torch.equal(after_ours, torch.rand(1))  # the same random numbers were consumed


def test_collect_errors_lists_every_bad_entry_and_keeps_the_rest(tmp_path, coco_root):
    for n in ("1.png", "2.png"):
        write_img(tmp_path / n)
    (tmp_path / "l.txt").write_text("1.png 0 9\n2.png x 1\n")
    ds = TXTListDataset("l.txt", ["a", "b"], data_root=str(tmp_path), label_type="index", collect_errors=True)
    assert targets(ds) == [[1, 0], [0, 1]]
    assert [e.split(": ", 1)[0].rsplit("/", 1)[-1] for e in ds.annotation_errors] == ["l.txt:1", "l.txt:2"]
    path = coco_root / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    data["annotations"] += [{"id": 98, "image_id": 777, "category_id": 1}, {"id": 99, "image_id": 10, "category_id": 5}]
    path.write_text(json.dumps(data))
    coco = COCODataset(ann_file=str(path), data_root=str(coco_root / "train2014"), collect_errors=True)
    assert len(coco.annotation_errors) == 2 and "image_id 777" in coco.annotation_errors[0] and "category_id 5" in coco.annotation_errors[1]
    assert targets(coco)[0] == [1, 0, 1]
