"""Evaluate a checkpoint: what ``tools/test.py`` runs."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from mlcls.apis.inference import bag_evidence, bag_views
from mlcls.apis.loaders import build_loader, shared_samples
from mlcls.apis.model import build_from_checkpoint, check_same_classes
from mlcls.apis.tta import TTAModel, resolve_tta
from mlcls.datasets.bags import exam_name, view_files
from mlcls.errors import ConfigError
from mlcls.evaluation import MultiLabelMetric, compute_metrics, threshold_record, tune_thresholds
from mlcls.evaluation.functional import CI_COLUMNS, SUMMARY_KEYS, THRESHOLD_KEYS, bootstrap_ci
from mlcls.evaluation.loop import predict_loader
from mlcls.evaluation.metrics import build_evaluator
from mlcls.evaluation.thresholds import evaluator_section, resolve_thresholds
from mlcls.registry import METRICS
from mlcls.report import SCORES_FILE, Evaluation, build_report, save_eval_scores
from mlcls.utils.checkpoint import save_checkpoint_keeping_links
from mlcls.utils.fileio import atomic_open
from mlcls.utils.misc import write_json
from mlcls.utils.plots import bar_chart

logger = logging.getLogger("mlcls")


def _fmt(v: float) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.2f}"


def _nan_none(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def _key_of(column: str) -> str:
    return next(k for k, c in CI_COLUMNS.items() if c == column)


def evaluator_metrics(ev_cfg: dict, scores: torch.Tensor, targets: torch.Tensor, thr, standard) -> tuple[str, dict]:
    """``(type, its scalar metrics not among ``standard``)`` of the configured evaluator
    (``test_evaluator``, else ``val_evaluator``), built through the registry at the thresholds in
    use: a metric a user registers reaches tools/test.py as it reaches validation."""
    cfg = dict(ev_cfg)
    if issubclass(METRICS.get(cfg.get("type", "MultiLabelMetric")), MultiLabelMetric):
        cfg["thr"] = thr  # the thresholds this evaluation uses (tuned, given or the config's)
        cfg.pop("gather", None)  # one process holds every score here
    evaluator = build_evaluator(cfg)
    name = type(evaluator).__name__
    if type(evaluator) is MultiLabelMetric:
        return name, {}
    out = evaluator.evaluate(scores, targets)  # declared by every evaluator (build_evaluator checks it)
    return name, {k: float(v) for k, v in out.items() if k not in standard and isinstance(v, (int, float)) and not isinstance(v, bool)}


def per_class_rows(metrics: dict, classes: list[str]) -> list[dict]:
    """One dict per class (name, positives, negatives, AP, AUROC, P, R = sensitivity, specificity,
    F1, threshold; with ``metrics["ci"]`` the intervals of AP, AUROC, R, spec and F1 as
    ``<column>_ci``), in the dataset's class order."""
    ci = {CI_COLUMNS.get(k, k): v for k, v in ((metrics.get("ci") or {}).get("per_class", {})).items()}
    rows = []
    for i, name in enumerate(classes):
        row = {
            "class": name, "positives": metrics["num_pos"][i], "negatives": metrics["num_neg"][i],
            "AP": _nan_none(metrics["AP"][i]), "AUROC": _nan_none(metrics["AUROC"][i]),
            "P": metrics["precision"][i], "R": metrics["recall"][i], "spec": _nan_none(metrics["specificity"][i]),
            "F1": metrics["F1"][i], "thr": metrics["thr"][i],
        }  # fmt: skip
        for key, intervals in ci.items():
            row[f"{key}_ci"] = [_nan_none(v) for v in intervals[i]]
        rows.append(row)
    return rows


