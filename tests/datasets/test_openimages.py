"""OpenImagesDataset: the three label states, unlisted_as, the trainable subset, chunked parsing,
and unknown entries masked in losses, metrics, counts, repeat factors and auto weights."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from mlcls.datasets import OpenImagesDataset, repeat_factors
from mlcls.datasets import openimages as oi
from mlcls.errors import DataError
from mlcls.evaluation import compute_metrics
from mlcls.losses.weights import auto_pos_weight

DESCRIPTIONS = [("/m/01", "Cat"), ("/m/02", "Dog"), ("/m/0a3", "Car"), ("/m/0bbb4", "Bird"), ("/m/05", "Dog"), ("/m/06x", "Tree")]
ROWS = [  # ImageID, Source, LabelName, Confidence
    ("000a", "verification", "/m/01", "1"),
    ("000a", "verification", "/m/02", "0"),
    ("000a", "crowdsource-verified", "/m/06x", "1"),
    ("000b", "verification", "/m/0a3", "0"),
    ("000b", "verification", "/m/0bbb4", "1"),
    ("000c", "verification", "/m/99", "1"),  # a LabelName no description has: left out, warned
    ("000d", "verification", "/m/05", "1"),
    ("000a", "verification", "/m/0a3", "1"),  # 000a again, later in the file: regrouped
    ("000a", "verification", "/m/01", "0"),  # a duplicate (image, class): the positive wins
    ("0000000000000e1f", "verification", "/m/02", "1"),
]


def write_files(tmp_path, rows=ROWS, header=True, newline="\n"):
    with open(tmp_path / "desc.csv", "w", newline="") as f:
        csv.writer(f).writerows(DESCRIPTIONS)
    lines = (["ImageID,Source,LabelName,Confidence"] if header else []) + [",".join(r) for r in rows]
    (tmp_path / "labels.csv").write_bytes((newline.join(lines) + newline).encode())
    (tmp_path / "trainable.txt").write_text("/m/0bbb4\n/m/01\n/m/02\n/m/0a3\n/m/05\n")
    return tmp_path


def reference(rows, mids):
    """Per image (first-seen order) {class index: value}, by a plain Python loop."""
    out: dict[str, dict[int, int]] = {}
    for image, _, label, conf in rows:
        entry = out.setdefault(image, {})
        if label in mids:
            c = mids.index(label)
            entry[c] = max(entry.get(c, 0), int(conf))
    return out


@pytest.mark.parametrize("unlisted_as", ["ignore", "negative"])
def test_three_label_states_and_unlisted_as(tmp_path, unlisted_as, mlcls_log):
    write_files(tmp_path)
    ds = OpenImagesDataset("labels.csv", "desc.csv", unlisted_as=unlisted_as, data_root=str(tmp_path), image_folder="train")
    assert ds.classes == ["Cat", "Dog (/m/02)", "Car", "Bird", "Dog (/m/05)", "Tree"]  # duplicate DisplayName disambiguated
    assert len(ds) == 5 and ds.image_path(0) == str(tmp_path / "train" / "000a.jpg")
    assert ds.image_path(4).endswith("0000000000000e1f.jpg")
    u = -1.0 if unlisted_as == "ignore" else 0.0
    assert ds.get_target(0).tolist() == [1, 0, 1, u, u, 1]  # positive, verified negative, unlisted
    assert ds.get_target(1).tolist() == [u, u, 0, 1, u, u]
    assert ds.get_target(2).tolist() == [u] * 6  # its only row names an unknown LabelName
    assert "1 rows name a LabelName that no class description has" in mlcls_log.text and "/m/99 (line 7)" in mlcls_log.text
    ref = reference(ROWS, [m for m, _ in DESCRIPTIONS])
    for i, entries in enumerate(ref.values()):
        expected = [entries.get(c, u) for c in range(6)]
        assert ds.get_target(i).tolist() == expected
        assert ds.dense_targets([i]).tolist() == [expected]
    assert ds.dense_targets([4, 0]).tolist() == [ds.get_target(4).tolist(), ds.get_target(0).tolist()]
    assert ds.source(3) == f"{ds.ann_file}:8"  # line of the image's first row (header is line 1)


def test_trainable_subset_orders_and_restricts(tmp_path, mlcls_log):
    write_files(tmp_path)
    ds = OpenImagesDataset("labels.csv", "desc.csv", trainable_classes="trainable.txt", data_root=str(tmp_path))
    assert ds.label_names == ["/m/0bbb4", "/m/01", "/m/02", "/m/0a3", "/m/05"]
    assert ds.classes == ["Bird", "Cat", "Dog (/m/02)", "Car", "Dog (/m/05)"]
    assert ds.get_target(0).tolist() == [-1, 1, 0, 1, -1]  # Tree (not trainable) is gone
    assert "1 of 10 rows are of classes outside the trainable list" in mlcls_log.text
    (tmp_path / "bad.txt").write_text("/m/01\n/m/77\n")
    with pytest.raises(DataError, match=r"bad.txt: 1 LabelNames are not in desc.csv \(first: \['/m/77'\]\)"):
        OpenImagesDataset("labels.csv", "desc.csv", trainable_classes="bad.txt", data_root=str(tmp_path))


@pytest.mark.parametrize("chunk", [5, 16, 23, 64, 1 << 20])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_chunked_parse_equals_a_plain_loop(tmp_path, monkeypatch, chunk, newline):
    rng = np.random.default_rng(0)
    mids = [m for m, _ in DESCRIPTIONS]
    # sorted images (the official layout) with variable-length IDs, plus a few out-of-order rows
    rows = []
    for i in range(60):
        for c in rng.choice(6, size=rng.integers(1, 4), replace=False):
            rows.append((f"{i:0{4 + i % 9}x}", "verification", mids[c], str(int(rng.random() < 0.6))))
    rows += [("0003", "verification", "/m/06x", "1"), ("0000b", "verification", "/m/01", "0")]
    write_files(tmp_path, rows, header=chunk % 2 == 0, newline=newline)
    real = oi.read_image_labels

    def small_chunks(path, lookup, chunk_bytes=0):
        return real(path, lookup, chunk_bytes=chunk)

    monkeypatch.setattr(oi, "read_image_labels", small_chunks)
    ds = OpenImagesDataset("labels.csv", "desc.csv", data_root=str(tmp_path))
    ref = reference(rows, mids)
    assert [ds.label_index.paths[i].decode() for i in range(len(ds))] == list(ref)
    for i, entries in enumerate(ref.values()):
        assert ds.get_target(i).tolist() == [entries.get(c, -1) for c in range(6)], i


def test_bad_rows_name_file_and_line(tmp_path):
    write_files(tmp_path, ROWS[:3] + [("000z", "verification", "/m/01", "0.7")])
    with pytest.raises(DataError, match=r"labels.csv:5: Confidence must be 1 \(present\) or 0 \(verified absent\), got '0.7'"):
        OpenImagesDataset("labels.csv", "desc.csv", data_root=str(tmp_path))
    (tmp_path / "labels.csv").write_text("ImageID,Source,LabelName,Confidence\n000a,verification,/m/01\n")
    with pytest.raises(DataError, match=r"labels.csv:2: expected 4 fields ImageID,Source,LabelName,Confidence"):
        OpenImagesDataset("labels.csv", "desc.csv", data_root=str(tmp_path))
    with pytest.raises(DataError, match="unlisted_as: expected 'ignore' or 'negative'"):
        OpenImagesDataset("labels.csv", "desc.csv", data_root=str(tmp_path), unlisted_as="zero")


def test_counts_weights_and_repeat_factors_use_verified_labels_only(tmp_path):
    write_files(tmp_path)
    ds = OpenImagesDataset("labels.csv", "desc.csv", data_root=str(tmp_path))
    pos, neg = ds.verified_counts()
    assert pos.tolist() == [1, 1, 1, 1, 1, 1] and neg.tolist() == [0, 1, 1, 0, 0, 0]
    stats = ds.label_stats()
    assert stats["neg"] == neg.tolist()
    assert auto_pos_weight(stats).tolist()[1] == pytest.approx(1.0)  # neg/pos over verified labels: 1/1, not 4/1
    full = OpenImagesDataset("labels.csv", "desc.csv", data_root=str(tmp_path), unlisted_as="negative")
    assert full.label_stats()["neg"] == [4, 4, 4, 4, 4, 4]
    # frequency among images where the class was verified; LVIS formula on it
    freq = ds.class_frequency()
    assert freq.tolist() == [1.0, 0.5, 0.5, 1.0, 1.0, 1.0]
    r = repeat_factors(ds, 0.8)
    r_class = np.maximum(1, np.sqrt(0.8 / freq))
    for i in range(len(ds)):
        positives = [c for c, v in enumerate(ds.get_target(i).tolist()) if v == 1]
        assert r[i] == pytest.approx(max([1.0] + [r_class[c] for c in positives]))


def test_unknown_entries_are_masked_in_losses_and_metrics(tmp_path):
    from mlcls.losses import AsymmetricLoss, BCEWithLogitsLoss, FocalLoss

    write_files(tmp_path)
    ds = OpenImagesDataset("labels.csv", "desc.csv", data_root=str(tmp_path))
    targets = torch.stack([ds.get_target(i) for i in range(len(ds))])
    logits = torch.randn(targets.shape, generator=torch.Generator().manual_seed(0))
    moved = logits.clone()
    moved[targets == -1] += 5.0  # what the model says on unknown entries must not matter
    for loss in (BCEWithLogitsLoss(), FocalLoss(), AsymmetricLoss()):
        assert float(loss(logits, targets)) == pytest.approx(float(loss(moved, targets))), type(loss).__name__
    from sklearn.metrics import average_precision_score

    m = compute_metrics(torch.sigmoid(logits), targets)
    m_moved = compute_metrics(torch.sigmoid(moved), targets)
    for c in range(targets.shape[1]):
        known = targets[:, c] >= 0
        has_pos = bool((targets[known, c] == 1).any())
        if has_pos and bool((targets[known, c] == 0).any()):
            ref = 100 * average_precision_score(targets[known, c].numpy(), torch.sigmoid(logits)[known, c].numpy())
            assert m["AP"][c] == pytest.approx(ref)
        assert (math.isnan(m["AP"][c]) and math.isnan(m_moved["AP"][c])) or m["AP"][c] == pytest.approx(m_moved["AP"][c])
    assert m["tp"] == m_moved["tp"] and m["fp"] == m_moved["fp"]
