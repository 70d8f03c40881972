"""K-fold cross-validation with out-of-fold scores (``tools/train.py CONFIG --folds K``).

The training split is cut into K multi-label stratified folds (iterative stratification, seeded);
fold k trains on the other K-1 folds in ``<work_dir>/fold_<k>`` with the config as it is (its
validation split, if it has one, chooses ``best.pth`` as usual) and scores its own held-out fold.
Every training sample is then scored exactly once by a model that never saw it:
``oof_scores.npz`` (the format of ``eval_scores.npz``), the input of a label-error finder
(``tools/find_label_issues.py``) and of an honest estimate on a small dataset
(``folds_summary.json``: each metric per fold, mean ± std, and the pooled out-of-fold metrics).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mlcls.apis.inference import bag_views, evidence_arrays
from mlcls.apis.loaders import build_loader, shared_samples
from mlcls.apis.model import build_from_checkpoint
from mlcls.apis.test import predict_split
from mlcls.apis.train import resume_candidates
from mlcls.apis.tta import TTAModel, resolve_tta
from mlcls.cli import MAX_RESAMPLES
from mlcls.config import config_sha256
from mlcls.datasets.base import fold_assignment
from mlcls.datasets.class_balanced import WRAPPERS
from mlcls.errors import ConfigError
from mlcls.evaluation import compute_metrics
from mlcls.evaluation.functional import SUMMARY_KEYS, bootstrap_ci
from mlcls.report.store import Evaluation, load_eval_scores, save_eval_scores
from mlcls.utils.dist import barrier, is_main_process
from mlcls.utils.fileio import atomic_open
from mlcls.utils.misc import get_logger, write_json

logger = logging.getLogger("mlcls")

OOF_FILE = "oof_scores.npz"
HELD_FILE = "heldout_scores.npz"  # in each fold_<k>: its fold's scores, the mark of a finished fold
RUN_FILE = "folds_run.json"  # what the run was made from: K, seed, the training labels' hash, the label fixes
#: what a folds run writes in its work dir (fold_<k> folders aside); --overwrite removes them with the folds
RUN_OUTPUTS = ("folds.csv", RUN_FILE, OOF_FILE, "folds_summary.json", "folds_summary.txt", "label_issues.csv", "label_issues.json")


def _inner_dataset(section: dict) -> dict:
    """The dataset config that wrapper configs (ClassBalancedDataset, ...) wrap, to be edited in place."""
    ds = section["dataset"]
    while ds.get("type") in WRAPPERS and isinstance(ds.get("dataset"), dict):
        ds = ds["dataset"]
    return ds


def fold_config(cfg: dict, k: int, seed: int, fold: int, base: Path) -> tuple[dict, dict]:
    """``(the config that trains fold ``fold`` in base/fold_<fold>, on its training split without that
    fold; the same config whose test_dataloader reads the fold itself through the evaluation pipeline)``."""
    run = copy.deepcopy(cfg)
    run["work_dir"] = str(base / f"fold_{fold}")
    _inner_dataset(run["train_dataloader"])["folds"] = {"k": k, "seed": seed, "fold": fold, "part": "train"}
    eval_section = copy.deepcopy(cfg.get("val_dataloader") or cfg.get("test_dataloader") or cfg["train_dataloader"])
    held = copy.deepcopy(_inner_dataset(cfg["train_dataloader"]))
    held["pipeline"] = copy.deepcopy(_inner_dataset(eval_section).get("pipeline", held.get("pipeline")))
    held["folds"] = {"k": k, "seed": seed, "fold": fold, "part": "held"}
    eval_section.pop("sampler", None)
    if not cfg.get("val_dataloader"):  # no validation split: the final weights score the held-out fold
        ckpt_hook = ((run.get("default_hooks") or {}).get("checkpoint")) or {}
        if ckpt_hook.get("save_best"):
            ckpt_hook["save_best"] = None
    return run, {**run, "test_dataloader": {**eval_section, "dataset": held}}


@dataclass
class FoldsPlan:
    """A folds run as its parts see it: the split, what it was made from, the folds finished so far."""

    cfg: dict
    k: int
    seed: int
    base: Path
    views: list | None
    assigned: np.ndarray
    paths: list[str]
    run_id: dict
    num_classes: int
    full: object = field(default=None, repr=False)  # the training set read for evaluation (the resume checks read its labels)
    finished: dict = field(default_factory=dict)  # fold -> its held-out scores


def run_folds(
    cfg: dict,
    k: int,
    train: Callable[[dict, bool], dict],
    resume: bool = False,
    ci: int | None = None,
    tta: str | list | None = None,
    overwrite: bool = False,
) -> dict:
    """Train ``cfg`` once per fold, score each held-out fold, gather the out-of-fold scores and summarise.

    The same three steps run spread over processes or jobs: :func:`start_folds` once, then
    :func:`train_fold` per fold anywhere (:func:`fold_part` for a job that joins the run), then
    :func:`merge_folds`; the outputs are the same files.

    Args:
        k: the number of folds (>= 2); the split is seeded by the config's ``seed``.
        train: ``(config, resume) -> validation metrics`` (``train_model`` with the caller's options).
        resume: continue an interrupted run: finished folds (their ``heldout_scores.npz``) are kept,
            the fold that was stopped resumes from its latest checkpoint. Refused when the split,
            the training labels (label fixes included, by hash) or the config differ from the run's.
        overwrite: replace an earlier folds run in ``work_dir`` (its folds, scores and the
            label issues found in them); without it, and without ``resume``, one is refused
            before anything is written.
        ci: bootstrap resamples for intervals of the pooled out-of-fold metrics.
        tta: score the held-out folds with test-time augmentation (``flip``, ``flip4``, a list of
            views or ``config``, see :mod:`mlcls.apis.tta`): the mean score over the views is
            steadier, and the label-error finder reads it. With ``resume``, a finished fold that
            was scored otherwise is scored again from its checkpoint, not retrained.

    Returns:
        the summary written to ``folds_summary.json``.
    """
    check_ci(ci)  # checked before the folds train, not after
    plan = start_folds(cfg, k, resume=resume, overwrite=overwrite, tta=tta)
    for fold in range(k):
        train_fold(plan, fold, train)
    return finish_folds(plan, ci)


def check_ci(ci: int | None) -> None:
    if ci is not None and not 1 <= ci <= MAX_RESAMPLES:
        raise ConfigError(f"--ci: expected 1 to {MAX_RESAMPLES} resamples, got {ci}")


def _plan(cfg: dict, k: int, tta) -> FoldsPlan:
    """The split of ``cfg``'s training set into ``k`` folds and the record of what it was made from."""
    if k < 2:
        raise ConfigError(f"--folds: expected K >= 2, got {k}")
    get_logger()  # the folds' own lines reach the console before the first fold's training sets it up
    seed = int(cfg.get("seed", 0))
    views = resolve_tta(tta, cfg)
    full, assigned, paths, run_id = _split(cfg, k, seed)
    _warn_few_positives(full, k)
    return FoldsPlan(cfg, k, seed, Path(cfg["work_dir"]), views, assigned, paths, run_id, full.num_classes, full)


def start_folds(cfg: dict, k: int, resume: bool = False, overwrite: bool = False, tta: str | list | None = None) -> FoldsPlan:
    """Check the work dir (see :func:`run_folds` for ``resume`` and ``overwrite``), then write the
    run's plan (``folds.csv``, ``folds_run.json``) that each fold's training reads and checks."""
    plan = _plan(cfg, k, tta)
    base = plan.base
    # every check before anything is written: a refused command leaves the work dir as it was
    plan.finished = _check_resumable(base, k, plan.paths, plan.assigned.tolist(), plan.run_id, plan.full) if resume else {}
    replaced = [] if resume else _claim_run_dir(base, overwrite)  # every rank sees the same files and refuses alike
    barrier()  # every rank has looked before rank 0 changes anything
    if is_main_process():
        _remove(base, replaced)  # under torchrun every rank runs the folds together; rank 0 writes the files
        _write_plan(plan, keep_csv=resume)
    barrier()
    return plan


def _write_plan(plan: FoldsPlan, keep_csv: bool) -> None:
    """``folds_run.json``, then ``folds.csv`` (a part that finds folds.csv finds the record too)."""
    plan.base.mkdir(parents=True, exist_ok=True)
    write_json(plan.run_id, plan.base / RUN_FILE)
    if not (keep_csv and (plan.base / "folds.csv").is_file()):  # a resumed run's folds.csv was checked equal
        with atomic_open(plan.base / "folds.csv", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "fold"])
            w.writerows(zip(plan.paths, plan.assigned.tolist()))


