"""Dataset verification: every listed file exists, is complete and decodes (``tools/check_dataset.py``)."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mlcls.datasets.bags import VOLUME_EXTENSIONS, bag_exists, check_volume_size, volume_header
from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.builder import build_dataset
from mlcls.datasets.class_balanced import unwrapped_dataset_cfg
from mlcls.datasets.image_io import open_image
from mlcls.errors import DataError
from mlcls.registry import DATASETS

KINDS = ("annotation", "missing", "outside-root", "zero-byte", "not-an-image", "too-large", "truncated", "unreadable", "duplicate")

_SIGNATURES = {b"\xff\xd8\xff": "jpeg", b"\x89PNG": "png", b"GIF8": "gif", b"BM": "bmp", b"II*\x00": "tiff", b"MM\x00*": "tiff"}


def image_format(path: str) -> str | None:
    """The image format a file's first bytes announce (jpeg, png, gif, bmp, tiff, webp), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((name for sig, name in _SIGNATURES.items() if head.startswith(sig)), None)


def looks_truncated(path: str) -> bool:
    """True when a JPEG lacks its end-of-image marker or a PNG its IEND chunk (a cut-off download)."""
    lower = path.lower()
    kind = image_format(path)
    if kind is not None and not lower.endswith({"jpeg": (".jpg", ".jpeg"), "png": (".png",)}.get(kind, (lower[-5:] or ".",))):
        return False  # another format under a .jpg/.png name: its own decoder decides
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 32))
            tail = f.read()
    except OSError:
        return False
    if lower.endswith((".jpg", ".jpeg")):
        return b"\xff\xd9" not in tail[-16:]
    if lower.endswith(".png"):
        return b"IEND" not in tail
    return False


def decode_problem(error: DataError, path: str, source: str) -> dict:
    """A reader's refusal as a problem: ``too-large`` above the pixel limit, else ``unreadable``."""
    kind = "too-large" if "above the limit" in str(error) else "unreadable"
    return {"kind": kind, "path": path, "source": source, "detail": str(error).split(": ", 1)[-1]}


def check_images(dataset, decode: bool = True, threads: int = 4) -> list[dict]:
    """Problems of ``dataset``'s image files, each ``{"kind", "path", "source", "detail"}``.

    Kinds: ``missing``, ``zero-byte``, ``not-an-image`` (no image signature at the start of the
    file, e.g. a text or HTML page saved as ``.png``), ``truncated``, ``unreadable`` (the decoder failed) and
    ``duplicate`` (the same file listed again; ``source`` names both places).
    """
    n = len(dataset)
    problems: list[dict] = []
    seen: dict[str, int] = {}
    for i in range(n):
        p = os.path.normpath(dataset.image_path(i))
        if p in seen:
            problems.append(
                {"kind": "duplicate", "path": p, "source": dataset.source(i), "detail": f"also listed at {dataset.source(seen[p])}"}
            )
        else:
            seen[p] = i

    def check(i: int) -> dict | None:
        if getattr(dataset, "bags", False):
            return check_bag(i)
        path = dataset.image_path(i)
        if os.path.isdir(path):
            return {"kind": "missing", "path": path, "source": dataset.source(i), "detail": "a folder, not an image file"}
        if not os.path.isfile(path):
            return {"kind": "missing", "path": path, "source": dataset.source(i), "detail": "file not found"}
        if os.path.getsize(path) == 0:
            return {"kind": "zero-byte", "path": path, "source": dataset.source(i), "detail": "empty file"}
        if image_format(path) is None and not path.lower().endswith((".ppm", ".pgm", ".pbm", ".tga")):
            with open(path, "rb") as f:
                head = f.read(512)
            # what the file is, without echoing its bytes (a listed path may name any file on the machine)
            text = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
            return {
                "kind": "not-an-image",
                "path": path,
                "source": dataset.source(i),
                "detail": f"no image signature at its start ({'it holds text' if text else 'unknown binary data'}, {os.path.getsize(path)} bytes)",
            }
        try:
            with open_image(path, path):  # header only: the size, before anything is decoded
                pass
        except DataError as e:
            return decode_problem(e, path, dataset.source(i))
        if looks_truncated(path):
            return {"kind": "truncated", "path": path, "source": dataset.source(i), "detail": "no end-of-image marker"}
        if decode:
            try:
                dataset.read_image(i)
            except DataError as e:
                return {"kind": "unreadable", "path": path, "source": dataset.source(i), "detail": str(e).rsplit(": ", 1)[-1]}
        return None

    def check_bag(i: int) -> dict | None:
        for path in dataset.view_paths(i).values():
            if not bag_exists(path):
                return {"kind": "missing", "path": path, "source": dataset.source(i), "detail": "not found"}
            try:
                dataset.check_inside_root(i, path)
            except DataError as e:
                return {"kind": "outside-root", "path": path, "source": dataset.source(i), "detail": str(e).split("; ")[0]}
            if path.lower().endswith(VOLUME_EXTENSIONS):  # the header, also without decoding: format, dtype, size
                try:
                    check_volume_size(*volume_header(path)[:2], path)
                except DataError as e:
                    return decode_problem(e, path, dataset.source(i))
        if decode:
            try:
                dataset.read_image(i)
            except DataError as e:
                failed = next((p for p in dataset.view_paths(i).values() if p in str(e)), dataset.image_path(i))  # the view's file
                return decode_problem(e, failed, dataset.source(i))
        return None

    with ThreadPoolExecutor(threads) as pool:
        problems += [r for r in pool.map(check, range(n)) if r is not None]
    return problems


