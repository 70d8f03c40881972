import numpy as np
import pytest
import torch
from PIL import Image

from mlcls.datasets import CSVDataset, build_dataloader
from mlcls.errors import DataError


@pytest.fixture
def img_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 10, 3), i * 40, np.uint8)).save(d / f"{i}.png")
    return d


def write_csv(path, rows, header="filename,labels"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_parses_labels_into_compact_index(tmp_path, img_dir):
    ann = write_csv(tmp_path / "a.csv", ["imgs/0.png,cat dog", "imgs/1.png,", "imgs/2.png,dog", '"imgs/3.png","bird cat"'])
    ds = CSVDataset(ann, classes=["cat", "dog", "bird"], data_root=str(tmp_path), pipeline=[])
    assert len(ds) == 4
    assert ds.offsets.dtype == np.int64 and ds.label_ids.dtype == np.int32  # CSR arrays, no dict per image
    assert ds.dense_targets(range(len(ds))).tolist() == [[1, 1, 0], [0, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert ds.class_counts().tolist() == [2, 2, 1]
    img, target = ds[3]
    assert img.dtype == torch.uint8 and img.shape == (3, 8, 10)
    assert target.tolist() == [1.0, 0.0, 1.0]


def test_classes_from_text_file(tmp_path, img_dir):
    (tmp_path / "classes.txt").write_text("cat\n\ndog\n")
    ann = write_csv(tmp_path / "a.csv", ["imgs/0.png,dog"])
    ds = CSVDataset(ann, classes=str(tmp_path / "classes.txt"), data_root=str(tmp_path))
    assert ds.classes == ["cat", "dog"] and ds.get_target(0).tolist() == [0.0, 1.0]


def test_unknown_class_names_file_and_line(tmp_path, img_dir):
    ann = write_csv(tmp_path / "a.csv", ["imgs/0.png,cat", "imgs/1.png,dgo"])
    with pytest.raises(DataError, match=r"a.csv:3: unknown class 'dgo'; did you mean 'dog'"):
        CSVDataset(ann, classes=["cat", "dog"], data_root=str(tmp_path))


def test_missing_header(tmp_path, img_dir):
    ann = write_csv(tmp_path / "a.csv", ["imgs/0.png,cat"], header="path,tags")
    with pytest.raises(DataError, match=r"a.csv:1: expected the header 'filename,labels'"):
        CSVDataset(ann, classes=["cat"], data_root=str(tmp_path))


def test_missing_image_names_path_and_line(tmp_path, img_dir):
    ann = write_csv(tmp_path / "a.csv", ["imgs/0.png,cat", "imgs/missing.png,cat"])
    with pytest.raises(DataError, match=r"missing.png \(.*a.csv:3\)"):
        CSVDataset(ann, classes=["cat"], data_root=str(tmp_path))
    ds = CSVDataset(ann, classes=["cat"], data_root=str(tmp_path), check_files=False)
    with pytest.raises(DataError, match=r"image file not found: .*missing.png \(listed at .*a.csv:3\)"):
        ds[1]


def test_empty_class_list_and_missing_annotation_file(tmp_path, img_dir):
    ann = write_csv(tmp_path / "a.csv", ["imgs/0.png,"])
    with pytest.raises(DataError, match="class list is empty"):
        CSVDataset(ann, classes=[], data_root=str(tmp_path))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="empty.txt: the class list is empty"):
        CSVDataset(ann, classes=str(tmp_path / "empty.txt"), data_root=str(tmp_path))
    with pytest.raises(DataError, match="annotation file not found"):
        CSVDataset(tmp_path / "none.csv", classes=["a"], data_root=str(tmp_path))


def test_pipeline_from_registry_names(shapes_root):
    ds = CSVDataset(
        shapes_root / "train.csv",
        classes=str(shapes_root / "classes.txt"),
        data_root=str(shapes_root),
        pipeline=[
            {"type": "RandomResizedCrop", "size": 24, "antialias": True},
            {"type": "RandomHorizontalFlip"},
            {"type": "ToDtype", "dtype": "float32", "scale": True},
            {"type": "Normalize", "mean": [0.5] * 3, "std": [0.5] * 3},
        ],
    )
    img, target = ds[0]
    assert img.shape == (3, 24, 24) and img.dtype == torch.float32
    assert target.shape == (10,)


def test_dataloader_shuffle_is_seeded_and_epoch_dependent(shapes_root):
    cfg = {
        "batch_size": 8,
        "num_workers": 0,
        "dataset": {
            "type": "CSVDataset",
            "ann_file": str(shapes_root / "train.csv"),
            "classes": str(shapes_root / "classes.txt"),
            "data_root": str(shapes_root),
            "pipeline": [{"type": "ToFloatNormalize"}],
        },
    }

    def order(seed, epoch):
        loader = build_dataloader(cfg, seed=seed, shuffle=True)
        loader.sampler.set_epoch(epoch)
        return list(iter(loader.sampler))

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    assert sorted(order(0, 3)) == list(range(96))


def test_comma_separated_labels_are_an_error_naming_file_and_line(tmp_path, img_dir):
    ann = write_csv(tmp_path / "a.csv", ["imgs/0.png,cat", "imgs/1.png,cat,dog"])
    with pytest.raises(DataError) as e:
        CSVDataset(ann, classes=["cat", "dog"], data_root=str(tmp_path))
    msg = str(e.value)
    assert f"{ann}:3: 3 fields but the header has 2" in msg and "separated by spaces" in msg and "'imgs/1.png,cat dog'" in msg


def test_a_byte_order_mark_before_the_header_is_accepted(tmp_path, img_dir):
    ann = tmp_path / "excel.csv"
    ann.write_bytes("\ufefffilename,labels\r\nimgs/0.png,cat dog\r\n".encode("utf-8"))
    ds = CSVDataset(ann, classes=["cat", "dog"], data_root=str(tmp_path))
    assert ds.dense_targets(range(len(ds))).tolist() == [[1, 1]]