def fold_part(cfg: dict, k: int, fold: int, train: Callable[[dict, bool], dict], tta: str | list | None = None) -> None:
    """One fold of a folds run as a job of its own (``tools/train.py --folds K --part I``: a
    scheduler's job array, or a worker of ``--workers N``). The first part to start writes the
    run's plan; every other part checks that its own config, split and labels are the plan's. A
    finished fold is kept, a stopped one resumes from its latest checkpoint."""
    if not 0 <= fold < k:
        raise ConfigError(f"--part: fold {fold} is not one of the {k} folds (0 to {k - 1})")
    train_fold(join_folds(cfg, k, tta), fold, train)


def join_folds(cfg: dict, k: int, tta: str | list | None = None, create: bool = True) -> FoldsPlan:
    """The plan of the folds run in ``cfg``'s work dir, checked against ``cfg`` (its finished folds
    read); with ``create``, written when there is none yet."""
    plan = _plan(cfg, k, tta)
    base = plan.base
    for _ in range(2):
        if (base / "folds.csv").is_file():
            plan.finished = _check_resumable(base, k, plan.paths, plan.assigned.tolist(), plan.run_id, plan.full)
            return plan
        if not create:
            raise ConfigError(f"--merge: {base} holds no folds run (no folds.csv): run its parts first (--part I)")
        try:
            _claim_run_dir(base, overwrite=False)
        except ConfigError:
            continue  # another part wrote the plan meanwhile: check against it
        if is_main_process():
            _write_plan(plan, keep_csv=False)
        barrier()
        return plan
    raise ConfigError(f"{base} holds files of another folds run but no folds.csv: remove them or use another --work-dir")