def summarize(problems: list[dict]) -> str:
    counts = Counter(p["kind"] for p in problems)
    return ", ".join(f"{counts[k]} {k}" for k in KINDS if counts[k]) or "no problems"


def check_splits(cfg: dict, splits: list[str], decode: bool = True) -> tuple[list[str], int]:
    """Check the datasets of ``splits`` in ``cfg`` (annotations, image files, labels).

    Returns:
        the report's lines, and the number of problems found.
    """
    lines, total = [], 0
    for split in splits:
        section = cfg.get(f"{split}_dataloader")
        if not section:
            continue
        ds_cfg = unwrapped_dataset_cfg(section["dataset"])  # check the images, not the repeats
        reader = DATASETS.get(ds_cfg.get("type", ""))
        if not (isinstance(reader, type) and issubclass(reader, MultiLabelDataset)):
            # a stream of shards: its images were checked when the shards were written; its labels are checked here
            dataset = build_dataset(dict(ds_cfg, pipeline=[]))
            lines.append(
                f"[{split}] {type(dataset).__name__}: {len(dataset)} samples, {dataset.num_classes} classes (images checked by make_shards)"
            )
            lines += [f"  warning    {w}" for w in label_warnings(dataset)]
            continue
        try:
            dataset = build_dataset(dict(ds_cfg, check_files=False, pipeline=[], collect_errors=True))
        except DataError as e:  # the file itself is missing or unparseable
            lines.append(f"[{split}] annotation error: {e}")
            total += 1
            continue
        problems = [{"kind": "annotation", "path": "", "source": "", "detail": msg} for msg in dataset.annotation_errors or []]
        problems += check_images(dataset, decode=decode)
        lines.append(f"[{split}] {len(dataset)} images, {dataset.num_classes} classes: {summarize(problems)}")
        for p in problems[:50]:
            where = f"{p['path']}  ({p['source']}: {p['detail']})" if p["path"] else p["detail"]
            lines.append(f"  {p['kind']:<10} {where}")
        if len(problems) > 50:
            lines.append(f"  ... and {len(problems) - 50} more")
        for warning in label_warnings(dataset):
            lines.append(f"  warning    {warning}")
        total += len(problems)
    return lines, total


def label_warnings(dataset) -> list[str]:
    """What is legal but almost certainly wrong in the labels: nothing positive at all, or classes
    that never occur (their AP is undefined and an 'auto' pos_weight would sit at its cap)."""
    counts = dataset.class_counts()
    out = []
    if len(dataset) and counts.sum() == 0:
        out.append("no image has any positive label: is the labels column filled, and are labels space-separated?")
    elif (counts == 0).any():
        missing = [dataset.classes[i] for i in np.flatnonzero(counts == 0)]
        out.append(
            f"{len(missing)} class(es) with no positive image: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
            "(no AP for them; pos_weight: auto would give them its cap)"
        )
    return out