def format_report(metrics: dict, classes: list[str], fallback: Sequence[str] = (), fallback_note: str = "") -> str:
    """The summary line and the per-class table as text; ``fallback`` classes are marked with ``*``.
    With ``metrics["ci"]`` (:func:`mlcls.evaluation.bootstrap_ci`), the intervals follow the summary."""
    lines = ["  ".join(f"{k} {metrics[k]:.2f}" for k in SUMMARY_KEYS if k in metrics)]
    if metrics.get("num_classes_skipped") or metrics.get("auroc_skipped"):
        lines.append(
            f"({metrics.get('num_classes_skipped', 0)} classes without positives are not counted in mAP, "
            f"{metrics.get('auroc_skipped', 0)} without both positives and negatives not in mAUROC)"
        )
    if metrics.get("ap_trivial"):
        lines.append(f"({metrics['ap_trivial']} classes without negatives score AP 100 whatever the model; mAP counts them)")
    ci = metrics.get("ci")
    if ci:
        lines.append(
            f"{ci['level'] * 100:.0f}% bootstrap CI ({ci['resamples']} resamples of the samples, seed {ci['seed']}): "
            + "  ".join(f"{k} [{lo:.2f}, {hi:.2f}]" for k, (lo, hi) in ci["summary"].items())
        )
    width = max(5, *(len(c) for c in classes))
    head = f"{'class':<{width}}  {'pos':>6}  {'AP':>6}  {'AUROC':>6}  {'P':>6}  {'R/sens':>6}  {'spec':>6}  {'F1':>6}  {'thr':>6}"
    shown = [k for k in ("AP", "AUROC", "R", "spec", "F1") if ci and _key_of(k) in ci.get("per_class", {})]
    lines.append(head + "".join(f"  {(('sens' if k == 'R' else k) + ' CI'):<15}" for k in shown).rstrip())
    marked = set(fallback)
    for r in per_class_rows(metrics, classes):
        star = "*" if r["class"] in marked else ""
        cis = "".join(f"  [{_fmt(lo).strip()}, {_fmt(hi).strip()}]".ljust(17) for lo, hi in (r[f"{k}_ci"] for k in shown))
        lines.append(
            f"{r['class']:<{width}}  {r['positives']:>6}  {_fmt(r['AP'])}  {_fmt(r['AUROC'])}  {_fmt(r['P'])}  {_fmt(r['R'])}  "
            f"{_fmt(r['spec'])}  {_fmt(r['F1'])}  {r['thr']:6.3f}{star}{cis}"
        )
    if marked:
        lines.append(f"* {fallback_note}")
    return "\n".join(lines)


def write_scores(path: str | os.PathLike, ev: Evaluation) -> None:
    """Per-sample scores and targets of ``ev`` as CSV (one score and one target column per class)
    or JSON. Samples of several views are named by exam, with the file of each view (never a
    ``{view}`` template)."""
    path = Path(path)
    named = [v for v in ev.views or [] if v]
    files = [view_files(p, named) if named else {} for p in ev.paths]
    names = [exam_name(p) if named else p for p in ev.paths]
    if path.suffix.lower() == ".json":
        rows = [
            {"image": n, **({"files": f} if f else {}), "scores": dict(zip(ev.classes, s)), "targets": dict(zip(ev.classes, t))}
            for n, f, s, t in zip(names, files, ev.scores.tolist(), ev.targets.int().tolist())
        ]
        with atomic_open(path) as f:
            f.write(json.dumps(rows))
    elif path.suffix.lower() == ".csv":
        with atomic_open(path, newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", *[f"file_{v}" for v in named], *[f"score_{c}" for c in ev.classes], *[f"target_{c}" for c in ev.classes]])
            for n, fs, s, t in zip(names, files, ev.scores.tolist(), ev.targets.int().tolist()):
                w.writerow([n, *[fs[v] for v in named], *[f"{v:.6f}" for v in s], *t])
    else:
        raise ConfigError(f"--out: unsupported extension '{path.suffix}' (use .csv or .json)")


def write_per_class_csv(rows: list[dict], path: str | os.PathLike) -> None:
    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})