def train_fold(plan: FoldsPlan, fold: int, train: Callable[[dict, bool], dict]) -> None:
    """Train fold ``fold`` of ``plan`` and score its held-out samples, unless it is finished
    (then it is scored again only when the test-time augmentation asked for differs)."""
    run, score_cfg = fold_config(plan.cfg, plan.k, plan.seed, fold, plan.base)
    fold_dir = Path(run["work_dir"])
    held = plan.finished.get(fold)
    if held is not None:
        logger.info("--folds: fold %d of %d is finished (%s): kept", fold + 1, plan.k, fold_dir / HELD_FILE)
        barrier()  # every rank has read the file before rank 0 may replace it
        if held.meta.get("tta") == plan.views:
            return
        logger.info("--folds: fold %d was scored with test-time augmentation %s, now %s: scoring it again from its checkpoint",
                    fold + 1, held.meta.get("tta"), plan.views)  # fmt: skip
    else:
        logger.info("--folds: fold %d of %d: training on %d samples, holding out %d", fold + 1, plan.k,
                    int((plan.assigned != fold).sum()), int((plan.assigned == fold).sum()))  # fmt: skip
        train(run, bool(resume_candidates(fold_dir)))  # latest.pth, or an epoch_N.pth when it is missing
        barrier()  # rank 0 saves the fold's checkpoints: complete before any rank reads them
    _score_heldout(score_cfg, fold_dir, plan.views, plan.run_id)  # every rank takes part in the (gathered) prediction
    barrier()  # rank 0's file is complete before any rank reads it
    plan.finished[fold] = load_eval_scores(fold_dir / HELD_FILE)


