"""Write the evaluation report: one self-contained HTML file (inline CSS, JS, data and thumbnails)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image, ImageOps

from mlcls.datasets import bags
from mlcls.datasets.image_io import open_image
from mlcls.datasets.label_fixes import read_label_issues
from mlcls.errors import DataError
from mlcls.report.data import compare_data, gallery_rows, image_entries
from mlcls.utils.fileio import atomic_open

logger = logging.getLogger("mlcls")
ASSETS = Path(__file__).with_name("assets")
THUMB_SIZE = 96
#: seconds a page may spend reading pictures (a slow or hung network file system ends nothing):
#: past it, the remaining pictures are named as not read
PICTURE_SECONDS = 300.0


class PictureClock:
    """The time a report has left to read pictures (see :data:`PICTURE_SECONDS`)."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = PICTURE_SECONDS if seconds is None else float(seconds)
        self.end = time.monotonic() + self.seconds
        self.skipped = 0

    def thumbnail(self, *args, **kwargs) -> tuple[str | None, str | None, str | None]:
        """:func:`thumbnail`, or (None, why, None) once the time is spent."""
        if time.monotonic() > self.end:
            self.skipped += 1
            return None, f"not read: the report's {self.seconds:g} s for pictures ran out", None
        return thumbnail(*args, **kwargs)

    def say(self) -> None:
        if self.skipped:
            logger.warning("report: %d pictures were not read: the %g s for pictures ran out (slow files?)", self.skipped, self.seconds)


def slice_words(k: int, n: int) -> str:
    """How every page and file names slice ``k`` of a series of ``n``: counted from 0, as the
    volume's index and every saved evidence array count (``slice 12 of 0-23``)."""
    return f"slice {k} of 0-{n - 1}"


def thumbnail(
    path: str | os.PathLike, size: int = THUMB_SIZE, views: Sequence[str] | None = None, slice_index: int | None = None
) -> tuple[str | None, str | None, str | None]:
    """(JPEG data URI at most ``size`` px on a side, None, caption) or (None, why it could not be read, caption).

    A sample of several views (a ``{view}`` path) is shown by the first of the model's ``views``,
    never by a folder picked from the disk; a series by its middle slice, or by ``slice_index``
    (0-based) when given. The caption names the sample, the view and the slice (``0045: sagittal,
    slice 12 of 24``).
    """
    path = str(path)
    caption = None
    view = ""
    if bags.VIEW_PLACEHOLDER in path:
        if not views or not views[0]:
            return None, "the model's views are not recorded with these scores", os.path.basename(bags.exam_name(path))
        view = views[0]
        path = path.replace(bags.VIEW_PLACEHOLDER, view)
    if bags.is_bag_path(path):  # a series: its middle slice stands for it
        name = os.path.basename(bags.exam_name(path) if not view else os.path.splitext(path)[0])
        try:
            bag = bags.load_bag(path)
        except (DataError, OSError) as e:
            return None, f"unreadable: {str(e).split(': ', 1)[-1]}", name
        if slice_index is not None and not 0 <= slice_index < bag.shape[0]:  # never another slice under the evidence's caption
            return None, f"slice {slice_index} is not in this series of slices 0-{bag.shape[0] - 1} (changed since it was scored?)", name
        k = bag.shape[0] // 2 if slice_index is None else slice_index
        caption = f"{name}: {view + ', ' if view else ''}{slice_words(k, bag.shape[0])}"
        path = io.BytesIO()
        Image.fromarray(bag[k].permute(1, 2, 0).numpy()).save(path, format="PNG")
        path.seek(0)
    try:
        with open_image(path, str(path)) as im:  # the pixel limit is checked before anything is decoded
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster for big photos
            im = ImageOps.exif_transpose(im).convert("RGB")  # shown as the model saw it: EXIF orientation applied
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=75)
    except DataError as e:
        return None, f"unreadable: {str(e).split(': ', 1)[-1]}", caption
    except (OSError, ValueError) as e:
        return None, f"unreadable: {e.__class__.__name__}", caption
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), None, caption


