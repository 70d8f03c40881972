"""The evaluation report: one self-contained HTML page per evaluated checkpoint (see docs/report.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from mlcls.report.data import compare_data, report_data
from mlcls.report.html import label_issue_entries, write_compare, write_report
from mlcls.report.store import SCORES_FILE, load_eval_scores, save_eval_scores

__all__ = [
    "SCORES_FILE",
    "build_report",
    "compare_data",
    "load_eval_scores",
    "report_data",
    "save_eval_scores",
    "write_compare",
    "write_report",
]


def build_report(
    scores: torch.Tensor,
    targets: torch.Tensor,
    paths: Sequence[str],
    classes: Sequence[str],
    thr: Sequence[float],
    meta: dict,
    out: str | os.PathLike,
    gallery_k: int = 6,
    gallery_classes: int = 100,
    metrics: dict | None = None,
    at_half: dict | None = None,
    evidence_fn=None,
    label_issues: str | os.PathLike | None = None,
    evidence: dict | None = None,
    review_max: int | None = None,
) -> Path:
    """Compute the page's data and write ``out`` (``meta`` as stored in ``eval_scores.npz``).
    ``metrics`` / ``at_half``: :func:`~mlcls.evaluation.functional.compute_metrics` of these
    scores at ``thr`` (with ``sample_metrics``) and at 0.5, when the caller has them already.
    ``evidence_fn``: for a model of exams, its per-slice evidence (see :func:`write_report`);
    ``label_issues``: a ``label_issues.csv`` whose pairs the page offers for review; ``evidence``:
    the scores file's evidence slices (``load_eval_scores``), by which it shows their exams;
    ``review_max``: at most this many flags (the first by rank) in the review."""
    counts = (meta.get("train_counts") or {}).get("pos")
    data = report_data(
        scores,
        targets,
        classes,
        thr,
        meta={k: v for k, v in meta.items() if k not in ("train_counts", "run_dir")},
        train_counts=counts if counts is not None and len(counts) == len(classes) else None,
        gallery_k=gallery_k,
        gallery_classes=gallery_classes,
        work_dir=meta.get("run_dir"),
        metrics=metrics,
        at_half=at_half,
    )
    if label_issues is not None:  # tools/find_label_issues.py's pairs, for review in the page
        data["label_issues"] = label_issue_entries(label_issues, list(classes), views=meta.get("views"), paths=paths, evidence=evidence,
                                                   max_pairs=review_max)  # fmt: skip
    title = f"mlcls report: {meta.get('name', '')}"
    return write_report(data, paths, targets, out, title=title, views=meta.get("views"), evidence_fn=evidence_fn)