def merge_folds(cfg: dict, k: int, ci: int | None = None, tta: str | list | None = None) -> dict:
    """Gather a folds run whose folds were trained as separate parts (:func:`fold_part`), after
    checking that every fold is finished and was made from this config, split and labels."""
    check_ci(ci)
    plan = join_folds(cfg, k, tta, create=False)
    missing = [f for f in range(k) if f not in plan.finished]
    if missing:
        raise ConfigError(f"--merge: {len(missing)} of {k} folds in {plan.base} are not finished (no fold_<k>/{HELD_FILE}): "
                          f"fold {', '.join(map(str, missing))}; run their parts first")  # fmt: skip
    other = [f for f, held in plan.finished.items() if held.meta.get("tta") != plan.views]
    if other:
        raise ConfigError(f"--merge: fold {other[0]} in {plan.base} was scored with test-time augmentation "
                          f"{plan.finished[other[0]].meta.get('tta')}, the merge asks for {plan.views}: give the parts' --tta")  # fmt: skip
    return finish_folds(plan, ci)


def finish_folds(plan: FoldsPlan, ci: int | None = None) -> dict:
    """Gather the folds' held-out scores into ``oof_scores.npz`` and ``folds_summary.json`` / ``.txt``."""
    _report_checkpoints(plan.base, plan.k)
    held_runs = [plan.finished[fold] for fold in range(plan.k)]
    run = {"folds": plan.k, "seed": plan.seed, "tta": plan.views, **plan.run_id}
    return _gather(plan.base, held_runs, plan.assigned, plan.paths, plan.num_classes, run, ci)


def _split(cfg: dict, k: int, seed: int) -> tuple:
    """``(the training set read for evaluation, each sample's fold, its paths, the run's record)``,
    after refusing a validation split that reads training samples."""
    overlap = shared_samples(cfg, "train", "val")
    if overlap:  # best.pth would be chosen on the held-out fold itself: its scores would not be out of fold
        raise ConfigError(
            f"--folds: {overlap}: each fold's best.pth would be chosen on its own held-out samples. Validate on samples apart "
            "from the training split (e.g. holdout: {part: train} on train_dataloader's dataset and {part: val} on "
            "val_dataloader's), or remove val_dataloader (the last weights then score each fold)"
        )
    full = build_loader({**cfg, "train_dataloader": {**cfg["train_dataloader"], "num_workers": 0}}, "train", "eval", seed).dataset
    if not hasattr(full, "label_index"):
        raise ConfigError("--folds: the training dataset has no label index to split (a stream of shards?); list the samples in a file")
    assigned = fold_assignment(full.split_index, full.num_classes, k, seed)  # cut on the file's labels, as the folds' datasets cut
    paths = [full.image_path(i) for i in range(len(full))]
    fixes = full.label_fixes
    run_id = {"folds": k, "seed": seed, "num_samples": len(paths), "labels_sha256": labels_sha256(full, paths),
              "label_fixes": {"file": fixes["file"], "sha256": fixes["sha256"]} if fixes else None,
              "config_sha256": config_sha256(cfg)}  # fmt: skip
    return full, assigned, paths, run_id


def _warn_few_positives(full, k: int) -> None:
    """Say which classes have fewer positives than folds: some held-out folds hold none of them, so
    those folds' mAP leaves them out and the per-fold mean averages over different classes."""
    pos = full.class_counts()
    few = [f"{c} ({int(n)})" for c, n in zip(full.classes, pos) if n < k]
    if few:
        logger.warning(
            "--folds %d: %s have fewer positives than folds: some held-out folds hold none, their AP is missing from those folds' "
            "mAP (the per-fold mean averages over different classes); the pooled out-of-fold metrics count each class once",
            k, ", ".join(few[:10]) + (f" and {len(few) - 10} more" if len(few) > 10 else ""),
        )  # fmt: skip


def _report_checkpoints(base: Path, k: int) -> None:
    """Say how much disk the folds' checkpoints take: the out-of-fold scores need none of them."""
    sizes = {st.st_ino: st.st_size for fold in range(k) for st in (p.stat() for p in (base / f"fold_{fold}").glob("*.pth"))}
    size = sum(sizes.values())  # by inode: latest.pth, a hard link to an epoch file, counted once
    if sizes:
        logger.info("--folds: the folds' checkpoints take %.1f GB in %s/fold_*/ (the out-of-fold scores do not need them: delete them "
                    "once the run is finished, or keep fewer with default_hooks.checkpoint.max_keep_ckpts)", size / 1e9, base)  # fmt: skip


