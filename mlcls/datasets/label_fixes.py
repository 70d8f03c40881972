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
from pathlib import Path
from typing import Sequence

import numpy as np

from mlcls.errors import DataError
from mlcls.utils.fileio import atomic_open

HEADER = ["path", "class", "label"]
#: a spreadsheet runs a cell that starts with one of these as a formula
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(text: str) -> str:
    """``text`` safe to open in a spreadsheet: a cell that would start a formula (a class or file
    named ``=HYPERLINK(...)``) gets a leading ``'``, which spreadsheets show as text;
    :func:`unguard_cell` takes it off again when mlcls reads the file back."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_START) else text


def _strip_guard(text: str) -> str:
    """``text`` without the ``'`` :func:`spreadsheet_cell` put in front of a formula-like cell."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_START) else text


def unguard_cell(text: str, known) -> str:
    """``text`` as written before :func:`spreadsheet_cell` guarded it (only where the guarded form is
    not itself a known name and the unguarded one is)."""
    bare = _strip_guard(text)
    return bare if bare != text and text not in known and bare in known else text


def decode_csv(path: str, raw: bytes) -> str:
    """A CSV's bytes as text (a byte-order mark accepted), or one error naming the line that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (saved as Latin-1 or another code page?); save the file as 'CSV UTF-8'") from None


def _header_error(path: str, header: list | None, expected: str) -> DataError:
    hint = " (fields separated by ';': save it with ',' as the separator)" if header and ";" in header[0] else ""
    return DataError(f"{path}:1: expected the header '{expected}'{hint}")


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


def write_label_fixes(path: str | os.PathLike, rows) -> Path:
    """Write a fix file (atomically): the header and one ``path,class,label`` row per ``rows`` item,
    cells guarded for spreadsheets (:func:`spreadsheet_cell`)."""
    with atomic_open(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows([spreadsheet_cell(sample), spreadsheet_cell(name), label] for sample, name, label in rows)
    return Path(path)


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
    rows = csv.reader(decode_csv(path, raw).splitlines())
    header = next(rows, None)
    if header is None or [h.strip().lower() for h in header[:3]] != HEADER:
        raise _header_error(path, header, "path,class,label")
    row_of = {(p if isinstance(p, bytes) else str(p).encode("utf-8")): i for i, p in enumerate(np.asarray(paths).tolist())}
    root_prefix = (str(data_root).rstrip(os.sep) + os.sep).encode() if data_root else b""
    class_id = {c: i for i, c in enumerate(classes)}
    fixes = LabelFixes(file=str(path), sha256=hashlib.sha256(raw).hexdigest())
    seen: dict[tuple[int, int], tuple[int, int]] = {}  # (row, class) -> (label, line)
    for line_no, row in enumerate(rows, 2):
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) < 3:
            raise DataError(f"{path}:{line_no}: expected 'path,class,label', got {len(row)} field(s)")
        sample, name, label = row[0], unguard_cell(row[1].strip(), class_id), row[2].strip()
        key = sample.encode("utf-8")
        if key not in row_of and _strip_guard(sample) != sample:  # written by spreadsheet_cell
            sample = _strip_guard(sample)
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


ISSUE_COLUMNS = ("path", "class", "given_label", "score", "kind", "rank")


def read_label_issues(path: str, classes: Sequence[str]) -> list[dict]:
    """The flags of a ``label_issues.csv`` (tools/find_label_issues.py), most likely errors first
    (by ``rank``), checked: ``{"path", "class" (index), "given", "score", "kind", "rank"}`` each.

    Raises:
        DataError: one message naming the file and line: not UTF-8, another separator or header,
            an unknown class, a given label not 0/1, a score not in [0, 1], a rank not a whole number.
    """
    with open(path, "rb") as f:
        text = decode_csv(path, f.read())
    rows = csv.reader(text.splitlines())
    header = [h.strip() for h in next(rows, None) or []]
    if not set(ISSUE_COLUMNS) <= set(header):
        raise _header_error(path, header, ",".join(ISSUE_COLUMNS) + " (tools/find_label_issues.py writes it)")
    col = {h: header.index(h) for h in ISSUE_COLUMNS}
    class_id = {c: i for i, c in enumerate(classes)}
    out = []
    for line_no, row in enumerate(rows, 2):
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) < len(header):
            raise DataError(f"{path}:{line_no}: expected {len(header)} fields, got {len(row)}")
        get = {key: row[i].strip() for key, i in col.items()}.get
        name = unguard_cell(get("class"), class_id)
        if name not in class_id:
            raise DataError(f"{path}:{line_no}: unknown class '{name}' (not a class of the scores)")
        try:
            given, score, rank = int(get("given_label")), float(get("score")), int(get("rank"))
        except ValueError:
            raise DataError(f"{path}:{line_no}: given_label and rank must be whole numbers and score a number, got "
                            f"{get('given_label')!r}, {get('rank')!r}, {get('score')!r}") from None  # fmt: skip
        if given not in (0, 1) or not 0 <= score <= 1 or get("kind") not in ("missing", "extra"):
            raise DataError(f"{path}:{line_no}: expected given_label 0 or 1, a score in [0, 1] and kind missing or extra")
        out.append(
            {
                "path": _strip_guard(row[col["path"]]),
                "class": class_id[name],
                "given": given,
                "score": score,
                "kind": get("kind"),
                "rank": rank,
            }
        )
    return sorted(out, key=lambda r: r["rank"])


__all__ = [
    "LabelFixes",
    "check_fixes_key",
    "read_label_fixes",
    "read_label_issues",
    "spreadsheet_cell",
    "unguard_cell",
    "write_label_fixes",
]