def _jpeg_uri(rgb: torch.Tensor, size: int) -> str:
    """uint8 [3, H, W] -> a JPEG data URI at most ``size`` px on a side."""
    im = Image.fromarray(rgb.permute(1, 2, 0).numpy())
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


#: the size of the slices shown when an exam is opened in the report
SLICE_SIZE = 48


def evidence_entries(entry: dict, evidence: dict, classes: Sequence[str], gallery_classes: Sequence[int], views: Sequence[str]) -> None:
    """Add to a gallery entry (an exam) the slice that carried each gallery class's score
    (``evidence``: ``{class index: {view, slice, score, thumb, caption}}``) and, per view that holds
    such a slice, every slice with its scores (``slices``: ``{view: {"thumbs", "index", "scores"}}``),
    from :func:`mlcls.apis.inference.bag_evidence`'s result."""
    name = os.path.basename(bags.exam_name(entry["file"]))
    files = bags.view_files(entry["file"], list(views))
    loaded: dict[str, torch.Tensor] = {}
    entry["evidence"], entry["slices"] = {}, {}
    for c in gallery_classes:
        best = evidence["per_class"].get(classes[c])
        if best is None:
            continue
        v = best["view"]
        if v not in loaded:
            try:
                loaded[v] = bags.load_bag(files[v])
            except (DataError, OSError):
                continue
            rows = evidence["slices"][v]
            entry["slices"][v] = {
                "thumbs": [_jpeg_uri(loaded[v][r["slice"]], SLICE_SIZE) for r in rows],
                "index": [r["slice"] for r in rows],
                "scores": [[round(r["scores"][k], 4) for k in classes] for r in rows],
                "attention": [r["attention"] for r in rows] if rows and rows[0]["attention"] is not None else None,
            }
        k, n = best["slice"], loaded[v].shape[0]
        entry["evidence"][c] = {
            "view": v, "slice": k, "score": round(best["score"], 4), "thumb": _jpeg_uri(loaded[v][k], THUMB_SIZE),
            "caption": f"{name}: {v + ', ' if v else ''}{slice_words(k, n)}, the evidence for {classes[c]}",
        }  # fmt: skip