def _gather(base: Path, held_runs: list[Evaluation], assigned: np.ndarray, paths: list[str], c: int, run: dict, ci: int | None) -> dict:
    """Put the folds' held-out scores together (every sample once, in the training set's order),
    write ``oof_scores.npz`` and the summary, and return the summary."""
    k, seed = run["folds"], run["seed"]
    per_fold = [_summary_metrics(h.scores, h.targets, h.thr) for h in held_runs]
    # every sample exactly once, in the training set's order
    row_of = {p: i for i, p in enumerate(paths)}
    scores = torch.full((len(paths), c), float("nan"))
    targets = torch.zeros((len(paths), c))
    fold_of = np.full(len(paths), -1)
    with_evidence = all(h.evidence is not None for h in held_runs)
    evidence = {"view": np.zeros((len(paths), c), dtype=np.int64), "slice": np.full((len(paths), c), -1, dtype=np.int64)}
    for fold, held in enumerate(held_runs):
        rows = [row_of.get(p, -1) for p in held.paths]
        if sorted(rows) != np.flatnonzero(assigned == fold).tolist():
            raise ConfigError(
                f"--folds: fold {fold}'s held-out scores do not cover exactly its samples (folds.csv); rerun without --resume"
            )
        scores[rows], targets[rows], fold_of[rows] = held.scores.float(), held.targets.float(), fold
        if with_evidence:
            evidence["view"][rows], evidence["slice"][rows] = held.evidence["view"], held.evidence["slice"]
    classes = list(held_runs[0].classes)
    thr = held_runs[0].thr
    meta = {"name": f"{base.name}: out-of-fold ({k} folds)", "split": "train (out-of-fold)", "folds": k, "seed": seed,
            "checkpoints": [h.meta.get("checkpoint") for h in held_runs], "thresholds_source": "each fold's", "created": None,
            "views": held_runs[0].meta.get("views"), "tta": run["tta"], "labels_sha256": run["labels_sha256"],
            "label_fixes": run["label_fixes"]}  # fmt: skip
    summary = {"folds": k, "seed": seed, "num_samples": len(paths), "per_fold": per_fold,
               **_spread_and_pooled(per_fold, scores, targets, thr, classes)}  # fmt: skip
    if ci:
        summary["pooled_ci"] = bootstrap_ci(scores, targets, thr=thr, n=int(ci), seed=seed)["summary"]
    _write_run(base, Evaluation(scores, targets, paths, classes, thr, meta, evidence if with_evidence else None), summary)
    return summary


def _summary_metrics(scores: torch.Tensor, targets: torch.Tensor, thr) -> dict:
    """The summary metrics (``SUMMARY_KEYS``) of one part: a held-out fold, or one seed's out-of-fold scores."""
    m = compute_metrics(scores, targets, thr=thr)
    return {key: m[key] for key in SUMMARY_KEYS if key in m}


def _spread_and_pooled(parts: list[dict], scores: torch.Tensor, targets: torch.Tensor, thr, classes: list[str]) -> dict:
    """folds_summary's body: mean ± std of the parts' summary metrics, and the metrics of ``scores`` [N, C] pooled."""
    pooled = compute_metrics(scores, targets, thr=thr)
    if pooled.get("ap_trivial"):
        logger.warning("%d classes have no negative: they score AP 100 whatever the model, and the pooled mAP counts them",
                       pooled["ap_trivial"])  # fmt: skip
    return {
        "mean": {key: float(np.mean([m[key] for m in parts])) for key in parts[0]},
        "std": {key: float(np.std([m[key] for m in parts], ddof=1)) for key in parts[0]},
        "pooled": {key: pooled[key] for key in SUMMARY_KEYS if key in pooled},
        "per_class_pooled": {"class": classes, "AP": pooled["AP"], "AUROC": pooled["AUROC"]},
    }


def _write_run(base: Path, oof: Evaluation, summary: dict) -> None:
    """``oof_scores.npz`` and ``folds_summary.json`` / ``.txt`` in ``base`` (rank 0 writes; every rank waits for it)."""
    if is_main_process():
        save_eval_scores(base / OOF_FILE, oof)
        write_json(summary, base / "folds_summary.json")
        with atomic_open(base / "folds_summary.txt") as f:
            f.write(format_folds_summary(summary) + "\n")
    barrier()


