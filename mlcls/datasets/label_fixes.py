"""Label fixes: corrected labels applied in memory, without editing the annotation file.

A fix file is a CSV with the header ``path,class,label``: ``path`` is a sample as its annotation
file lists it (relative to ``data_root``, the way ``label_issues.csv`` and the report's "Download
label fixes" write it), ``label`` is 1, 0 or -1 (unknown: left out of the loss and the metrics).

One fix file serves every part of a dataset: it is read against every sample the annotation file
lists, and applied to the samples a hold-out or fold keeps *after* that part is cut, so the parts
are cut on the file's labels and stay disjoint and complete whatever the fixes say.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mlcls.errors import DataError

HEADER = ["path", "class", "label"]


@dataclass
class LabelFixes:
    """The fixes of one file, checked against a dataset's samples and classes.

    Attributes:
        file: the file read.
        sha256: the hash of its bytes (which fixes a run used, stored in its checkpoint and outputs).
        entries: ``[path, class, label]`` of each distinct fix, in file order.
        by_row: sample row (in the annotation file's order) -> ``[(class index, label), ...]``.
    """

    file: str
    sha256: str
    entries: list[list] = field(default_factory=list)
    by_row: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    def record(self, changed: int, applied: int) -> dict:
        """What a checkpoint stores: the file, its hash, the fixes themselves, and how many of them
        touched this part of the data (``applied``) and changed a label there (``changed``)."""
        return {"file": self.file, "sha256": self.sha256, "rows": len(self.entries), "applied": applied, "changed": changed,
                "fixes": [list(e) for e in self.entries]}  # fmt: skip


def check_fixes_key(value, where: str) -> str | None:
    """The ``label_fixes`` config value as a path (None: no fixes), or one error naming the key."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}.label_fixes: expected the path of a CSV with the header 'path,class,label' (or null), got {value!r}")
    return value


def read_label_fixes(path: str, paths: np.ndarray, classes: Sequence[str], data_root: str = "") -> LabelFixes:
    """Read and check ``path`` against a dataset's samples.

    Args:
        path: the fix file (already resolved against ``data_root``).
        paths: the samples as the annotation file lists them (UTF-8 bytes [N], or str).
        classes: the dataset's class names.
        data_root: a fix naming a sample with ``data_root`` in front is taken too.

    Returns:
        the fixes, each sample's by its row in ``paths``.

    Raises:
        DataError: one message naming the file and line: a file that is not a regular UTF-8 CSV
            file with the header, an unknown sample or class, a label not in 1/0/-1, or two rows
            giving one (sample, class) different labels.
    """
    if not os.path.exists(path):
        raise DataError(f"label_fixes: file not found: {path}")
    if not os.path.isfile(path):  # a FIFO or a device would block or never end
        raise DataError(f"label_fixes: {path} is not a regular file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (spreadsheets write one) is accepted
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (saved as Latin-1 or another code page?); save the file as 'CSV UTF-8'") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None or [h.strip().lower() for h in header[:3]] != HEADER:
        hint = " (fields separated by ';': save it with ',' as the separator)" if header and ";" in header[0] else ""
        raise DataError(f"{path}:1: expected the header 'path,class,label'{hint}")
    as_bytes = paths.dtype.kind == "S" if isinstance(paths, np.ndarray) else False
    row_of = {
        (p if as_bytes else str(p).encode("utf-8")): i for i, p in enumerate(paths.tolist() if isinstance(paths, np.ndarray) else paths)
    }
    root_prefix = (str(data_root).rstrip(os.sep) + os.sep).encode() if data_root else b""
    class_id = {c: i for i, c in enumerate(classes)}
    fixes = LabelFixes(file=str(path), sha256=hashlib.sha256(raw).hexdigest())
    seen: dict[tuple[int, int], tuple[int, int]] = {}  # (row, class) -> (label, line)
    for line_no, row in enumerate(rows, 2):
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) < 3:
            raise DataError(f"{path}:{line_no}: expected 'path,class,label', got {len(row)} field(s)")
        sample, name, label = row[0], row[1].strip(), row[2].strip()
        key = sample.encode("utf-8")
        if key not in row_of and root_prefix and key.startswith(root_prefix):  # written with data_root in front
            key = key[len(root_prefix) :]
        if key not in row_of:
            raise DataError(f"{path}:{line_no}: '{sample}' is not a sample of this dataset (paths as its annotation file lists them)")
        if name not in class_id:
            shown = ", ".join(list(classes)[:10]) + (", ..." if len(classes) > 10 else "")
            raise DataError(f"{path}:{line_no}: unknown class '{name}' (classes: {shown})")
        if label not in ("1", "0", "-1"):
            raise DataError(f"{path}:{line_no}: label must be 1, 0 or -1 (unknown), got {label!r}")
        r, c, v = row_of[key], class_id[name], int(label)
        if (r, c) in seen:
            before, at = seen[(r, c)]
            if before != v:
                raise DataError(f"{path}:{line_no}: '{sample}', {name} is fixed to {v} here and to {before} on line {at}; keep one of them")
            continue
        seen[(r, c)] = (v, line_no)
        fixes.by_row.setdefault(r, []).append((c, v))
        fixes.entries.append([sample, name, v])
    return fixes


__all__ = ["LabelFixes", "check_fixes_key", "read_label_fixes"]
