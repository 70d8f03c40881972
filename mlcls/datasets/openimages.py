"""Open Images image-level labels: verified positives, verified negatives and unknown entries.

The official files: ``*-annotations-human-imagelabels*.csv`` with rows
``ImageID,Source,LabelName,Confidence`` (Confidence 1 = the class is in the image, 0 = verified
absent), ``class-descriptions*.csv`` with ``LabelName,DisplayName`` and, optionally, a trainable-class
list (one LabelName per line). A class not listed for an image is unknown.

The reader is vectorised (numpy over byte chunks, no Python object per row) so the 9M-image,
20k-class training file loads in about a minute; see benchmarks/bench_annotations.py --openimages.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np

from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.labels import LabelIndex
from mlcls.errors import DataError
from mlcls.registry import DATASETS

logger = logging.getLogger("mlcls")

HEADER = b"ImageID,Source,LabelName,Confidence"


def read_class_descriptions(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(LabelNames, DisplayNames) from ``LabelName,DisplayName`` rows (a header row is skipped)."""
    mids, names, first = [], [], {}
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataError(f"class descriptions file not found: {path}") from None
    with f:
        for line_no, row in enumerate(csv.reader(f), 1):
            if not row or (line_no == 1 and row[0] == "LabelName"):
                continue
            if len(row) < 2:
                raise DataError(f"{path}:{line_no}: expected 'LabelName,DisplayName', got {','.join(row)!r}")
            mid = row[0].strip()
            if mid in first:
                raise DataError(f"{path}:{line_no}: LabelName '{mid}' is listed again (first at line {first[mid]}); each class once")
            first[mid] = line_no
            mids.append(mid)
            names.append(row[1].strip())
    if not mids:
        raise DataError(f"{path}: no classes in the class descriptions file")
    return mids, names


def _gather(buf: np.ndarray, start: np.ndarray, length: np.ndarray, width: int) -> np.ndarray:
    """Fields ``buf[start:start+length]`` as a zero-padded uint8 [n, width] array (longer ones cut)."""
    cols = np.arange(width, dtype=np.int64)
    idx = start[:, None] + cols
    out = buf[np.minimum(idx, len(buf) - 1)]
    out[cols >= length[:, None]] = 0
    return out


def _words(fields: np.ndarray) -> np.ndarray:
    """uint8 [n, 8k] -> big-endian uint64 [n, k] (row order = byte order, so comparisons are lexicographic)."""
    return fields.view(">u8").astype(np.uint64)


