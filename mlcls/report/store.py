"""One evaluation as a value (:class:`Evaluation`) and its one file form, saved beside the results
so that a report, a comparison or the search for label errors needs no model.

``eval_scores.npz`` holds plain arrays only (loaded with ``allow_pickle=False``): ``scores``
float32 [N, C], ``targets`` int8 [N, C] (1 / 0 / -1), ``paths`` [N] and ``classes`` [C] as unicode,
``thr`` float64 [C] (the thresholds in use) and ``meta``, a JSON string (checkpoint, config,
split, thresholds source, training counts, run folder). For a model of exams it may also hold
``evidence_view`` int8 and ``evidence_slice`` int32 [N, C]: per sample and class, the view (an
index into ``meta["views"]``) and the slice (0-based, as in the file) that carried the score; the
report shows an exam by that slice. ``heldout_scores.npz`` (a fold's) and ``oof_scores.npz`` (a
folds run's) are the same form.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mlcls.errors import DataError
from mlcls.utils.fileio import atomic_path

SCORES_FILE = "eval_scores.npz"


@dataclass
class Evaluation:
    """One split's predictions and what they are judged against: the value every tool hands on.

    ``tools/test.py`` makes it by predicting a split, ``--folds`` by predicting each held-out fold
    and pooling the folds out-of-fold; ``tools/report.py`` and ``tools/find_label_issues.py`` load
    it from its one file form (:func:`save_eval_scores` / :func:`load_eval_scores`). Writers take
    it whole: the metrics files, ``--out`` rows, the report page, the comparison of two.

    Attributes:
        scores: float32 [N, C] probabilities.
        targets: int8 [N, C]: 1, 0 or -1 (unknown).
        paths: N sample paths (a sample of several views: its ``{view}`` template).
        classes: C class names, unique.
        thr: C thresholds in use, in [0, 1].
        meta: JSON facts of the evaluation: ``name``, ``checkpoint``, ``split``,
            ``thresholds_source``, ``tta``, ``views`` (of a model of exams), ``same_samples`` (why
            the numbers are optimistic), ``folds`` / ``seed`` / ``labels_sha256`` of out-of-fold
            scores, ``created``.
        evidence: for a model of exams, ``{"view": int [N, C], "slice": int [N, C]}``: per sample
            and class, the view (an index into ``meta["views"]``) and slice that carried the score.
    """

    scores: torch.Tensor
    targets: torch.Tensor
    paths: list[str]
    classes: list[str]
    thr: list[float]
    meta: dict = field(default_factory=dict)
    evidence: dict | None = None

    @property
    def views(self) -> list[str] | None:
        """The model's views (a model of exams), else None."""
        return self.meta.get("views")

    def with_thresholds(self, thr: Sequence[float], source: str) -> Evaluation:
        """The same predictions judged at other thresholds (``source``: where they come from)."""
        return replace(self, thr=[float(v) for v in thr], meta={**self.meta, "thresholds_source": source})


def save_eval_scores(path: str | os.PathLike, ev: Evaluation) -> Path:
    """Write ``ev`` to ``path`` (an ``.npz``) atomically; see the module docstring for its arrays."""
    path = Path(path)
    extra = {}
    if ev.evidence is not None:
        extra = {
            "evidence_view": np.asarray(ev.evidence["view"], dtype=np.int8),
            "evidence_slice": np.asarray(ev.evidence["slice"], dtype=np.int32),
        }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                scores=ev.scores.float().numpy(),
                targets=ev.targets.to(torch.int8).numpy(),
                paths=np.array([str(p) for p in ev.paths], dtype=str),
                classes=np.array(list(ev.classes), dtype=str),
                thr=np.asarray(ev.thr, dtype=np.float64),
                meta=np.array(json.dumps(ev.meta)),
                **extra,
            )
    return path