def predict_split(
    cfg: dict, model, split: str, classes: list[str] | None = None, owner: str = ""
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(scores [N, C], targets [N, C], the sample path of each row) of ``model`` on the
    ``{split}_dataloader``, every sample once. ``classes``: the model's, checked against the
    dataset's before anything is predicted (``owner`` names the model in the error)."""
    loader = build_loader(cfg, split, "eval", int(cfg.get("seed", 0)))
    if loader is None:
        raise ConfigError(f"config: no '{split}_dataloader' section")
    if classes is not None:
        check_same_classes(classes, loader.dataset.classes, owner, f"{split}_dataloader")
    metric = MultiLabelMetric()
    scores, targets = predict_loader(model, loader, metric, next(model.parameters()).device)
    # each row's sample comes from the index the sample itself carried, never from a sampler's order
    return scores, targets, [loader.dataset.image_path(int(i)) for i in metric.indices]


@dataclass
class ThresholdOptions:
    """The thresholds an evaluation judges at, in order of precedence: ``thr`` (a number, per-class
    values or a thresholds JSON file, see :func:`mlcls.evaluation.thresholds.resolve_thresholds`);
    per-class thresholds tuned now for ``tune`` (``f1``, ``precision``, ``recall``, ``specificity``;
    the last three reach ``target``) on ``split`` and saved into the checkpoint (classes with fewer
    than ``min_pos`` positives there take the global threshold); those stored in the checkpoint;
    the evaluator's (0.5 by default). ``allow_same_split``: report on samples the thresholds or the
    checkpoint were chosen on (refused otherwise; the report then says so)."""

    thr: float | list | str | None = None
    tune: str | None = None
    target: float | None = None
    split: str = "val"
    min_pos: int = 5
    allow_same_split: bool = False


@dataclass
class ReportOptions:
    """``write``: also ``eval_scores.npz`` and ``report.html`` (see :mod:`mlcls.report`), with up to
    ``gallery_k`` errors shown per class for the ``gallery_classes`` lowest-AP classes; ``config``:
    the config file named in the page's header (None: the checkpoint's own)."""

    write: bool = False
    gallery_k: int = 6
    gallery_classes: int = 100
    config: str | None = None


def tune_and_store(cfg: dict, model, ckpt: dict, checkpoint: str, classes: list[str], opts: ThresholdOptions, work_dir: Path) -> dict:
    """Tune per-class thresholds on ``opts.split`` and save them in the checkpoint and thresholds.json."""
    scores, targets, _ = predict_split(cfg, model, opts.split, classes, f"checkpoint {checkpoint}")
    thr, info = tune_thresholds(scores, targets, objective=opts.tune, target=opts.target, min_pos=opts.min_pos)
    record = threshold_record(thr, info, classes, opts.split)
    ckpt = {k: v for k, v in ckpt.items() if k != "format"}
    ckpt["thresholds"] = record
    save_checkpoint_keeping_links(ckpt, checkpoint)
    write_json(record, work_dir / "thresholds.json")
    logger.info("tuned %s thresholds on '%s' (%d classes fell back to the global %s) -> %s",
                opts.tune, opts.split, len(info["fallback"]), info["global_thr"], checkpoint)  # fmt: skip
    return record


def test_model(
    cfg: dict | None,
    checkpoint: str,
    *,
    split: str = "test",
    work_dir: str | None = None,
    out: str | None = None,
    thresholds: ThresholdOptions | None = None,
    report: ReportOptions | bool = False,
    ci: int | None = None,
    ci_seed: int = 0,
    tta: str | list | None = None,
    on_report: Callable[[str], None] | None = None,
    cfg_options: list[str] | None = None,
    trust_config: bool = False,
) -> dict:
    """Evaluate ``checkpoint`` on the ``{split}_dataloader`` of ``cfg`` (or of the checkpoint's config).

    The split is predicted once into an :class:`~mlcls.report.store.Evaluation`, which the writers
    take: ``test_metrics.json``, ``per_class.csv`` and ``ap_vs_frequency.png`` in ``work_dir``
    (default: ``test_<name>`` beside the checkpoint), per-sample rows in ``out`` (.csv or .json)
    and, with ``report``, ``eval_scores.npz`` (its file form, which ``tools/report.py`` rebuilds
    the page from) and ``report.html``. The report says which thresholds were used (see
    :class:`ThresholdOptions`) and also gives the metrics at 0.5.

    ``ci``: that many bootstrap resamples (seeded by ``ci_seed``) give 95 % confidence intervals of
    mAP, mAUROC, CF1, OF1 and each class's AP and AUROC. ``tta`` (``flip``, a list of views, see
    :mod:`mlcls.apis.tta`, or ``config``: the config's ``test_cfg.tta``) averages the scores over
    views; thresholds tuned here are tuned under the same TTA. ``on_report`` receives the report
    text before anything is written. ``cfg_options`` apply to the checkpoint's stored config when
    ``cfg`` is None; ``trust_config`` lets that stored config import modules or open program URLs
    (:func:`mlcls.apis.model.build_from_checkpoint`). Files of an earlier evaluation in
    ``work_dir`` that this one does not write again are kept, and named in the log as that
    evaluation's; ``test_metrics.json`` lists this one's ``files``.
    Returns the metrics dict (plus ``report``, the text, and ``written``, the files).
    """
    opts = thresholds or ThresholdOptions()
    page = report if isinstance(report, ReportOptions) else ReportOptions(write=bool(report))
    model, ckpt, cfg = build_from_checkpoint(checkpoint, cfg, cfg_options=cfg_options, trust_config=trust_config)
    tta = resolve_tta(tta, cfg)
    model = TTAModel(model, tta) if tta else model
    work_dir, had_evaluation = _output_dir(work_dir, checkpoint, out)
    ev_cfg = evaluator_section(cfg) or {"type": "MultiLabelMetric"}
    ev, resolved = evaluate_split(cfg, model, ckpt, checkpoint, split, opts, ev_cfg, work_dir, page.config)
    metrics, at_half, evaluator = _metrics(ev, resolved, ev_cfg, ci, ci_seed, page.write)
    metrics["report"] = _report_text(metrics, at_half, ev.classes, resolved, ev.meta["tta"], *evaluator)
    metrics["thresholds_source"] = resolved.source
    if on_report is not None:  # before any write that could fail: the numbers are never lost
        on_report(metrics["report"])
    results = _results(metrics, at_half, ev, checkpoint, evaluator, opts.tune, page.write)
    written = _write_metric_files(results, work_dir, split, opts.tune)
    if out:  # relative to where the user is, as every tool's --out
        write_scores(out, ev)
        written.append(Path(out))
    if page.write:
        written += write_report_files(work_dir, ev, model, page, metrics, at_half)
    _name_older_files(work_dir, had_evaluation, written)
    metrics["written"] = [str(p) for p in written]
    return metrics


def evaluate_split(
    cfg: dict, model, ckpt: dict, checkpoint, split: str, opts: ThresholdOptions, ev_cfg: dict, work_dir: Path, config: str | None
) -> tuple[Evaluation, Any]:
    """Check the samples, tune thresholds if asked, resolve them and predict ``split`` once:
    ``(the evaluation, the resolved thresholds)``."""
    classes = list(ckpt["meta"]["classes"])
    same = _same_samples(cfg, ckpt, checkpoint, split, opts)
    if opts.tune:
        ckpt["thresholds"] = tune_and_store(cfg, model, ckpt, checkpoint, classes, opts, work_dir)
    # checked before the evaluation, not after
    resolved = resolve_thresholds(classes, opts.thr, ckpt.get("thresholds"), ev_cfg, given_as="--thr", checkpoint=checkpoint)
    scores, targets, paths = predict_split(cfg, model, split, classes, f"checkpoint {checkpoint}")
    checkpoint = Path(checkpoint)
    # the run's scalars.jsonl: beside the checkpoint, else in the work dir it was trained in
    run_dir = next((str(d) for d in (checkpoint.parent, (cfg or {}).get("work_dir")) if d and (Path(d) / "scalars.jsonl").is_file()), None)
    meta = {
        "name": f"{checkpoint.parent.name}/{checkpoint.name} on {split}",
        "checkpoint": str(checkpoint.resolve()),
        "config": str(config or "stored in the checkpoint"),
        "split": split,
        "thresholds_source": resolved.source,
        "tta": list(model.views) if isinstance(model, TTAModel) else None,  # the views averaged, as the folds' scores keep them
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "train_counts": ckpt["meta"].get("train_counts"),
        "views": bag_views(model),  # the report shows a multi-view sample by the model's own view
        "same_samples": same,  # why the numbers are optimistic (empty: reported on samples nothing was chosen on)
        "evaluator": None,  # the configured evaluator's own metrics and the intervals, once computed
        "run_dir": run_dir,
        "ci": None,
    }
    return Evaluation(scores, targets, paths, classes, resolved.values.tolist(), meta), resolved


def _output_dir(work_dir: str | None, checkpoint, out: str | None) -> tuple[Path, bool]:
    """``(the folder this evaluation writes, whether it holds an earlier one)``, checked writable,
    and ``out`` checked before anything is computed."""
    work_dir = Path(work_dir) if work_dir else default_output_dir(checkpoint)
    check_writable(work_dir)
    if out and Path(out).suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"--out: unsupported extension '{Path(out).suffix}' (use .csv or .json)")
    had_evaluation = work_dir.is_dir() and (work_dir / "test_metrics.json").is_file()
    if had_evaluation:
        logger.info("%s holds an earlier evaluation: its files are replaced by this one's", work_dir)
    return work_dir, had_evaluation