def _hash(words: np.ndarray) -> np.ndarray:
    h = np.zeros(len(words), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h = h * np.uint64(0x100000001B3) + words[:, j] + np.uint64(j + 1)
    return h


class _ClassLookup:
    """LabelName bytes -> class index (-1: a known LabelName outside the trainable list, -2: unknown)."""

    def __init__(self, all_mids: list[str], index_of: dict[str, int]) -> None:
        raw = [m.encode("utf-8") for m in all_mids]
        self.width = -(-max(len(b) for b in raw) // 8) * 8
        table = np.zeros((len(raw), self.width), dtype=np.uint8)
        for i, b in enumerate(raw):
            table[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
        h = _hash(_words(table))
        order = np.argsort(h, kind="stable")
        if len(np.unique(h)) != len(h):
            raise DataError("class descriptions: two LabelNames share a hash; rename one")  # distinct names: practically never
        self.hashes, self.table = h[order], table[order]
        self.target = np.array([index_of.get(all_mids[i], -1) for i in order], dtype=np.int32)

    def __call__(self, fields: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        h = _hash(_words(fields))
        pos = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
        found = (self.hashes[pos] == h) & (lengths <= self.width) & (self.table[pos] == fields).all(1)
        return np.where(found, self.target[pos], -2)


def read_image_labels(path: str | os.PathLike, lookup: _ClassLookup, chunk_bytes: int = 16 << 20) -> dict:
    """Parse an image-level label file into CSR arrays (see :class:`OpenImagesDataset`).

    Rows of one image are usually consecutive (the official files are sorted by ImageID); then
    no sort is needed. Otherwise the rows are grouped by image (stable), and an (image, class)
    given twice keeps one entry, a positive over a negative.

    Returns:
        dict with ``ids`` (bytes [N]), ``lines`` (int32 [N], the line of each image's first row),
        ``offsets``, ``label_ids``, ``label_vals``, ``rows``, ``outside`` (rows of classes outside
        the class list) and ``unknown`` (rows whose LabelName is in no class description) with a
        few examples of the latter.
    """
    id_width = 16
    heads, head_lines, counts, cls_parts, val_parts = [], [], [], [], []
    prev_last = None  # the last ImageID of the previous chunk, to continue its run
    line_base = 0
    n_rows = n_outside = n_unknown = 0
    unknown_examples: list[str] = []
    with open(path, "rb") as f:
        first = True
        while True:
            chunk = f.read(chunk_bytes)
            if not chunk:
                break
            chunk += f.readline()  # finish the last line
            if first:
                first = False
                if chunk.startswith(b"\xef\xbb\xbf"):
                    chunk = chunk[3:]
                if chunk.startswith(HEADER[:7]):
                    cut = chunk.find(b"\n") + 1 or len(chunk)
                    chunk, line_base = chunk[cut:], 1
            buf = np.frombuffer(chunk, dtype=np.uint8)
            if not len(buf):
                continue
            starts, ends, lines, c1, c2, c3, conf, n_lines = _fields(buf, line_base, path)
            line_base += n_lines
            id_len = c1 - starts
            if id_len.max() > id_width or id_len.min() == 0:
                i = int(np.argmax((id_len > id_width) | (id_len == 0)))
                if id_len[i] == 0:
                    raise DataError(f"{path}:{lines[i]}: empty ImageID")
                id_width = -(-int(id_len.max()) // 8) * 8  # wider IDs than Open Images' 16: widen, keep going
                heads = [np.pad(h, ((0, 0), (0, id_width - h.shape[1]))) for h in heads]
                if prev_last is not None:
                    prev_last = np.pad(prev_last, (0, id_width - len(prev_last)))
            ids = _gather(buf, starts, id_len, id_width)
            words = _words(ids)
            new = np.ones(len(ids), dtype=bool)
            new[1:] = (words[1:] != words[:-1]).any(1)
            if prev_last is not None:
                new[0] = bool((words[0] != _words(prev_last[None])[0]).any())
            run = np.cumsum(new)  # 0: rows continuing the previous chunk's last image
            cls = lookup(_gather(buf, c2 + 1, c3 - c2 - 1, lookup.width), c3 - c2 - 1)
            n_rows += len(cls)
            n_outside += int((cls == -1).sum())
            unknown = np.flatnonzero(cls == -2)
            n_unknown += len(unknown)
            for i in unknown[: max(0, 3 - len(unknown_examples))]:
                unknown_examples.append(f"{bytes(buf[c2[i] + 1 : c3[i]]).decode('utf-8', 'replace')} (line {lines[i]})")
            ok = cls >= 0
            per_run = np.bincount(run[ok], minlength=int(run[-1]) + 1)
            if per_run[0]:  # kept rows of the image the previous chunk ended with
                last = next(c for c in reversed(counts) if len(c))
                last[-1] += per_run[0]
            heads.append(ids[new])
            head_lines.append(lines[new].astype(np.int32))
            counts.append(per_run[1:].astype(np.int64))
            cls_parts.append(cls[ok].astype(np.int32))
            val_parts.append((conf[ok] == 49).astype(np.int8))
            prev_last = ids[-1].copy()
    if not heads:
        raise DataError(f"{path}: no label rows")
    return {**_assemble(heads, head_lines, counts, cls_parts, val_parts), "rows": n_rows, "outside": n_outside, "unknown": n_unknown,
            "unknown_examples": unknown_examples}  # fmt: skip


def _fields(buf: np.ndarray, line_base: int, path) -> tuple:
    """The non-empty lines of a chunk (bytes as uint8) and the positions of their fields:
    ``(starts, ends, line numbers, first/second/third comma, the Confidence byte, lines in the chunk)``,
    or one error naming the line whose fields are not ``ImageID,Source,LabelName,0|1``."""
    nl = np.flatnonzero(buf == 10)
    if not len(nl) or nl[-1] != len(buf) - 1:
        nl = np.append(nl, len(buf))  # a last line without a newline
    starts = np.concatenate([[0], nl[:-1] + 1])
    ends = nl - ((nl > starts) & (buf[np.maximum(nl - 1, 0)] == 13))  # drop a '\r'
    lines = line_base + 1 + np.arange(len(nl))
    keep = ends > starts
    starts, ends, lines = starts[keep], ends[keep], lines[keep]
    commas = np.flatnonzero(buf == 44)
    k = np.searchsorted(commas, starts)
    ncomma = np.searchsorted(commas, ends) - k
    bad = np.flatnonzero(ncomma != 3)
    if len(bad):
        i = bad[0]
        text = bytes(buf[starts[i] : ends[i]][:120]).decode("utf-8", "replace")
        raise DataError(f"{path}:{lines[i]}: expected 4 fields ImageID,Source,LabelName,Confidence, got {text!r}")
    c1, c2, c3 = commas[k], commas[k + 1], commas[k + 2]
    conf_len = ends - c3 - 1
    conf = buf[np.minimum(c3 + 1, len(buf) - 1)]
    bad = np.flatnonzero((conf_len != 1) | ((conf != 48) & (conf != 49)))
    if len(bad):
        i = bad[0]
        text = bytes(buf[c3[i] + 1 : ends[i]]).decode("utf-8", "replace")
        raise DataError(f"{path}:{lines[i]}: Confidence must be 1 (present) or 0 (verified absent), got {text!r}")
    return starts, ends, lines, c1, c2, c3, conf, len(nl)


def _assemble(heads: list, head_lines: list, counts: list, cls_parts: list, val_parts: list) -> dict:
    """The chunks' pieces as one CSR index: ``ids``, ``lines``, ``offsets``, ``label_ids``,
    ``label_vals``, each image's rows grouped (regrouped only when the file was not sorted)."""
    heads = np.concatenate(heads)
    head_lines = np.concatenate(head_lines)
    per_image = np.concatenate(counts).astype(np.int64)
    label_ids = np.concatenate(cls_parts)
    label_vals = np.concatenate(val_parts)
    words = _words(heads)
    # consecutive runs strictly increasing -> every image has exactly one run, nothing to regroup
    increasing = np.ones(max(len(words) - 1, 0), dtype=bool)
    if len(words) > 1:
        a, b = words[:-1], words[1:]
        decided = np.zeros(len(a), dtype=bool)
        for j in range(words.shape[1]):
            lt, gt = a[:, j] < b[:, j], a[:, j] > b[:, j]
            increasing &= ~(gt & ~decided)
            decided |= lt | gt
        increasing &= decided
    offsets = np.zeros(len(heads) + 1, dtype=np.int64)
    np.cumsum(per_image, out=offsets[1:])
    if not increasing.all():
        heads, head_lines, offsets, label_ids, label_vals = _regroup(heads, head_lines, offsets, label_ids, label_vals)
    return {"ids": heads.view(f"S{heads.shape[1]}").ravel(), "lines": head_lines, "offsets": offsets, "label_ids": label_ids,
            "label_vals": label_vals}  # fmt: skip


def _regroup(heads, head_lines, offsets, label_ids, label_vals):
    """Runs of one image spread over the file -> one entry list per image, in first-seen order,
    each (image, class) once (a positive kept over a negative)."""
    void = np.ascontiguousarray(heads).view(np.dtype((np.void, heads.shape[1]))).ravel()
    _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))  # image number in first-seen order
    image_of_run = rank[inverse.ravel()]
    image = np.repeat(image_of_run, np.diff(offsets))
    order = np.lexsort((-label_vals.astype(np.int16), label_ids, image))
    image, label_ids, label_vals = image[order], label_ids[order], label_vals[order]
    keep = np.ones(len(image), dtype=bool)
    keep[1:] = (image[1:] != image[:-1]) | (label_ids[1:] != label_ids[:-1])
    image, label_ids, label_vals = image[keep], label_ids[keep], label_vals[keep]
    n = len(first)
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(image, minlength=n), out=new_offsets[1:])
    firsts = np.sort(first)
    return heads[firsts], head_lines[firsts], new_offsets, label_ids, label_vals


@DATASETS.register_module()
class OpenImagesDataset(MultiLabelDataset):
    """Open Images image-level labels with verified negatives and unknown entries.

    Args:
        ann_file: ``ImageID,Source,LabelName,Confidence`` rows (header optional).
        class_descriptions: ``LabelName,DisplayName`` rows; the classes, in file order.
        trainable_classes: optional file with one LabelName per line: only these classes, in this
            order (rows of other classes are dropped, and counted in the log).
        unlisted_as: the value of a class not listed for an image: ``ignore`` (-1, the Open Images
            protocol: no loss, no metric) or ``negative`` (0).
        image_folder: folder of the images under ``data_root``; images are
            ``{data_root}/{image_folder}/{ImageID}{image_ext}``.
        check_files: stat every image at start-up (off by default here: 9M stats take minutes;
            a missing image is reported with its ImageID and line when it is read).

    Class names are the DisplayNames (a DisplayName used by two LabelNames gets its LabelName in
    parentheses); :attr:`label_names` keeps the LabelNames in the same order.
    """

    def __init__(
        self,
        ann_file: str,
        class_descriptions: str,
        trainable_classes: str | None = None,
        unlisted_as: str = "ignore",
        image_folder: str = "",
        image_ext: str = ".jpg",
        pipeline=None,
        data_root: str = "",
        check_files: bool = False,
        **kwargs,
    ) -> None:
        if unlisted_as not in ("ignore", "negative"):
            raise DataError(f"OpenImagesDataset.unlisted_as: expected 'ignore' or 'negative', got '{unlisted_as}'")
        if kwargs.get("classes") is not None:
            raise DataError("OpenImagesDataset: the classes come from class_descriptions (and trainable_classes), not 'classes'")
        kwargs.pop("classes", None)
        self.unlisted = -1 if unlisted_as == "ignore" else 0
        self.data_root = str(data_root)
        self.ann_file = self.resolve(ann_file)
        self.image_folder, self.image_ext = image_folder, image_ext
        mids, names = read_class_descriptions(self.resolve(class_descriptions))
        self._all_mids = mids
        if trainable_classes:
            path = self.resolve(trainable_classes)
            if not os.path.isfile(path):
                raise DataError(f"trainable class list not found: {path}")
            wanted = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
            display = dict(zip(mids, names))
            missing = [m for m in wanted if m not in display]
            if missing:
                raise DataError(f"{path}: {len(missing)} LabelNames are not in {class_descriptions} (first: {missing[:3]})")
            mids, names = wanted, [display[m] for m in wanted]
        self.label_names = mids
        counts: dict[str, int] = {}
        for n in names:
            counts[n] = counts.get(n, 0) + 1
        classes = [n if counts[n] == 1 else f"{n} ({m})" for n, m in zip(names, mids)]
        super().__init__(classes=classes, pipeline=pipeline, data_root=data_root, check_files=check_files, **kwargs)

    def load_annotations(self) -> LabelIndex:
        if not os.path.isfile(self.ann_file):
            raise DataError(f"annotation file not found: {self.ann_file}")
        lookup = _ClassLookup(self._all_mids, {m: i for i, m in enumerate(self.label_names)})
        r = read_image_labels(self.ann_file, lookup)
        if r["outside"]:
            logger.info("%s: %d of %d rows are of classes outside the trainable list (left out)", self.ann_file, r["outside"], r["rows"])
        if r["unknown"]:
            logger.warning(
                "%s: %d rows name a LabelName that no class description has (left out), e.g. %s",
                self.ann_file,
                r["unknown"],
                ", ".join(r["unknown_examples"]),
            )
        return LabelIndex(r["ids"], r["offsets"], r["label_ids"], r["label_vals"], r["lines"])

    def image_path(self, idx: int) -> str:
        return os.path.join(self.data_root, self.image_folder, self.label_index.paths[idx].decode("ascii") + self.image_ext)
