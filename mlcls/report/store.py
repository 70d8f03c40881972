"""The evaluation a report is built from, saved beside the results so it can be rebuilt without the model.

``eval_scores.npz`` holds plain arrays only (loaded with ``allow_pickle=False``): ``scores``
float32 [N, C], ``targets`` int8 [N, C] (1 / 0 / -1), ``paths`` [N] and ``classes`` [C] as unicode,
``thr`` float64 [C] (the thresholds in use) and ``meta``, a JSON string (checkpoint, config,
split, thresholds source, training counts, run folder). For a model of exams it may also hold
``evidence_view`` int8 and ``evidence_slice`` int32 [N, C]: per sample and class, the view (an
index into ``meta["views"]``) and the slice (0-based, as in the file) that carried the score; the
report shows an exam by that slice.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mlcls.errors import DataError
from mlcls.utils.fileio import atomic_path

SCORES_FILE = "eval_scores.npz"


def save_eval_scores(
    path: str | os.PathLike,
    scores: torch.Tensor,
    targets: torch.Tensor,
    paths: Sequence[str],
    classes: Sequence[str],
    thr: Sequence[float],
    meta: dict,
    evidence: dict | None = None,
) -> Path:
    """Write ``path`` (an ``.npz``) atomically; see the module docstring for its contents.
    ``evidence``: ``{"view": [N, C], "slice": [N, C]}`` of a model of exams (see above)."""
    path = Path(path)
    extra = {}
    if evidence is not None:
        extra = {
            "evidence_view": np.asarray(evidence["view"], dtype=np.int8),
            "evidence_slice": np.asarray(evidence["slice"], dtype=np.int32),
        }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                scores=scores.float().numpy(),
                targets=targets.to(torch.int8).numpy(),
                paths=np.array([str(p) for p in paths], dtype=str),
                classes=np.array(list(classes), dtype=str),
                thr=np.asarray(thr, dtype=np.float64),
                meta=np.array(json.dumps(meta)),
                **extra,
            )
    return path


def load_eval_scores(path: str | os.PathLike) -> dict:
    """``{"scores", "targets" (tensors), "paths", "classes", "thr" (lists), "meta" (dict)}`` from ``path``."""
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
            out = {
                "scores": torch.from_numpy(z["scores"].astype(np.float32)),
                "targets": torch.from_numpy(z["targets"].astype(np.int8)),
                "paths": z["paths"].tolist(),
                "classes": z["classes"].tolist(),
                "thr": z["thr"].tolist(),
                "meta": json.loads(str(z["meta"])),
                "evidence": None,
            }
            if "evidence_view" in z.files and "evidence_slice" in z.files:
                out["evidence"] = {"view": z["evidence_view"].astype(np.int64), "slice": z["evidence_slice"].astype(np.int64)}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated, or a pickled (object) array
        raise DataError(f"{path}: cannot read the saved evaluation, damaged or cut short? ({e})") from None
    n, c = out["scores"].shape
    if out["targets"].shape != (n, c) or len(out["paths"]) != n or len(out["classes"]) != c or len(out["thr"]) != c:
        raise DataError(f"{path}: inconsistent arrays (scores {n}x{c}, targets {tuple(out['targets'].shape)}, {len(out['paths'])} paths)")
    ev = out["evidence"]
    if ev is not None and (
        ev["view"].shape != (n, c) or ev["slice"].shape != (n, c) or ev["view"].max(initial=-1) >= len(out["meta"].get("views") or [])
    ):
        raise DataError(f"{path}: inconsistent evidence arrays (view {ev['view'].shape}, slice {ev['slice'].shape} for {n}x{c} scores)")
    return out


def find_scores(path: str) -> Path:
    """The ``eval_scores.npz`` that ``path`` (the file, a test folder or a training work dir) means."""
    p = Path(path)
    if p.is_file():
        return p
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