def _same_samples(cfg: dict, ckpt: dict, checkpoint, split: str, opts: ThresholdOptions) -> list[str]:
    """Why the numbers of ``split`` would be optimistic (thresholds tuned, stored thresholds tuned, or
    ``best.pth`` selected on the samples reported on), each logged; refused unless ``opts.allow_same_split``."""
    tune, tune_split = opts.tune, opts.split
    # what is read decides, not the sections' names: a val and a test loader on the same exams are one split
    same = [] if not tune else [f"thresholds tuned on them: {why}" for why in [shared_samples(cfg, tune_split, split)] if why]
    stored_split = (ckpt.get("thresholds") or {}).get("split")
    if not tune and opts.thr is None and stored_split in ("train", "val", "test"):
        same += [f"the stored thresholds were tuned on them: {why}" for why in [shared_samples(cfg, stored_split, split)] if why]
    if same and not opts.allow_same_split:
        doing = "tune thresholds on the samples reported on" if tune else "report on the samples the thresholds were chosen on"
        raise ConfigError(
            f"refusing to {doing} (optimistic numbers): {same[0]}; "
            "hold samples out for validation (a dataset's holdout: {fraction: 0.15, part: val}), tune on another split, "
            "or pass --allow-same-split (the report then says so)"
        )
    picked_by = (((cfg.get("default_hooks") or {}).get("checkpoint")) or {}).get("save_best")
    selected = shared_samples(cfg, "val", split) if picked_by and Path(checkpoint).name.startswith("best") else None
    if selected:  # best.pth: the epoch with the best validation score, chosen on the samples reported on
        same.append(f"the checkpoint was selected on them (best {picked_by}): {selected}")
    for why in same:
        logger.warning("the numbers below are optimistic: %s", why)
    return same


