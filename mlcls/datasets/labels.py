"""Class lists and the label index: per-sample labels as CSR arrays, one form for every reader.

A label index holds, for N samples: ``paths`` (one UTF-8 byte array [N]), ``lines`` (int32 [N],
where each sample is listed in its annotation file), ``offsets`` (int64 [N+1]), ``ids`` (int32
[nnz], class ids) and ``vals`` (int8 [nnz]: 1 positive, 0 verified negative, -1 ignored).
"""

from __future__ import annotations

import difflib
import os
import re
from array import array
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mlcls.errors import DataError


def read_class_list(classes: Sequence[str] | str | os.PathLike, where: str = "classes") -> list[str]:
    """Class names from a list, or from a text file with one name per line (blank lines skipped)."""
    if isinstance(classes, (str, os.PathLike)):
        path = Path(classes)
        if not path.is_file():
            raise DataError(f"{where}: class list file not found: {path}")
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        where = str(path)
    elif classes is None:
        names = []
    else:
        names = [str(c) for c in classes]
    if not names:
        raise DataError(f"{where}: the class list is empty; give at least one class name")
    dup = {n for n in names if names.count(n) > 1} if len(set(names)) != len(names) else set()
    if dup:
        raise DataError(f"{where}: duplicate class names: {sorted(dup)}")
    return names


def first_difference(a: Sequence[str], b: Sequence[str]) -> tuple[int, str, str] | None:
    """Where two class lists first differ: ``(index, a's name, b's name)`` (``<end>`` past a list's
    end), or None when they are equal."""
    if list(a) == list(b):
        return None
    n = min(len(a), len(b))
    i = next((i for i in range(n) if a[i] != b[i]), n)
    return i, a[i] if i < len(a) else "<end>", b[i] if i < len(b) else "<end>"


def check_space_free(classes: Sequence[str], where: str) -> None:
    """Class names of a list format whose labels are separated by whitespace cannot contain any."""
    spaced = [c for c in classes if any(ch.isspace() for ch in c)]
    if spaced:
        raise DataError(
            f"{where}: class name {spaced[0]!r} contains a space, but this format separates labels by spaces, so it could "
            f"never be named in a row; rename it (e.g. {'_'.join(spaced[0].split())!r})"
            + (f" and {len(spaced) - 1} more like it" if len(spaced) > 1 else "")
        )