def load_eval_scores(path: str | os.PathLike) -> Evaluation:
    """The :class:`Evaluation` saved in ``path``, checked by :func:`check_eval_scores` (one error
    naming the file and the problem)."""
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO would block the read forever
        raise DataError(f"{path}: not a regular file (a folder, pipe or device); expected an .npz evaluation file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise DataError(f"{path}: cannot read the saved evaluation ({e.strerror or e})") from None
    if magic != b"PK\x03\x04":  # an .npz is a zip archive; say what the file is instead of numpy's "pickled data"
        kind = (
            "it is empty"
            if not magic
            else "it looks like JSON or text"
            if magic[:1] in (b"{", b"[", b'"') or magic.isascii()
            else "unknown data"
        )
        raise DataError(f"{path}: not an .npz evaluation file ({kind}); tools/test.py writes eval_scores.npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"scores", "targets", "paths", "classes", "thr", "meta"} - set(z.files)
            if missing:
                raise DataError(f"{path}: not an mlcls evaluation file (missing {', '.join(sorted(missing))})")
            arrays = {key: z[key] for key in ("scores", "targets", "paths", "classes", "thr", "meta")}
            for key, ndim in (("scores", 2), ("targets", 2), ("paths", 1), ("classes", 1), ("thr", 1), ("meta", 0)):
                if arrays[key].ndim != ndim:
                    raise DataError(f"{path}: {key} must be a {ndim}-D array, got shape {arrays[key].shape}")
            ev = Evaluation(
                scores=torch.from_numpy(arrays["scores"].astype(np.float32)),
                targets=torch.from_numpy(arrays["targets"]),  # as stored: int8 once checked (a cast would hide 0.5 or 257)
                paths=arrays["paths"].tolist(),
                classes=arrays["classes"].tolist(),
                thr=arrays["thr"].tolist(),
                meta=json.loads(str(arrays["meta"])),
            )
            if "evidence_view" in z.files and "evidence_slice" in z.files:
                ev.evidence = {"view": z["evidence_view"].astype(np.int64), "slice": z["evidence_slice"].astype(np.int64)}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile) as e:  # truncated, or a pickled (object) array
        raise DataError(f"{path}: cannot read the saved evaluation, damaged or cut short? ({e})") from None
    check_eval_scores(ev, path)
    ev.targets = ev.targets.to(torch.int8)
    return ev


#: meta keys whose type is checked when saved scores are read (others are carried as they are)
_META_TYPES = {"name": str, "split": str, "checkpoint": str, "thresholds_source": str, "folds": int, "seed": int, "views": list,
               "tta": list, "seeds": list, "checkpoints": list, "labels_sha256": str, "label_fixes": dict, "run": dict}  # fmt: skip


def check_eval_scores(ev: Evaluation, path: str | os.PathLike) -> None:
    """Refuse saved scores that no tool can use, with one message naming the file and the problem:
    arrays of other shapes, no rows or classes, scores not finite or outside [0, 1] (logits or
    percentages saved by another program), targets other than 1 / 0 / -1, classes named twice or
    empty, thresholds outside [0, 1], meta that is not an object of the known
    types, evidence that does not match the scores."""
    scores, targets = ev.scores, ev.targets  # 2-D: load_eval_scores checked every array's rank
    n, c = scores.shape
    if n == 0 or c == 0:
        raise DataError(f"{path}: no {'samples' if n == 0 else 'classes'} in the saved scores (shape {n}x{c})")
    if tuple(targets.shape) != (n, c) or len(ev.paths) != n or len(ev.classes) != c or len(ev.thr) != c:
        raise DataError(f"{path}: inconsistent arrays (scores {n}x{c}, targets {tuple(targets.shape)}, {len(ev.paths)} paths, "
                        f"{len(ev.classes)} classes, {len(ev.thr)} thresholds)")  # fmt: skip
    bad = ~torch.isfinite(scores)
    if bad.any():
        i, k = (int(v) for v in bad.nonzero()[0])
        raise DataError(f"{path}: {int(bad.sum())} scores are NaN or infinite (the first: row {i}, class '{ev.classes[k]}')")
    lo, hi = float(scores.min()), float(scores.max())
    if lo < 0 or hi > 1:
        raise DataError(f"{path}: scores must be probabilities in [0, 1], found {lo:g} to {hi:g} (logits or percentages?)")
    wrong = ~((targets == 1) | (targets == 0) | (targets == -1))
    if wrong.any():
        raise DataError(f"{path}: targets must be 1, 0 or -1 (unknown), found {sorted(set(targets[wrong].tolist()))[:5]}")
    _check_classes(ev.classes, path)
    thr = np.asarray(ev.thr, dtype=np.float64)
    if not np.isfinite(thr).all() or (thr < 0).any() or (thr > 1).any():
        raise DataError(f"{path}: thresholds must be numbers in [0, 1], found {thr[~((thr >= 0) & (thr <= 1))][:3].tolist()}")
    meta = ev.meta
    if not isinstance(meta, dict):
        raise DataError(f"{path}: meta must be a JSON object, got {type(meta).__name__}")
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise DataError(f"{path}: meta.{key} must be {kind.__name__}, got {type(value).__name__}")
    if meta.get("views") is not None and not all(isinstance(v, str) for v in meta["views"]):
        raise DataError(f"{path}: meta.views must be a list of view names")
    evidence = ev.evidence
    if evidence is not None and (
        evidence["view"].shape != (n, c) or evidence["slice"].shape != (n, c) or evidence["view"].min(initial=0) < 0
        or evidence["view"].max(initial=-1) >= len(meta.get("views") or [])
    ):  # fmt: skip
        raise DataError(f"{path}: inconsistent evidence arrays (view {evidence['view'].shape}, slice {evidence['slice'].shape} "
                        f"for {n}x{c} scores)")  # fmt: skip


def _check_classes(names: Sequence[str], path) -> None:
    seen: set = set()
    for name in names:
        if not str(name).strip():
            raise DataError(f"{path}: a class without a name")
        if name in seen:
            raise DataError(f"{path}: the class '{name}' is listed twice")
        seen.add(name)


def find_scores(path: str) -> Path:
    """The ``eval_scores.npz`` that ``path`` (the file, a test folder or a training work dir) means."""
    p = Path(path)
    if p.is_file():
        return p
    if p.exists() and not p.is_dir():
        raise DataError(f"{p}: not a regular file (a pipe or device); expected an .npz evaluation file or its folder")
    if not p.is_dir():
        raise DataError(f"{p}: not found (expected a test output folder holding {SCORES_FILE}, or a training work dir)")
    if (p / SCORES_FILE).is_file():
        return p / SCORES_FILE
    if (p / "oof_scores.npz").is_file():  # a --folds run: its out-of-fold scores
        return p / "oof_scores.npz"
    found = sorted(p.glob(f"*/{SCORES_FILE}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{p}: no {SCORES_FILE} here or in its subfolders; {_evaluate_hint(p)}")
    raise DataError(f"{p}: {len(found)} evaluations found, name one: " + ", ".join(str(f.parent) for f in found))


def _evaluate_hint(folder: Path) -> str:
    """What to run to get scores for ``folder``, naming only files that exist."""
    metrics = folder / "test_metrics.json"
    if metrics.is_file():  # an evaluation written without its scores (--no-report)
        try:
            checkpoint = json.loads(metrics.read_text(encoding="utf-8")).get("checkpoint")
        except (OSError, ValueError, AttributeError):
            checkpoint = None
        if checkpoint and Path(checkpoint).is_file():
            return f"it was evaluated with --no-report; run python tools/test.py {checkpoint} --work-dir {folder} to write them"
        return "it was evaluated with --no-report; evaluate its checkpoint again without --no-report"
    checkpoints = sorted(folder.glob("*.pth"), key=lambda f: (f.name != "best.pth", f.name != "latest.pth", f.name))
    if checkpoints:
        c = checkpoints[0]
        return f"evaluate a checkpoint first (python tools/test.py {c} writes {folder / ('test_' + c.stem) / SCORES_FILE})"
    return "evaluate a checkpoint first with python tools/test.py CHECKPOINT, then give its test_* folder"


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def issues_record(scores_file: str | os.PathLike, ev: Evaluation, issues_csv: str | os.PathLike, flags: int, options: dict) -> dict:
    """What ``label_issues.json`` says of the ``label_issues.csv`` beside it: the scores it was found
    in (file and hash), the labels those scores were compared with, the finder's options."""
    return {
        "label_issues": str(Path(issues_csv).name), "scores": str(Path(scores_file).resolve()), "scores_sha256": file_sha256(scores_file),
        "labels_sha256": ev.meta.get("labels_sha256"), "label_fixes": ev.meta.get("label_fixes"), "flags": flags,
        "options": {k: options[k] for k in ("filter_by", "min_known", "min_class_ap") if k in options},
    }  # fmt: skip


def stale_issues(issues_csv: str | os.PathLike, scores_file: str | os.PathLike) -> str | None:
    """Why ``issues_csv`` cannot be reviewed against ``scores_file`` (None: it was found in them):
    no record beside it, or a record of other scores (the folds were rerun, with other labels or fixes)."""
    record = Path(issues_csv).with_suffix(".json")
    if not record.is_file():
        return f"{issues_csv} has no record of the scores it was found in ({record.name} is missing)"
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
        sha = saved["scores_sha256"]
    except (OSError, ValueError, TypeError, KeyError):
        return f"{record} is not a readable record of the scores {Path(issues_csv).name} was found in"
    if sha != file_sha256(scores_file):
        return f"{issues_csv} was found in other scores than {scores_file} (they changed since: the folds were run again)"
    return None
