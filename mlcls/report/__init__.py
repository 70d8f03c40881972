"""The evaluation report: one self-contained HTML page per evaluated checkpoint (see docs/report.md)."""

from __future__ import annotations

import os
from pathlib import Path

from mlcls.report.data import compare_data, report_data
from mlcls.report.html import label_issue_entries, write_compare, write_report
from mlcls.report.store import SCORES_FILE, Evaluation, load_eval_scores, save_eval_scores

__all__ = [
    "SCORES_FILE",
    "Evaluation",
    "build_report",
    "compare_data",
    "load_eval_scores",
    "report_data",
    "save_eval_scores",
    "write_compare",
    "write_report",
]


def build_report(
    ev: Evaluation,
    out: str | os.PathLike,
    gallery_k: int = 6,
    gallery_classes: int = 100,
    metrics: dict | None = None,
    at_half: dict | None = None,
    evidence_fn=None,
    label_issues: str | os.PathLike | None = None,
    review_max: int | None = None,
) -> Path:
    """Compute the page's data of ``ev`` and write it to ``out``.

    ``metrics`` / ``at_half``: :func:`~mlcls.evaluation.functional.compute_metrics` of these
    scores at ``ev.thr`` (with ``sample_metrics``) and at 0.5, when the caller has them already.
    ``evidence_fn``: for a model of exams, its per-slice evidence (see :func:`write_report`);
    without it the page shows exams by ``ev.evidence`` (saved scores) when there is some.
    ``label_issues``: a ``label_issues.csv`` whose pairs the page offers for review;
    ``review_max``: at most this many flags (the first by rank) in the review."""
    meta = ev.meta
    counts = (meta.get("train_counts") or {}).get("pos")
    data = report_data(
        ev.scores,
        ev.targets,
        ev.classes,
        ev.thr,
        meta={k: v for k, v in meta.items() if k not in ("train_counts", "run_dir")},
        train_counts=counts if counts is not None and len(counts) == len(ev.classes) else None,
        gallery_k=gallery_k,
        gallery_classes=gallery_classes,
        work_dir=meta.get("run_dir"),
        metrics=metrics,
        at_half=at_half,
    )
    if label_issues is not None:  # tools/find_label_issues.py's pairs, for review in the page
        data["label_issues"] = label_issue_entries(label_issues, list(ev.classes), views=ev.views, paths=ev.paths, evidence=ev.evidence,
                                                   max_pairs=review_max)  # fmt: skip
    title = f"mlcls report: {meta.get('name', '')}"
    return write_report(data, ev.paths, ev.targets, out, title=title, views=ev.views, evidence_fn=evidence_fn)