def unknown_class_error(name: str, classes: Sequence[str], where: str) -> DataError:
    parts = [p for p in re.split(r"[,;|]", name) if p]
    if len(parts) > 1 and all(p.strip() in classes for p in parts):  # 'circle,square' (a quoted CSV field)
        return DataError(f"{where}: unknown class '{name}': labels are separated by spaces, write '{' '.join(p.strip() for p in parts)}'")
    close = difflib.get_close_matches(name, classes, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
    return DataError(f"{where}: unknown class '{name}'{hint} (classes: {shown})")


def encode_paths(paths: Sequence[str]) -> np.ndarray:
    """Paths as one fixed-width UTF-8 byte array: 1 byte per ASCII character instead of numpy's
    4 (``str_``) or a Python object per path (~75 bytes of overhead each)."""
    return np.array([str(p).encode("utf-8") for p in paths], dtype=np.bytes_)


class LabelStats(dict):
    """``label_stats()`` result; ``combinations`` is computed on first access only (a pass over
    every image that only the label-powerset head needs)."""

    def __init__(self, combinations: Callable[[], list], **counts) -> None:
        super().__init__(**counts)
        self._combinations = combinations

    def __missing__(self, key: str):
        if key != "combinations":
            raise KeyError(key)
        self[key] = self._combinations()
        return self[key]


def segment_reduce(ufunc: np.ufunc, values: np.ndarray, offsets: np.ndarray, empty: float | int = 0) -> np.ndarray:
    """``ufunc`` (``np.add``, ``np.maximum``) over each segment ``values[offsets[i]:offsets[i+1]]``,
    [len(offsets) - 1]; an empty segment gets ``empty`` (``reduceat`` alone would repeat the
    next element for it). One pass, no per-entry segment index."""
    out = np.full(len(offsets) - 1, empty, dtype=np.result_type(values, np.min_scalar_type(empty)))
    filled = np.diff(offsets) > 0
    if values.size:
        out[filled] = ufunc.reduceat(values, offsets[:-1][filled])
    return out


class LabelIndex:
    """The labels of N samples as CSR arrays: the one form every reader produces (list files, COCO,
    VOC, Open Images, MRNet, shards' ``labels.npz``).

    Attributes:
        paths: bytes array [N], each sample's path (relative to the data root) in UTF-8.
        offsets: int64 [N+1]; sample i's labels are entries ``offsets[i]:offsets[i+1]``.
        ids: int32 [nnz], class ids.
        vals: int8 [nnz]: 1 positive, 0 verified negative, -1 ignored.
        lines: int32 [N], where each sample is declared in its annotation file (0: unknown).
    """

    def __init__(self, paths, offsets, ids, vals, lines=None) -> None:
        is_bytes = isinstance(paths, np.ndarray) and paths.dtype.kind == "S"
        self.paths = paths if is_bytes else encode_paths(paths)  # a bytes array is kept as it is
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.ids = np.asarray(ids, dtype=np.int32)
        self.vals = np.asarray(vals, dtype=np.int8)
        self.lines = np.zeros(len(self.paths), dtype=np.int32) if lines is None else np.asarray(lines, dtype=np.int32)
        if len(self.offsets) != len(self.paths) + 1 or self.offsets[-1] != len(self.ids) or len(self.ids) != len(self.vals):
            raise DataError(
                f"label index: offsets must have N+1 = {len(self.paths) + 1} entries ending at the {len(self.ids)} label "
                f"entries, got {len(self.offsets)} ending at {self.offsets[-1] if len(self.offsets) else None}"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, rows: Sequence[int] | np.ndarray) -> "LabelIndex":
        """The index of the samples ``rows`` (in that order), their lines kept."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        entry = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(int(lengths.sum()))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return LabelIndex(self.paths[rows], offsets, self.ids[entry], self.vals[entry], self.lines[rows])

    def positives(self, num_classes: int) -> np.ndarray:
        """Dense uint8 [N, C]: 1 where a sample's class is positive (for splitting small sets)."""
        out = np.zeros((len(self), num_classes), dtype=np.uint8)
        rows = np.repeat(np.arange(len(self)), np.diff(self.offsets))
        keep = self.vals == 1
        out[rows[keep], self.ids[keep]] = 1
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the arrays to an ``.npz`` file (read back by :meth:`load`, no pickles)."""
        np.savez(path, paths=self.paths, offsets=self.offsets, label_ids=self.ids, label_vals=self.vals, lines=self.lines)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelIndex":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["paths"], z["offsets"], z["label_ids"], z["label_vals"], z["lines"] if "lines" in z else None)


class LabelIndexBuilder:
    """Collects per-image labels into CSR arrays while an annotation file is parsed."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lines = array("i")
        self.offsets = array("q", [0])
        self.ids = array("i")
        self.vals = array("b")

    def add(self, path: str, positives: Sequence[int], line: int = 0, ignored: Sequence[int] = ()) -> None:
        self.paths.append(path)
        self.lines.append(line)
        self.ids.extend(positives)
        self.vals.extend([1] * len(positives))
        self.ids.extend(ignored)
        self.vals.extend([-1] * len(ignored))
        self.offsets.append(len(self.ids))

    def __len__(self) -> int:
        return len(self.paths)

    def build(self) -> LabelIndex:
        """The finished index (the collected lists as arrays)."""
        return LabelIndex(
            self.paths,
            np.frombuffer(self.offsets, dtype=np.int64).copy(),
            np.frombuffer(self.ids, dtype=np.int32).copy(),
            np.frombuffer(self.vals, dtype=np.int8).copy(),
            np.frombuffer(self.lines, dtype=np.int32).copy(),
        )
