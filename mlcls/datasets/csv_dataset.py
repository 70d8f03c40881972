"""CSV annotation lists: ``filename,labels`` with space-separated class names."""

from __future__ import annotations

import csv
import os

from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.labels import LabelIndexBuilder, check_space_free, unknown_class_error
from mlcls.errors import DataError
from mlcls.registry import DATASETS
from mlcls.utils.fileio import decode_error_message


@DATASETS.register_module()
class CSVDataset(MultiLabelDataset):
    """Images listed in a CSV file with the header ``filename,labels``.

    ``labels`` holds space-separated class names (an empty field means no positive label). Paths
    are relative to ``data_root``, and so are ``ann_file`` and a ``classes`` file when relative. Extra columns are allowed and ignored.

    Example::

        filename,labels
        img/0001.png,circle star
        img/0002.png,
    """

    def __init__(self, ann_file: str, classes, pipeline=None, data_root: str = "", **kwargs) -> None:
        self.ann_file = os.path.join(str(data_root), str(ann_file)) if not os.path.isabs(ann_file) else str(ann_file)
        super().__init__(classes=classes, pipeline=pipeline, data_root=data_root, **kwargs)

    def load_annotations(self) -> LabelIndexBuilder:
        check_space_free(self.classes, f"{type(self).__name__}.classes")
        lookup = {c: i for i, c in enumerate(self.classes)}
        index = LabelIndexBuilder()
        try:
            f = open(self.ann_file, newline="", encoding="utf-8-sig")  # -sig: Excel's byte-order mark is not part of the header
        except FileNotFoundError:
            raise DataError(f"annotation file not found: {self.ann_file}") from None
        with f:
            try:
                return self._parse(csv.reader(f), lookup, index)
            except UnicodeDecodeError as e:
                with open(self.ann_file, "rb") as raw:
                    raise DataError(decode_error_message(self.ann_file, raw.read(), e)) from None

    def _parse(self, reader, lookup: dict, index: LabelIndexBuilder) -> LabelIndexBuilder:
        """Rows of ``reader`` into ``index``: every malformed row named by file and line."""
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["filename", "labels"]:
            raise DataError(f"{self.ann_file}:1: expected the header 'filename,labels', got {','.join(header or [])!r}")
        for row in reader:
            line = reader.line_num
            if not row or not any(row):
                continue
            if len(row) < 2:
                self.bad_annotation(DataError(f"{self.ann_file}:{line}: expected 2 columns (filename,labels), got {row!r}"))
                continue
            if len(row) > len(header):
                self.bad_annotation(
                    DataError(
                        f"{self.ann_file}:{line}: {len(row)} fields but the header has {len(header)} ({row!r}); labels are separated "
                        f"by spaces within one field, e.g. '{row[0]},{' '.join(x.strip() for x in row[1:] if x.strip())}'"
                    )
                )
                continue
            ids = []
            for name in row[1].split():
                cid = lookup.get(name)
                if cid is None:
                    self.bad_annotation(unknown_class_error(name, self.classes, f"{self.ann_file}:{line}"))
                    continue
                ids.append(cid)
            index.add(row[0].strip(), sorted(set(ids)), line)
        return index