def labels_sha256(dataset, paths: list[str]) -> str:
    """A hash of what a dataset trains on: its classes, sample ``paths`` (its image paths, in
    order) and dense targets (label fixes applied), read in blocks so that a large set never
    builds its whole [N, C] matrix."""
    h = hashlib.sha256(json.dumps(list(dataset.classes)).encode())
    n = len(dataset)
    for start in range(0, n, 4096):
        rows = np.arange(start, min(n, start + 4096))
        h.update("\n".join(paths[start : start + 4096]).encode("utf-8", "surrogateescape"))
        h.update(np.ascontiguousarray(dataset.dense_targets(rows), dtype=np.int8).tobytes())
    return h.hexdigest()


def _claim_run_dir(base: Path, overwrite: bool) -> list[Path]:
    """Refuse a new folds run in a work dir that holds one (nothing written), or with ``overwrite``
    return that run's folds and files, to be removed first (:func:`_remove`), so that no fold of
    the old run is read as one of the new."""
    found = sorted(p for p in base.glob("fold_*") if p.is_dir()) + [base / n for n in RUN_OUTPUTS if (base / n).exists()]
    if not found:
        return []
    if not overwrite:
        names = ", ".join(p.name for p in found[:5]) + (", ..." if len(found) > 5 else "")
        raise ConfigError(
            f"{base} already holds a folds run ({names}); continue it with --resume, start a new one with --work-dir DIR, "
            "or replace it with --overwrite"
        )
    return found


def _remove(base: Path, found: list[Path]) -> None:
    """Remove an earlier folds run's folds and files (``--overwrite``)."""
    for p in found:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    if found:
        logger.warning("--overwrite: removed the earlier folds run from %s (%s)", base, ", ".join(p.name for p in found))


def _check_resumable(base: Path, k: int, paths: list[str], folds: list[int], run_id: dict, full) -> dict:
    """The finished folds of an interrupted run (``{fold: its held-out scores}``), after refusing
    one that split other samples or trained on other labels (a label fix added since): its
    finished folds were trained and scored on another split or other labels."""
    if (base / "folds.csv").is_file():
        _check_same_split(base / "folds.csv", paths, folds)
    if (base / RUN_FILE).is_file():
        _check_same_labels(base / RUN_FILE, base, run_id)
    finished = {}
    row_of = {p: i for i, p in enumerate(paths)}
    for fold in range(k):
        path = base / f"fold_{fold}" / HELD_FILE
        if path.is_file():  # the labels each finished fold was scored against: also for runs from before RUN_FILE
            finished[fold] = load_eval_scores(path)
            _check_held_labels(finished[fold], path, full, row_of)
    for fold, held in finished.items():  # the labels first: a label fix also changes the config
        if (held.meta.get("run") or {}).get("config_sha256") not in (None, run_id["config_sha256"]):
            raise ConfigError(f"--folds: {base / f'fold_{fold}' / HELD_FILE} was made with another config than this run's: rerun it "
                              "with --overwrite (or in a new work dir)")  # fmt: skip
    return finished


def _check_same_labels(saved: Path, base: Path, run_id: dict) -> None:
    """Refuse to resume when the labels' hash recorded in ``saved`` is not the training set's now,
    or the config's hash is not this config's."""
    try:
        before = json.loads(saved.read_text(encoding="utf-8"))
        before_sha = before["labels_sha256"]
    except (OSError, ValueError, TypeError, KeyError):
        raise ConfigError(f"--folds --resume: {saved} is not readable as the run's record; rerun with --overwrite") from None
    if before_sha != run_id["labels_sha256"]:
        fixes = lambda r: (r.get("label_fixes") or {}).get("file") or "none"  # noqa: E731
        raise ConfigError(
            f"--folds --resume: the training labels differ from those the run in {base} started with (label fixes then: "
            f"{fixes(before)}, now: {fixes(run_id)}): its finished folds were trained on the old labels. Rerun with --overwrite "
            "(or in a new work dir) so that every fold learns from the same labels"
        )
    if before.get("config_sha256") not in (None, run_id["config_sha256"]):
        raise ConfigError(
            f"--folds: the run in {base} was started with another config (a changed key, --cfg-options or --seed): its folds "
            "would mix two recipes. Run this config in a new --work-dir, or replace the run with --overwrite"
        )