def _metrics(ev: Evaluation, resolved, ev_cfg: dict, ci: int | None, ci_seed: int, report: bool) -> tuple[dict, dict, tuple[str, dict]]:
    """``(the metrics at the thresholds in use, those at 0.5, (the configured evaluator, its own metrics))``;
    the evaluator's metrics and the intervals also go into ``ev.meta`` (the report's header)."""
    scores, targets = ev.scores, ev.targets
    metrics = compute_metrics(scores, targets, thr=ev.thr, topk=ev_cfg.get("topk"), sample_metrics=True)
    ev_name, ev_extra = evaluator_metrics(ev_cfg, scores, targets, ev.thr, set(metrics))
    metrics.update(ev_extra)  # the configured evaluator's own metrics, next to the standard ones
    if ci:
        metrics["ci"] = bootstrap_ci(scores, targets, thr=metrics["thr"], n=int(ci), seed=ci_seed)
    at_half = metrics if resolved.uniform == 0.5 else compute_metrics(scores, targets, thr=0.5, sample_metrics=report)
    ev.meta["evaluator"] = f"{ev_name}: " + ", ".join(f"{k} {v:.2f}" for k, v in ev_extra.items()) if ev_extra else None
    c = metrics.get("ci")
    ev.meta["ci"] = (
        None
        if not c
        else f"{c['level'] * 100:.0f}% from {c['resamples']} resamples: "
        + ", ".join(f"{k} {lo:.1f}-{hi:.1f}" for k, (lo, hi) in c["summary"].items())
    )
    return metrics, at_half, (ev_name, ev_extra)


def _report_text(metrics: dict, at_half: dict, classes: list[str], resolved, tta: list | None, ev_name: str, ev_extra: dict) -> str:
    """What tools/test.py prints: the thresholds' source, the summary and per-class table, the
    evaluator's own metrics, and the metrics at 0.5 when other thresholds are in use."""
    stored = resolved.record
    fallback, note = [], ""
    if stored and stored.get("fallback_classes"):
        fallback = [c for c in stored["fallback_classes"] if isinstance(c, str)]
        note = (
            f"fewer than {stored.get('min_pos', '?')} positives on '{stored.get('split', '?')}' to tune on: these classes use the "
            f"global threshold {stored.get('global_thr', 0.5):.3f} (micro-F1 optimal), so their P/R may be far from the others'"
        )
    lines = [
        f"thresholds: {resolved.source}" + (f"; test-time augmentation: {' + '.join(map(str, tta))}" if tta else ""),
        format_report(metrics, classes, fallback, note),
    ]
    if ev_extra:
        lines.insert(2, f"{ev_name}: " + "  ".join(f"{k} {v:.2f}" for k, v in ev_extra.items()))
    if at_half is not metrics:  # the thresholds in use are not all 0.5: also show the usual reference
        lines.append("at thr 0.5: " + "  ".join(f"{k} {at_half[k]:.2f}" for k in THRESHOLD_KEYS if k in at_half))
    return "\n".join(lines)


