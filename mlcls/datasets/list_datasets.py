"""Plain-text image lists and mmpretrain's (OpenMMLab 2.0) multi-label JSON."""

from __future__ import annotations

import os

from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.coco import read_json
from mlcls.datasets.labels import LabelIndexBuilder, check_space_free, unknown_class_error
from mlcls.errors import DataError
from mlcls.registry import DATASETS


@DATASETS.register_module()
class TXTListDataset(MultiLabelDataset):
    """Lines ``relative/path.jpg label1 label2 ...``; ``#`` starts a comment; blank lines skipped.

    Args:
        ann_file: the list (relative paths are relative to ``data_root``).
        classes: class names or a class-list file.
        label_type: ``name`` (labels are class names) or ``index`` (0-based class indices).
        delimiter: field separator (default: any whitespace; use ``","`` or ``"\\t"`` for paths
            containing spaces).
    """

    def __init__(
        self, ann_file: str, classes, pipeline=None, data_root: str = "", label_type: str = "name", delimiter: str | None = None, **kwargs
    ) -> None:
        if label_type not in ("name", "index"):
            raise DataError(f"TXTListDataset.label_type: expected 'name' or 'index', got '{label_type}'")
        self.label_type, self.delimiter = label_type, delimiter
        self.ann_file = ann_file if os.path.isabs(ann_file) else os.path.join(str(data_root), ann_file)
        super().__init__(classes=classes, pipeline=pipeline, data_root=data_root, **kwargs)

    def load_annotations(self) -> LabelIndexBuilder:
        if self.label_type == "name" and (self.delimiter is None or self.delimiter.isspace()):
            check_space_free(self.classes, f"{type(self).__name__}.classes")
        lookup = {c: i for i, c in enumerate(self.classes)}
        n_cls = len(self.classes)
        index = LabelIndexBuilder()
        try:
            f = open(self.ann_file, encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"annotation file not found: {self.ann_file}") from None
        with f:
            for line_no, line in enumerate(f, 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                fields = [x.strip() for x in line.split(self.delimiter)]
                path, labels = fields[0], [x for x in fields[1:] if x]
                ids = []
                for lab in labels:
                    if self.label_type == "name":
                        if lab not in lookup:
                            self.bad_annotation(unknown_class_error(lab, self.classes, f"{self.ann_file}:{line_no}"))
                        else:
                            ids.append(lookup[lab])
                    elif not lab.lstrip("-").isdigit():
                        self.bad_annotation(
                            DataError(f"{self.ann_file}:{line_no}: label '{lab}' is not an integer index (label_type: index)")
                        )
                    elif not 0 <= int(lab) < n_cls:
                        self.bad_annotation(DataError(f"{self.ann_file}:{line_no}: class index {lab} out of range 0..{n_cls - 1}"))
                    else:
                        ids.append(int(lab))
                index.add(path, sorted(set(ids)), line_no)
        return index


@DATASETS.register_module()
class MMClsJSONDataset(MultiLabelDataset):
    """mmpretrain's multi-label annotation JSON, so an mmcls user's files load unchanged::

        {"metainfo": {"classes": ["cat", "dog"]},
         "data_list": [{"img_path": "a.jpg", "gt_label": [0, 1]}, ...]}

    ``img_path`` is relative to ``data_root`` (mmcls's ``data_prefix``); ``gt_label`` is a list
    of class indices (or one index). ``classes`` defaults to ``metainfo.classes``.
    """

    def __init__(self, ann_file: str, data_root: str = "", classes=None, pipeline=None, **kwargs) -> None:
        self.ann_file = ann_file if os.path.isabs(ann_file) else os.path.join(str(data_root), ann_file)
        self._data = read_json(self.ann_file)
        if not isinstance(self._data, dict) or not isinstance(self._data.get("data_list"), list):
            raise DataError(f"{self.ann_file}: expected an OpenMMLab 2.0 annotation file with a 'data_list' list")
        if classes is None:
            classes = (self._data.get("metainfo") or {}).get("classes")
            if not classes:
                raise DataError(f"{self.ann_file}: no metainfo.classes; give 'classes' in the config")
        super().__init__(classes=classes, pipeline=pipeline, data_root=data_root, **kwargs)
        del self._data

    def load_annotations(self) -> LabelIndexBuilder:
        n_cls = len(self.classes)
        index = LabelIndexBuilder()
        for k, item in enumerate(self._data["data_list"]):
            if not isinstance(item, dict) or "img_path" not in item:
                self.bad_annotation(DataError(f"{self.ann_file}: data_list[{k}] has no 'img_path'"))
                continue
            labels = item.get("gt_label", [])
            labels = [labels] if isinstance(labels, int) else labels
            good = []
            for lab in labels:
                if not isinstance(lab, int) or not 0 <= lab < n_cls:
                    self.bad_annotation(
                        DataError(f"{self.ann_file}: data_list[{k}] gt_label {lab!r} is not a class index in 0..{n_cls - 1}")
                    )
                else:
                    good.append(lab)
            index.add(item["img_path"], sorted(set(good)), k)
        return index

    def source(self, idx: int) -> str:
        return f"{self.ann_file} data_list[{int(self.label_index.lines[idx])}]"