def _check_held_labels(held: Evaluation, path: Path, full, row_of: dict) -> None:
    """A finished fold's held-out labels are the training set's labels now (``row_of``: each
    sample path's row in ``full``), else one clear error."""
    rows = [row_of.get(p, -1) for p in held.paths]
    if min(rows, default=0) < 0:
        return  # a sample that is not in the set: the coverage check names the fold
    now = torch.from_numpy(full.dense_targets(np.asarray(rows)).astype(np.int8))
    if not torch.equal(now, held.targets):
        raise ConfigError(
            f"--folds --resume: {path} holds other labels than the training set now (label fixes added or changed since it was "
            "scored): rerun with --overwrite (or in a new work dir) so that every fold learns from the same labels"
        )


def _check_same_split(path: Path, paths: list[str], folds: list[int]) -> None:
    """Refuse to resume when ``folds.csv`` of the interrupted run does not list these samples in
    these folds (the training set, K or the seed changed)."""
    rows = _read_folds_csv(path)
    for line, (row, want) in enumerate(zip(rows, zip(paths, folds)), start=2):
        if len(row) != 2 or row[0] != want[0] or row[1] != str(want[1]):
            raise ConfigError(
                f"--folds --resume: {path} line {line} reads {','.join(row)!r} but the split of the training set "
                f"is now {want[0]},{want[1]}: the data, K or the seed changed since the interrupted run. "
                "Rerun without --resume (or in a new work dir)"
            )
    if len(rows) != len(paths):
        raise ConfigError(
            f"--folds --resume: {path} lists {len(rows)} samples but the training set now has {len(paths)}: the data changed "
            "since the interrupted run. Rerun without --resume (or in a new work dir)"
        )


def _score_heldout(run: dict, fold_dir: Path, views: list | None = None, run_id: dict | None = None) -> None:
    """Score the fold's held-out samples with its best checkpoint (the config's ``save_best``) or
    final weights, averaged over ``views`` (test-time augmentation) if given."""
    best, latest = fold_dir / "best.pth", fold_dir / "latest.pth"
    checkpoint = best if best.is_file() else latest
    if not checkpoint.is_file():
        raise ConfigError(f"--folds: {fold_dir} has no best.pth or latest.pth to score its held-out fold with")
    model, ckpt, _ = build_from_checkpoint(checkpoint, run)
    plain = model
    if views:
        model = TTAModel(model, views)
    scores, targets, paths = predict_split(run, model, "test")
    if not is_main_process():
        return
    names = bag_views(plain)
    # a model of exams keeps the slice behind each score: the review of suspected label errors shows it
    evidence = evidence_arrays(plain, paths) if names is not None else None
    meta = {"name": f"{fold_dir.name} held out", "checkpoint": str(checkpoint), "split": "held-out fold", "views": names, "tta": views,
            "run": run_id}  # fmt: skip
    save_eval_scores(fold_dir / HELD_FILE, Evaluation(scores, targets, paths, list(ckpt["meta"]["classes"]),
                                                      model.info.thresholds.tolist(), meta, evidence))  # fmt: skip