def _results(metrics: dict, at_half: dict, ev: Evaluation, checkpoint, evaluator, tune, report) -> dict:
    """test_metrics.json's content."""
    ev_name, ev_extra = evaluator
    extra = ("F1_micro", "hamming_loss", "subset_accuracy", "one_error", "num_classes_skipped", "auroc_skipped", "num_samples")
    summary = {k: metrics[k] for k in (*SUMMARY_KEYS, *extra, *ev_extra) if k in metrics}
    return {
        **summary,
        "checkpoint": str(checkpoint),
        "split": ev.meta["split"],
        "thresholds": {"source": ev.meta["thresholds_source"], "values": metrics["thr"]},
        "tta": ev.meta["tta"],
        "at_0.5": {k: at_half[k] for k in SUMMARY_KEYS if k in at_half},
        **({"ci": {k: v for k, v in metrics["ci"].items() if k != "per_class"}} if metrics.get("ci") else {}),
        "evaluator": {"type": ev_name, "metrics": ev_extra},  # the configured evaluator (its own metrics also above)
        "same_samples": ev.meta["same_samples"],  # why these numbers are optimistic (empty: reported on samples nothing was chosen on)
        "per_class": per_class_rows(metrics, ev.classes),
        # the files of this evaluation (a report.html beside them that is not listed is an earlier one's)
        "files": ["test_metrics.json", "per_class.csv", "ap_vs_frequency.png", *(["thresholds.json"] if tune else []),
                  *([SCORES_FILE, "report.html"] if report else [])],
    }  # fmt: skip


def _write_metric_files(results: dict, work_dir: Path, split: str, tune: str | None) -> list[Path]:
    """test_metrics.json, per_class.csv and ap_vs_frequency.png; returns every file this evaluation wrote so far."""
    rows = results["per_class"]
    write_json(results, work_dir / "test_metrics.json")
    write_per_class_csv(rows, work_dir / "per_class.csv")
    ordered = [r for r in rows if r["AP"] is not None]
    bar_chart([f"{r['class']} ({r['positives']})" for r in ordered], [r["AP"] for r in ordered], work_dir / "ap_vs_frequency.png",
              f"{split}: AP per class, most frequent first", "AP (%)")  # fmt: skip
    written = [work_dir / "test_metrics.json", work_dir / "per_class.csv", work_dir / "ap_vs_frequency.png"]
    return written + ([work_dir / "thresholds.json"] if tune else [])


def _name_older_files(work_dir: Path, had_evaluation: bool, written: list[Path]) -> None:
    """What an earlier evaluation wrote and this one did not write again stays (it is that
    evaluation's, and may be all that is left of it); the log and test_metrics.json say which is which."""
    older = [work_dir / n for n in OUTPUT_FILES if had_evaluation and (work_dir / n).exists() and work_dir / n not in written]
    if older:
        logger.warning(
            "%s in %s %s from an earlier evaluation, not this one (written: %s)",
            ", ".join(p.name for p in older), work_dir, "is" if len(older) == 1 else "are", ", ".join(p.name for p in written),
        )  # fmt: skip


#: the files of an earlier evaluation that this one may not write again (--no-report): they are
#: kept and named as the earlier evaluation's; the others are always rewritten
OUTPUT_FILES = ("eval_scores.npz", "report.html")


def write_report_files(work_dir: Path, ev: Evaluation, model, page: ReportOptions, metrics: dict, at_half: dict) -> list[Path]:
    """``eval_scores.npz`` (what a report is rebuilt from) and ``report.html`` of ``ev`` in ``work_dir``;
    ``metrics`` / ``at_half``: the evaluation's, reused by the page."""
    npz = save_eval_scores(work_dir / SCORES_FILE, ev)
    # exams are shown by the slice that carried each class's score
    evidence_fn = (lambda items: bag_evidence(model, items)) if ev.views is not None else None
    html = build_report(ev, work_dir / "report.html", gallery_k=page.gallery_k, gallery_classes=page.gallery_classes,
                        metrics=metrics, at_half=at_half, evidence_fn=evidence_fn)  # fmt: skip
    return [npz, html]


def default_output_dir(checkpoint: str | os.PathLike) -> Path:
    """``<folder of the checkpoint>/test_<checkpoint name>``: beside the file evaluated, never the
    training run's stored work dir (testing a copied checkpoint must not overwrite the original run's results)."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / f"test_{checkpoint.stem}"


def check_writable(folder: Path) -> None:
    """Fail before evaluating, not after, when the results could not be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the results to {folder} ({e.strerror or e}); choose another folder with --work-dir") from None