def _clean(obj):
    """NaN/inf -> None (JSON has no NaN; the page shows n/a)."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def render(data: dict, title: str) -> str:
    """The page for ``data`` (a :func:`report_data` or :func:`compare_data` result) as one HTML string."""
    payload = json.dumps(_clean(data), separators=(",", ":"), allow_nan=False)
    payload = payload.replace("<", "\\u003c")  # no "</script>" or "<!--" can end the data element early
    page = (ASSETS / "template.html").read_text(encoding="utf-8")
    esc_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # one pass: a placeholder's replacement is never searched for the next placeholder
    parts = {"__TITLE__": esc_title, "__CSS__": (ASSETS / "report.css").read_text(encoding="utf-8")}
    parts["__JS__"] = (ASSETS / "report.js").read_text(encoding="utf-8")
    parts["__DATA__"] = payload
    return re.sub("|".join(parts), lambda m: parts[m.group(0)], page)


def write_report(
    data: dict,
    paths: Sequence[str],
    targets: torch.Tensor,
    out: str | os.PathLike,
    title: str = "mlcls report",
    views: Sequence[str] | None = None,
    evidence_fn: Callable[[Sequence[str]], list[dict]] | None = None,
) -> Path:
    """Embed the gallery's thumbnails into ``data`` and write ``out`` (atomically).

    Args:
        data: from :func:`mlcls.report.data.report_data`.
        paths: image path of every row of the scores.
        targets: [N, C] (the gallery's true labels).
        out: the HTML file to write.
        views: the model's views, for samples of several (the first one is shown).
        evidence_fn: for a model of exams, :func:`mlcls.apis.inference.bag_evidence` bound to it
            (paths -> evidence): each gallery then shows an exam by the slice that carried the
            class's score, and a click on it shows all the slices of that view with their scores.
    """
    rows = gallery_rows(data)
    images = image_entries(rows, paths, targets)
    unreadable = 0
    clock = PictureClock()
    for entry in images.values():
        entry["thumb"], entry["error"], entry["caption"] = clock.thumbnail(entry["file"], views=views)
        unreadable += entry["error"] is not None
    clock.say()
    if unreadable:
        logger.warning(
            "report: %d of %d gallery images could not be read; the page shows their names without a picture", unreadable, len(images)
        )
    if evidence_fn is not None and images:
        classes = [c["name"] for c in data["classes"]]
        shown_in = {}  # row -> the classes whose gallery shows it
        for c, g in data["gallery"].items():
            for key in ("fp", "miss"):
                for r, _ in g[key]:
                    shown_in.setdefault(int(r), []).append(int(c))
        named = [v for v in views or [] if v] or [""]
        rows = [r for r in images if images[r]["error"] is None]
        for r, ev in zip(rows, evidence_fn([bags.bag_input(images[r]["file"], named) for r in rows])):
            evidence_entries(images[r], ev, classes, sorted(set(shown_in.get(r, []))), named)
    out = Path(out)
    with atomic_open(out) as f:  # evidence_slices: the page shows exams by their evidence, which only the model can give
        f.write(render({**data, "images": images, "evidence_slices": evidence_fn is not None}, title))
    return out


def has_model_evidence(page: str | os.PathLike) -> bool:
    """Whether the report page ``page`` shows exams by the evidence slices its model gave (written by
    tools/test.py): a page rebuilt from saved scores alone would show middle slices instead."""
    try:
        return '"evidence_slices":true' in Path(page).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def write_compare(a: dict, b: dict, out: str | os.PathLike, paired: dict | None = None) -> Path:
    """Two reports side by side (see :func:`compare_data`; ``paired``: the paired statistics of
    :func:`~mlcls.report.data.paired_comparison`), written to ``out``."""
    out = Path(out)
    with atomic_open(out) as f:
        f.write(render(compare_data(a, b, paired), f"mlcls: {a['meta'].get('name', 'A')} vs {b['meta'].get('name', 'B')}"))
    return out


#: the side of a picture in the review of suspected label errors (small images are enlarged to it in the page)
REVIEW_SIZE = 160


def label_issue_entries(
    issues_csv: str | os.PathLike,
    classes: Sequence[str],
    views: Sequence[str] | None = None,
    paths: Sequence[str] | None = None,
    evidence: dict | None = None,
    max_pairs: int | None = None,
) -> dict:
    """The "Suspected label errors" section's data: every flag of ``label_issues.csv``
    (tools/find_label_issues.py) in the finder's rank, each with its picture, for a review page that
    filters them by kind and class and pages through them.

    An exam is shown by the slice that carried the class's score when the scores kept it
    (``evidence``: ``{"view", "slice"}`` [N, C] of the scores file, rows in the order of ``paths``),
    else by its middle slice. ``max_pairs`` keeps the first pairs by rank (the page says how many
    were left out). ``key`` (the file's hash) names the browser storage that keeps the verdicts."""
    issues_csv = Path(issues_csv)
    raw = issues_csv.read_bytes()
    flags = read_label_issues(str(issues_csv), classes)
    total = len(flags)
    if max_pairs is not None:
        flags = flags[:max_pairs]
    row_of = {p: i for i, p in enumerate(paths)} if evidence is not None and paths is not None else {}
    pairs = []
    clock = PictureClock()
    for r in flags:
        c, i = r["class"], row_of.get(r["path"])
        if i is not None and evidence["slice"][i, c] >= 0:
            view = views[int(evidence["view"][i, c])]
            thumb, error, caption = clock.thumbnail(r["path"], REVIEW_SIZE, views=[view], slice_index=int(evidence["slice"][i, c]))
            caption = caption and f"{caption}, the evidence for {classes[c]}"
        else:
            thumb, error, caption = clock.thumbnail(r["path"], REVIEW_SIZE, views=views)
        pairs.append({**r, "thumb": thumb, "error": error, "caption": caption or os.path.basename(r["path"])})
    clock.say()
    return {"file": str(issues_csv), "key": hashlib.sha256(raw).hexdigest()[:16], "total": total, "pairs": pairs}