def format_folds_summary(summary: dict) -> str:
    """folds_summary as text: mean ± std over the folds, each fold, and the pooled out-of-fold metrics."""
    keys = list(summary["mean"])
    if "seeds" in summary:  # combine_seeds: each seed's pooled out-of-fold metrics, and those of their mean score
        head = (
            f"{summary['folds']}-fold cross-validation, {len(summary['seeds'])} seeds ({summary['num_samples']} samples), pooled per seed:"
        )
        rows = [(f"seed {s}", m) for s, m in zip(summary["seeds"], summary["per_seed"])]
        pooled_name = "mean of the seeds' scores, pooled out-of-fold"
    else:
        head = f"{summary['folds']}-fold cross-validation (seed {summary['seed']}, {summary['num_samples']} samples), held-out folds:"
        rows = [(f"fold {i}", m) for i, m in enumerate(summary["per_fold"])]
        pooled_name = "pooled out-of-fold"
    lines = [head, "  ".join(f"{key} {summary['mean'][key]:.2f} ± {summary['std'][key]:.2f}" for key in keys)]
    for name, m in rows:
        lines.append(f"  {name}: " + "  ".join(f"{key} {m[key]:.2f}" for key in keys))
    ci = summary.get("pooled_ci") or {}
    lines.append(
        f"{pooled_name}: "
        + "  ".join(
            f"{key} {v:.2f}" + (f" [{ci[key][0]:.2f}, {ci[key][1]:.2f}]" if key in ci else "")
            for key, v in summary["pooled"].items()
            if not (isinstance(v, float) and math.isnan(v))
        )
    )
    return "\n".join(lines)


def combine_seeds(base: str | Path, seeds: list[int]) -> dict:
    """Average the out-of-fold scores of ``--folds K --seeds ...`` into ``<base>/oof_scores.npz``.

    Each seed cut its own folds and trained its own K models (``<base>/seed_<s>``), so a sample's
    score in each is from a model that never saw it, and their mean is out of fold too: an
    ensemble's score, steadier than any one seed's, for the label-error finder and the report.
    ``folds_summary.json`` / ``.txt`` hold each seed's pooled metrics, their mean ± std, and the
    averaged scores' pooled metrics.

    Returns:
        the summary written to ``folds_summary.json``.
    """
    base = Path(base)
    runs = [load_eval_scores(base / f"seed_{s}" / OOF_FILE) for s in seeds]
    first = runs[0]
    for s, run in zip(seeds[1:], runs[1:]):
        if run.paths != first.paths or run.classes != first.classes or not torch.equal(run.targets, first.targets):
            raise ConfigError(
                f"{base / f'seed_{s}' / OOF_FILE}: other samples, classes or labels than {base / f'seed_{seeds[0]}' / OOF_FILE}; "
                "the seeds of one --folds run must train on the same data: rerun it in a new work dir"
            )
    stack = torch.stack([run.scores for run in runs])  # [S, N, C]
    scores, targets = stack.mean(0), first.targets.float()
    thr = np.mean([run.thr for run in runs], axis=0).tolist()
    evidence = None
    if all(run.evidence is not None for run in runs):  # each pair's slice from the seed that scored it highest
        top = stack.argmax(0).numpy()[None]
        evidence = {key: np.take_along_axis(np.stack([run.evidence[key] for run in runs]), top, 0)[0] for key in ("view", "slice")}
    per_seed = [_summary_metrics(run.scores, targets, run.thr) for run in runs]
    k = first.meta["folds"]
    summary = {"folds": k, "seeds": list(seeds), "num_samples": len(first.paths), "per_seed": per_seed,
               **_spread_and_pooled(per_seed, scores, targets, thr, first.classes)}  # fmt: skip
    meta = {**first.meta, "name": f"{base.name}: out-of-fold ({k} folds, mean of {len(seeds)} seeds)", "seed": None,
            "seeds": list(seeds), "split": f"train (out-of-fold, mean of {len(seeds)} seeds)", "thresholds_source": "mean of the seeds'",
            "checkpoints": [c for run in runs for c in run.meta.get("checkpoints", [])]}  # fmt: skip
    _write_run(base, Evaluation(scores, targets, first.paths, first.classes, thr, meta, evidence), summary)
    return summary


def _read_folds_csv(path: str | Path) -> list[list[str]]:
    """The rows of a run's folds.csv after its ``path,fold`` header, as read (row i is on line i + 2)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))[1:]
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); tools/train.py --folds writes it as UTF-8: was it edited?") from None


def oof_rows_of(path: str | Path) -> dict:
    """``{path: fold}`` of a run's folds.csv (tests and tools check which model scored what)."""
    return {row[0]: int(row[1]) for row in _read_folds_csv(path)}


__all__ = ["OOF_FILE", "combine_seeds", "fold_config", "fold_part", "format_folds_summary", "merge_folds", "run_folds", "start_folds"]
