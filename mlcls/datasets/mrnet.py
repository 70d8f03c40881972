"""Knee MRI exams in the layout of the MRNet release (Bien et al., PLOS Medicine 2018), and a small
generated set of the same shape for demos and tests.

Layout, as distributed::

    data_root/train-abnormal.csv   rows "0000,1" (exam id, label), no header
    data_root/train-acl.csv
    data_root/train-meniscus.csv
    data_root/train/sagittal/0000.npy   uint8 (slices, 256, 256)
    data_root/train/coronal/0000.npy
    data_root/train/axial/0000.npy
    (the same with valid-*.csv and valid/)
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.labels import LabelIndexBuilder, read_class_list
from mlcls.datasets.shapes import claim_generated_set
from mlcls.errors import DataError
from mlcls.registry import DATASETS
from mlcls.utils.fileio import atomic_open

MRNET_CLASSES = ("abnormal", "acl", "meniscus")
MRNET_VIEWS = ("sagittal", "coronal", "axial")


@DATASETS.register_module()
class MRNetDataset(MultiLabelDataset):
    """MRNet exams: one bag of slices per view, labels ``abnormal``, ``acl``, ``meniscus``.

    Args:
        data_root: the folder holding ``{split}-{label}.csv`` and ``{split}/{view}/{id}.npy``.
        split: ``train`` or ``valid``.
        views: any of ``sagittal``, ``coronal``, ``axial`` (default all three). With one view the
            model still reads ``{view: bag}`` samples: set the model's ``views`` to the same list.
        classes: the tasks to train on, a subset of ``abnormal``, ``acl``, ``meniscus`` in any order
            (default all three); ``[acl]`` is the one-model-per-task set-up of the MRNet paper.
        **kwargs: as :class:`MultiLabelDataset` (``pipeline``, ``max_instances``, ``on_bad_image``, ...).
    """

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        views: Sequence[str] = MRNET_VIEWS,
        classes: Sequence[str] | str | None = None,
        pipeline=None,
        **kwargs,
    ) -> None:
        if split not in ("train", "valid"):
            raise DataError(f"MRNetDataset.split: expected 'train' or 'valid', got {split!r}")
        unknown = [v for v in views if v not in MRNET_VIEWS]
        if unknown or not views:
            raise DataError(f"MRNetDataset.views: expected some of {', '.join(MRNET_VIEWS)}, got {list(views)}")
        if classes is None:
            classes = list(MRNET_CLASSES)
        elif isinstance(classes, str) and classes in MRNET_CLASSES:  # classes=acl on the command line
            classes = [classes]
        elif isinstance(classes, (str, os.PathLike)):  # a class-list file, relative to data_root like every reader's
            classes = read_class_list(classes if os.path.isabs(classes) else os.path.join(str(data_root), str(classes)))
        classes = [str(c) for c in classes]
        wrong = [c for c in classes if c not in MRNET_CLASSES]
        if wrong or not classes or len(set(classes)) != len(classes):
            raise DataError(
                f"MRNetDataset.classes: expected a subset of {', '.join(MRNET_CLASSES)} in any order, each once "
                f"(one model per task: [acl]), got {classes}"
            )
        self.split = split
        self.ann_file = os.path.join(str(data_root), f"{split}-{classes[0]}.csv")
        super().__init__(classes=classes, pipeline=pipeline, data_root=data_root, views=list(views), **kwargs)

    def load_annotations(self) -> LabelIndexBuilder:
        labels: dict[str, list[int]] = {}
        lines: dict[str, int] = {}
        for c, name in enumerate(self.classes):
            path = os.path.join(self.data_root, f"{self.split}-{name}.csv")
            if not os.path.isfile(path):
                raise DataError(f"MRNet label file not found: {path}")
            seen = {}
            with open(path, newline="", encoding="utf-8") as f:
                for line_no, row in enumerate(csv.reader(f), 1):
                    if not row:
                        continue
                    if len(row) != 2 or not row[0].strip().isdigit() or row[1].strip() not in ("0", "1"):
                        raise DataError(f"{path}:{line_no}: expected 'exam id,0|1' (e.g. '0000,1'), got {','.join(row)!r}")
                    exam = row[0].strip()
                    if exam in seen:
                        raise DataError(f"{path}:{line_no}: exam {exam} is listed again (first at line {seen[exam]})")
                    seen[exam] = line_no
                    labels.setdefault(exam, [0] * len(self.classes))[c] = int(row[1])
                    lines.setdefault(exam, line_no)
            if c == 0:
                first = set(seen)
            elif set(seen) != first:
                diff = sorted(set(seen) ^ first)
                raise DataError(f"{path}: lists other exams than {self.split}-{self.classes[0]}.csv (e.g. {diff[:3]})")
        index = LabelIndexBuilder()
        for exam in sorted(labels):
            index.add(f"{self.split}/{{view}}/{exam}.npy", [c for c, v in enumerate(labels[exam]) if v], lines[exam])
        return index


def make_mrnet_demo(
    root: str | os.PathLike,
    seed: int = 0,
    size: int = 32,
    exams: dict | None = None,
    slices: tuple[int, int] = (8, 14),
    force: bool = False,
) -> Path:
    """A small generated set in the MRNet layout (for demos and tests; not medical data): 320
    training and 160 validation exams by default.

    Each exam has three views of ``slices`` grey ``size`` px slices of textured noise. A finding is a
    bright structure on a few consecutive slices of some views, so pooling by the maximum over
    slices finds it and the mean dilutes it: an ACL tear is a short bright bar (sagittal, faint in
    coronal), a meniscal tear a small bright disc (coronal and sagittal), and any other abnormality
    a dark blob (any view). Label frequencies follow MRNet's training set: abnormal 81 %, ACL 19 %,
    meniscus 37 %; ACL and meniscal tears are abnormal. ``findings.json`` records, per volume,
    each finding's kind (``bar``: ACL, ``disc``: meniscus, ``blob``: other) and slices.
    """
    root = Path(root)
    exams = dict(exams or {"train": 320, "valid": 160})
    manifest = {"kind": "mrnet-demo", "version": 2, "seed": seed, "size": size, "exams": exams, "slices": list(slices)}
    if not claim_generated_set(root, manifest, force):
        return root
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    truth: dict[str, list] = {}  # where each finding is: the answer key of evidence tests (no random draw)
    for s_idx, (split, n) in enumerate(exams.items()):
        rng = np.random.default_rng([seed, s_idx])
        for view in MRNET_VIEWS:
            (root / split / view).mkdir(parents=True, exist_ok=True)
        rows = {c: [] for c in MRNET_CLASSES}
        for i in range(n):
            acl = rng.random() < 0.19
            men = rng.random() < (0.37 - 0.19 * 0.5) / 0.81 if not acl else rng.random() < 0.5
            other = rng.random() < 0.35
            abnormal = acl or men or other or rng.random() < 0.55
            exam = f"{i:04d}"
            for v, view in enumerate(MRNET_VIEWS):
                s = int(rng.integers(slices[0], slices[1] + 1))
                base = rng.normal(90, 20, (s, size, size)).astype(np.float32)
                base += 25 * np.sin(xx / (3 + v) + rng.random() * 6)[None]  # texture shared by the slices
                findings = []
                if acl and view in ("sagittal", "coronal"):
                    findings.append(("bar", 45 if view == "sagittal" else 25))
                if men and view in ("coronal", "sagittal"):
                    findings.append(("disc", 40 if view == "coronal" else 25))
                if abnormal and not (acl or men) and rng.random() < 0.8:
                    findings.append(("blob", -30))
                for kind, amp in findings:
                    k = int(rng.integers(0, s - 2))
                    truth.setdefault(f"{split}/{view}/{exam}.npy", []).append(
                        {"kind": kind, "slices": list(range(k, min(s, k + 3))), "strongest": k + 1}
                    )
                    cx, cy = rng.uniform(size * 0.25, size * 0.75, 2)
                    if kind == "bar":
                        ang = rng.uniform(0.5, 1.1)
                        d = np.abs((xx - cx) * np.sin(ang) - (yy - cy) * np.cos(ang))
                        along = np.abs((xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang))
                        mask = (d < 1.6) & (along < size * 0.22)
                    elif kind == "disc":
                        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < (size * 0.08) ** 2
                    else:
                        mask = (xx - cx) ** 2 / 4 + (yy - cy) ** 2 < (size * 0.12) ** 2
                    for j in range(k, min(s, k + 3)):
                        base[j][mask] += amp * (1.0 if j == k + 1 else 0.6)
                np.save(root / split / view / f"{exam}.npy", np.clip(base, 0, 255).astype(np.uint8))
            for c, flag in zip(MRNET_CLASSES, (abnormal, acl, men)):
                rows[c].append(f"{exam},{int(flag)}")
        for c in MRNET_CLASSES:
            with atomic_open(root / f"{split}-{c}.csv") as f:
                f.write("\n".join(rows[c]) + "\n")
    (root / "findings.json").write_text(json.dumps(truth))
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root
