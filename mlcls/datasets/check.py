"""Dataset verification: every listed file exists, is complete and decodes (``tools/check_dataset.py``)."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from mlcls.errors import DataError

KINDS = ("annotation", "missing", "zero-byte", "truncated", "unreadable", "duplicate")


def looks_truncated(path: str) -> bool:
    """True when a JPEG lacks its end-of-image marker or a PNG its IEND chunk (a cut-off download)."""
    lower = path.lower()
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


def check_images(dataset, decode: bool = True, threads: int = 4) -> list[dict]:
    """Problems of ``dataset``'s image files, each ``{"kind", "path", "source", "detail"}``.

    Kinds: ``missing``, ``zero-byte``, ``truncated``, ``unreadable`` (the decoder failed) and
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
        path = dataset.image_path(i)
        if not os.path.isfile(path):
            return {"kind": "missing", "path": path, "source": dataset.source(i), "detail": "file not found"}
        if os.path.getsize(path) == 0:
            return {"kind": "zero-byte", "path": path, "source": dataset.source(i), "detail": "empty file"}
        if looks_truncated(path):
            return {"kind": "truncated", "path": path, "source": dataset.source(i), "detail": "no end-of-image marker"}
        if decode:
            try:
                dataset.read_image(i)
            except DataError as e:
                return {"kind": "unreadable", "path": path, "source": dataset.source(i), "detail": str(e).rsplit(": ", 1)[-1]}
        return None

    with ThreadPoolExecutor(threads) as pool:
        problems += [r for r in pool.map(check, range(n)) if r is not None]
    return problems


def summarize(problems: list[dict]) -> str:
    counts = Counter(p["kind"] for p in problems)
    return ", ".join(f"{counts[k]} {k}" for k in KINDS if counts[k]) or "no problems"
