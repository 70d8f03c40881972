"""COCO instances JSON as image-level multi-label data."""

from __future__ import annotations

import json
import os
from collections import defaultdict

from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.labels import LabelIndexBuilder, read_class_list, unknown_class_error
from mlcls.errors import DataError
from mlcls.registry import DATASETS


def read_json(path: str) -> dict | list:
    """A JSON file, with malformed content reported as ``file:line:column: problem``."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"annotation file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: malformed JSON ({e.msg})") from None


@DATASETS.register_module()
class COCODataset(MultiLabelDataset):
    """A COCO ``instances_*.json``: an image is labelled with the categories of its annotations.

    Category ids (non-contiguous in COCO: 1..90 for 80 classes) map to contiguous indices in id
    order, named from ``categories``. Images without annotations stay, all-negative, unless
    ``drop_empty``. ``iscrowd`` annotations (a crowd of objects in one region) still show the
    category, so by default they count as positive; ``crowd_as: ignore`` makes such a class -1
    unless a non-crowd annotation of it is present.

    Args:
        ann_file: the instances JSON (relative paths are relative to ``data_root``).
        data_root: the folder the JSON's ``file_name`` entries are relative to (e.g. ``train2014``).
        classes: optional subset/order of category names (default: every category, by id).
    """

    def __init__(
        self,
        ann_file: str,
        data_root: str = "",
        classes=None,
        pipeline=None,
        drop_empty: bool = False,
        crowd_as: str = "positive",
        **kwargs,
    ) -> None:
        if crowd_as not in ("positive", "ignore"):
            raise DataError(f"COCODataset.crowd_as: expected 'positive' or 'ignore', got '{crowd_as}'")
        self.drop_empty, self.crowd_as = drop_empty, crowd_as
        self.ann_file = ann_file if os.path.isabs(ann_file) else os.path.join(str(data_root), ann_file)
        self._given_classes = classes
        super().__init__(classes=None, pipeline=pipeline, data_root=data_root, **kwargs)

    def load_annotations(self) -> LabelIndexBuilder:
        data = read_json(self.ann_file)
        if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
            raise DataError(f"{self.ann_file}: not a COCO instances file (needs 'images', 'annotations' and 'categories')")
        cats = sorted(data["categories"], key=lambda c: c["id"])
        id_to_name = {c["id"]: c["name"] for c in cats}
        if self._given_classes is not None:
            given = self._given_classes
            self.classes = read_class_list(self.resolve(given) if isinstance(given, str) else given, "COCODataset.classes")
            for name in self.classes:
                if name not in id_to_name.values():
                    raise unknown_class_error(name, [c["name"] for c in cats], f"COCODataset.classes ({self.ann_file} categories)")
        else:
            self.classes = [c["name"] for c in cats]
        lookup = {c["id"]: self.classes.index(c["name"]) for c in cats if c["name"] in self.classes}
        image_ids = {img["id"]: n for n, img in enumerate(data["images"])}
        pos, crowd = defaultdict(set), defaultdict(set)
        for k, ann in enumerate(data["annotations"]):
            if ann.get("image_id") not in image_ids:
                where = f"{self.ann_file}: annotations[{k}] (id {ann.get('id')})"
                self.bad_annotation(DataError(f"{where} refers to image_id {ann.get('image_id')}, which is not in 'images'"))
                continue
            cid = ann.get("category_id")
            if cid not in id_to_name:
                where = f"{self.ann_file}: annotations[{k}] (id {ann.get('id')})"
                self.bad_annotation(DataError(f"{where} has category_id {cid}, which is not in 'categories'"))
                continue
            if cid not in lookup:
                continue  # a category outside the chosen classes
            target = crowd if ann.get("iscrowd", 0) and self.crowd_as == "ignore" else pos
            target[ann["image_id"]].add(lookup[cid])
        index = LabelIndexBuilder()
        for n, img in enumerate(data["images"]):
            p = pos.get(img["id"], set())
            ign = crowd.get(img["id"], set()) - p
            if self.drop_empty and not p and not ign:
                continue
            index.add(img["file_name"], sorted(p), n, sorted(ign))
        return index

    def source(self, idx: int) -> str:
        return f"{self.ann_file} images[{int(self.label_index.lines[idx])}]"
