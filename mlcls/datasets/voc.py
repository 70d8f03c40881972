"""Pascal VOC (VOCdevkit year folder) as image-level multi-label data."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.labels import LabelIndexBuilder, unknown_class_error
from mlcls.errors import DataError
from mlcls.registry import DATASETS

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


@DATASETS.register_module()
class VOCDataset(MultiLabelDataset):
    """A VOCdevkit year folder: ``Annotations/*.xml``, ``ImageSets/Main/{split}.txt``, ``JPEGImages/``.

    An image's labels are the classes of its objects. Objects marked ``difficult`` follow
    ``difficult_as``: ``ignore`` (default, the VOC protocol) makes the class -1 for that image
    unless a non-difficult object of the same class is also present; ``positive`` / ``negative``
    count them as such.

    Args:
        data_root: the year folder, e.g. ``data/VOCdevkit/VOC2007``.
        split: ``train``, ``val``, ``trainval`` or ``test`` (a file in ``ImageSets/Main``).
        classes: default the 20 VOC classes.
        difficult_as: ``ignore``, ``positive`` or ``negative``.
    """

    def __init__(
        self, data_root: str, split: str = "trainval", classes=None, pipeline=None, difficult_as: str = "ignore", **kwargs
    ) -> None:
        if difficult_as not in ("ignore", "positive", "negative"):
            raise DataError(f"VOCDataset.difficult_as: expected 'ignore', 'positive' or 'negative', got '{difficult_as}'")
        self.split, self.difficult_as = split, difficult_as
        self.ann_file = os.path.join(str(data_root), "ImageSets", "Main", f"{split}.txt")
        super().__init__(classes=list(classes or VOC_CLASSES), pipeline=pipeline, data_root=data_root, **kwargs)

    def load_annotations(self) -> LabelIndexBuilder:
        if not os.path.isfile(self.ann_file):
            raise DataError(f"VOC split list not found: {self.ann_file} (expected a VOCdevkit year folder as data_root)")
        lookup = {c: i for i, c in enumerate(self.classes)}
        index = LabelIndexBuilder()
        with open(self.ann_file, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                image_id = line.strip().split(" ")[0]
                if not image_id:
                    continue
                xml_path = os.path.join(self.data_root, "Annotations", f"{image_id}.xml")
                try:
                    filename, objects = parse_voc_xml(xml_path, f"{self.ann_file}:{line_no}")
                except DataError as e:
                    self.bad_annotation(e)
                    continue
                pos, diff = set(), set()
                for name, difficult in objects:
                    if name not in lookup:
                        self.bad_annotation(unknown_class_error(name, self.classes, xml_path))
                        continue
                    (diff if difficult else pos).add(lookup[name])
                if self.difficult_as == "positive":
                    pos |= diff
                ignored = sorted(diff - pos) if self.difficult_as == "ignore" else []
                index.add(os.path.join("JPEGImages", filename or f"{image_id}.jpg"), sorted(pos), line_no, ignored)
        return index


def parse_voc_xml(path: str, listed_at: str) -> tuple[str | None, list[tuple[str, bool]]]:
    """``(filename, [(class name, difficult), ...])`` of one VOC annotation file."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"annotation file not found: {path} (listed at {listed_at})") from None
    except ET.ParseError as e:
        raise DataError(f"{path}: malformed XML ({e})") from None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(f"{path}: an <object> has no <name>")
        objects.append((name, (obj.findtext("difficult") or "0").strip() == "1"))
    filename = (root.findtext("filename") or "").strip() or None
    return filename, objects
