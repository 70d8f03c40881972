"""What the evaluation report embeds, computed from scores and targets (pure functions, no HTML).

Everything the page shows comes from here, so the numbers can be tested in Python against
:func:`mlcls.evaluation.compute_metrics`; the page's script only sums and draws them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from mlcls.errors import DataError
from mlcls.evaluation.functional import CI_COLUMNS, SUMMARY_KEYS, as_tensors, compute_metrics
from mlcls.evaluation.paired import delong_test, paired_bootstrap
from mlcls.report.store import Evaluation
from mlcls.utils.misc import SCALARS_FILE, read_scalars

#: Score histogram resolution: thresholds k / NUM_BINS (k = 0..NUM_BINS) are exact in the page.
NUM_BINS = 1000
#: Reliability-diagram bins.
CALIBRATION_BINS = 15


def bin_edges(bins: int = NUM_BINS) -> torch.Tensor:
    """The thresholds k / bins as float32, rounded exactly as ``compute_metrics(thr=k / bins)`` rounds them."""
    return torch.tensor([k / bins for k in range(bins + 1)], dtype=torch.float64).float()


def score_histograms(scores: torch.Tensor, targets: torch.Tensor, bins: int = NUM_BINS) -> list[dict]:
    """Per-class counts of positive and negative scores in bins ``[k/bins, (k+1)/bins)``, sparse.

    Bucket ``bins`` holds scores >= 1. The number of positives with ``score >= k / bins`` is the sum
    of buckets ``k..bins``, exactly what ``compute_metrics`` counts at that threshold (ignored
    entries, target -1, are in neither histogram).

    Args:
        scores: [N, C] probabilities.
        targets: [N, C] with 1 / 0 / -1.

    Returns:
        One dict per class: ``pb``/``pc`` (bucket indices / counts of positives), ``nb``/``nc``
        (of negatives), non-empty buckets only, ascending.
    """
    edges = bin_edges(bins)
    c = scores.shape[1]
    bucket = (torch.bucketize(scores.float(), edges, right=True) - 1).clamp(min=0)  # edges[b] <= s < edges[b + 1]
    key = bucket + torch.arange(c) * (bins + 1)  # one id per (class, bucket)
    dense = {
        name: torch.bincount(key[mask], minlength=c * (bins + 1)).view(c, bins + 1)
        for name, mask in (("p", targets > 0.5), ("n", targets == 0))
    }
    out = []
    for i in range(c):
        entry = {}
        for name, counts in dense.items():
            found = torch.nonzero(counts[i]).flatten()
            entry[name + "b"], entry[name + "c"] = found.tolist(), counts[i, found].tolist()
        out.append(entry)
    return out


def calibration(scores: torch.Tensor, targets: torch.Tensor, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability diagram and expected calibration error over all known entries and per class.

    Args:
        scores: [N, C] probabilities; targets: [N, C] (-1 entries are left out).

    Returns:
        ``{"bins": B, "all": {...}, "per_class": [{...}] * C}``; each ``{...}`` holds ``n`` (entries
        per bin), ``conf`` (mean predicted probability), ``freq`` (fraction positive) and ``ece``
        (sum over bins of n_b / n * |freq_b - conf_b|, in percent; None without entries).
    """
    s = scores.float().clamp(0, 1)
    valid = targets >= 0
    b = (s * bins).long().clamp(max=bins - 1)  # [N, C]
    c = s.shape[1]
    flat = (b + torch.arange(c) * bins)[valid]  # bin id per class
    n = torch.bincount(flat, minlength=c * bins).view(c, bins).double()
    conf = torch.bincount(flat, weights=s[valid].double(), minlength=c * bins).view(c, bins)
    pos = torch.bincount(flat, weights=(targets[valid] > 0.5).double(), minlength=c * bins).view(c, bins)

    def summary(n: torch.Tensor, conf: torch.Tensor, pos: torch.Tensor) -> dict:
        total = float(n.sum())
        mean_conf = (conf / n.clamp(min=1)).tolist()
        freq = (pos / n.clamp(min=1)).tolist()
        ece = float(((pos - conf).abs()).sum() / total * 100) if total else None  # sum_b n_b/N |freq_b - conf_b|
        return {
            "n": [int(v) for v in n.tolist()],
            "conf": [round(v, 4) for v in mean_conf],
            "freq": [round(v, 4) for v in freq],
            "ece": None if ece is None else round(ece, 3),
        }

    return {
        "bins": bins,
        "all": summary(n.sum(0), conf.sum(0), pos.sum(0)),
        "per_class": [summary(n[i], conf[i], pos[i]) for i in range(c)],
    }


def gallery(
    scores: torch.Tensor,
    targets: torch.Tensor,
    thr: torch.Tensor,
    k: int = 6,
    confused_pool: int = 200,
    classes_shown: Sequence[int] | None = None,
) -> dict:
    """Per class: the k highest-scoring negatives, the k lowest-scoring positives, and "confused with".

    "Confused with": the other classes truly present in the class's false positives at its
    threshold (at most ``confused_pool``, highest scores first; the top-k negatives when there is
    no false positive), with how many of those images hold each.

    Args:
        scores: [N, C]; targets: [N, C] (1 / 0 / -1); thr: [C] thresholds in use.
        classes_shown: which classes get a gallery (default: all).

    Returns:
        ``{"classes": {c: {"fp": [[row, score]...], "miss": [[row, score]...],
        "confused": [[class, count]...], "confused_from": n, "confused_basis": "fp"|"top"}}}``.
    """
    out = {}
    shown = range(scores.shape[1]) if classes_shown is None else classes_shown
    for c in shown:
        s, t = scores[:, c], targets[:, c]
        neg = torch.nonzero(t == 0).flatten()
        pos = torch.nonzero(t > 0.5).flatten()
        neg_sorted = neg[torch.argsort(s[neg], descending=True, stable=True)]
        pos_sorted = pos[torch.argsort(s[pos], stable=True)]
        fp_rows = neg_sorted[s[neg_sorted] >= float(thr[c])][:confused_pool]
        basis = "fp" if len(fp_rows) else "top"
        pool = fp_rows if len(fp_rows) else neg_sorted[:k]
        present = (targets[pool] > 0.5).sum(0)
        present[c] = 0
        order = [i for i in torch.argsort(present, descending=True, stable=True).tolist() if present[i] > 0][:5]
        out[int(c)] = {
            "fp": [[int(r), round(float(s[r]), 4)] for r in neg_sorted[:k]],
            "miss": [[int(r), round(float(s[r]), 4)] for r in pos_sorted[:k]],
            "confused": [[i, int(present[i])] for i in order],
            "confused_from": len(pool),
            "confused_basis": basis,
        }
    return out


def zeros_baseline(targets: torch.Tensor) -> dict:
    """What predicting no label for any image scores: the floor a collapsed model sits on."""
    m = compute_metrics(torch.zeros(targets.shape), targets, thr=0.5, sample_metrics=True)
    return {**summary_metrics(m), "label_accuracy": 100 - m["hamming_loss"]}


SUMMARY = (*SUMMARY_KEYS, "hamming_loss", "subset_accuracy")


def summary_metrics(m: dict) -> dict:
    out = {k: (None if isinstance(m[k], float) and math.isnan(m[k]) else m[k]) for k in (*SUMMARY, "num_classes_skipped") if k in m}
    if "hamming_loss" in m:
        out["label_accuracy"] = 100 - m["hamming_loss"]
    return out


def training_curves(work_dir: str | Path | None, max_points: int = 2000) -> dict | None:
    """Loss and lr by iteration, validation metrics by epoch, from ``<work_dir>/scalars.jsonl``."""
    if work_dir is None or not (Path(work_dir) / SCALARS_FILE).is_file():
        return None
    train, val = [], []
    for r in read_scalars(work_dir):
        if r is None:  # a line cut by a crash: the rest of the file is still good
            continue
        if r.get("mode") == "train":
            train.append([r.get("iter"), r.get("loss"), r.get("lr")])
        elif r.get("mode") == "val":
            val.append({k: v for k, v in r.items() if k == "epoch" or k in ("mAP", "mAUROC", "CF1", "OF1", "CP", "CR")})
    step = max(1, -(-len(train) // max_points))
    return {"source": str(Path(work_dir) / SCALARS_FILE), "train": train[::step], "val": val}


def report_data(
    scores,
    targets,
    classes: Sequence[str],
    thr: float | Sequence[float],
    meta: dict | None = None,
    train_counts: Sequence[int] | None = None,
    gallery_k: int = 6,
    gallery_classes: int = 100,
    work_dir: str | Path | None = None,
    metrics: dict | None = None,
    at_half: dict | None = None,
) -> dict:
    """Everything the page embeds except the thumbnails (``gallery`` names rows, see :func:`gallery`).

    Args:
        scores: [N, C] probabilities; targets: [N, C] with 1 / 0 / -1.
        thr: thresholds in use (a number or one per class).
        meta: header fields (checkpoint, config, split, thresholds source, ...).
        train_counts: positives per class in the training set (AP-vs-frequency plot).
        gallery_classes: at most this many classes get an error gallery (the lowest AP first).
        work_dir: the training run's folder, for its ``scalars.jsonl``.
        metrics, at_half: the evaluation's own results at ``thr`` and at 0.5 (``sample_metrics``),
            reused instead of computed again (``tools/test.py`` passes them; a rebuild computes them).
    """
    s, t = as_tensors(scores, targets)
    t = t.to(torch.int8) if t.dtype != torch.int8 else t
    m = metrics if metrics is not None and "hamming_loss" in metrics else compute_metrics(s, t, thr=thr, sample_metrics=True)
    if at_half is not None and "hamming_loss" in at_half:
        half = at_half
    else:
        half = m if all(v == 0.5 for v in m["thr"]) else compute_metrics(s, t, thr=0.5, sample_metrics=True)
    c = s.shape[1]
    thr_vec = torch.tensor(m["thr"], dtype=torch.float64)
    ap = torch.tensor([-1.0 if math.isnan(v) else v for v in m["AP"]])
    order = [i for i in torch.argsort(ap, stable=True).tolist() if ap[i] >= 0]  # lowest AP first
    shown = order[:gallery_classes]
    cal = calibration(s, t)
    ci = (m.get("ci") or {}).get("per_class", {})  # bootstrap intervals, when the evaluation computed them
    per_class = []
    for i, name in enumerate(classes):
        per_class.append({
            "name": name, "pos": m["num_pos"][i], "neg": int((t[:, i] == 0).sum()),
            "AP": None if math.isnan(m["AP"][i]) else round(m["AP"][i], 4),
            "AUROC": None if math.isnan(m["AUROC"][i]) else round(m["AUROC"][i], 4),
            "P": round(m["precision"][i], 4), "R": round(m["recall"][i], 4), "F1": round(m["F1"][i], 4),
            "spec": None if math.isnan(m["specificity"][i]) else round(m["specificity"][i], 4),
            "tp": m["tp"][i], "fp": m["fp"][i], "fn": m["fn"][i], "thr": m["thr"][i],
            "ece": cal["per_class"][i]["ece"],
            "train_pos": None if train_counts is None else int(train_counts[i]),
            **{f"{CI_COLUMNS.get(k, k)}_ci": [None if math.isnan(v) else round(v, 2) for v in ci[k][i]] for k in ci},
        })  # fmt: skip
    return {
        "meta": {**(meta or {}), "num_images": int(s.shape[0]), "num_classes": c, "bins": NUM_BINS},
        "summary": summary_metrics(m),
        "at_half": summary_metrics(half),
        "zeros": zeros_baseline(t),
        "classes": per_class,
        "hist": score_histograms(s, t),
        "calibration": cal,
        "gallery": gallery(s, t, thr_vec, k=gallery_k, classes_shown=shown),
        "gallery_note": (
            f"error galleries for the {len(shown)} classes with the lowest AP (of {c}); change with --gallery-classes"
            if len(shown) < sum(1 for v in m["AP"] if not math.isnan(v))
            else ""
        ),
        "curves": training_curves(work_dir),
    }


def gallery_rows(data: dict) -> list[int]:
    """The rows (images) any gallery shows, ascending."""
    rows = {r for g in data["gallery"].values() for key in ("fp", "miss") for r, _ in g[key]}
    return sorted(rows)


def image_entries(rows: Sequence[int], paths: Sequence[str], targets: torch.Tensor) -> dict:
    """``{row: {"file": path, "labels": [true class ids]}}`` for the gallery's images."""
    return {int(r): {"file": str(paths[r]), "labels": torch.nonzero(targets[r] > 0.5).flatten().tolist()} for r in rows}


def compare_data(a: dict, b: dict, paired: dict | None = None) -> dict:
    """Two reports' per-class AP and F1 side by side, joined by class name, in B's class order.

    Args:
        a, b: :func:`report_data` results (``meta.name`` labels each side).
        paired: :func:`paired_comparison` of the two runs (same samples): its per-class AUROC,
            DeLong p-values and paired bootstrap intervals join the rows.
    """
    rows = []
    by_name = {r["name"]: r for r in a["classes"]}
    for r in b["classes"]:
        ra = by_name.pop(r["name"], None)
        rows.append(_compare_row(r["name"], ra, r))
    rows += [_compare_row(name, ra, None) for name, ra in by_name.items()]
    if paired is not None:
        stats = {r["name"]: r for r in paired["classes"]}
        rows = [{**r, **{k: v for k, v in stats.get(r["name"], {}).items() if k != "name"}} for r in rows]
    return {
        "mode": "compare",
        "meta": {"a": a["meta"], "b": b["meta"]},
        "summary": {"a": a["summary"], "b": b["summary"]},
        "paired": None if paired is None else {k: v for k, v in paired.items() if k != "classes"},
        "rows": rows,
    }


def align_samples(a: Evaluation, b: Evaluation) -> Evaluation:
    """``b`` with its rows in ``a``'s order when both list the same samples (each once) in
    another order (two evaluations of one split whose loaders ordered it differently); else as it is."""
    pa, pb = list(a.paths), list(b.paths)
    if pa == pb or len(pa) != len(pb) or len(set(pa)) != len(pa) or set(pa) != set(pb):
        return b
    row_of = {p: i for i, p in enumerate(pb)}
    order = torch.tensor([row_of[p] for p in pa])
    evidence = None if b.evidence is None else {k: v[order.numpy()] for k, v in b.evidence.items()}
    return replace(b, scores=b.scores[order], targets=b.targets[order], paths=pa, evidence=evidence)


#: fewer positives (or negatives) than this: a class's DeLong p-value and intervals rest on too few samples to lean on
FEW_FOR_PAIRED = 10


def same_samples_problem(a: Evaluation, b: Evaluation) -> str | None:
    """Why two evaluations are not of the same samples in the same order with the same labels
    (paired statistics need that), or None."""
    if a.classes != b.classes:
        return "their class lists differ"
    if list(a.paths) != list(b.paths):
        na, nb = len(a.paths), len(b.paths)
        if na != nb:
            return f"A has {na} samples, B {nb}"
        i = next(k for k, (x, y) in enumerate(zip(a.paths, b.paths)) if x != y)
        return f"their samples differ (row {i}: {a.paths[i]} in A, {b.paths[i]} in B)"
    if not torch.equal(torch.as_tensor(a.targets), torch.as_tensor(b.targets)):
        return "the same samples carry different labels in A and B"
    return None


def paired_comparison(a: Evaluation, b: Evaluation, resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Per class: both AUROCs, their difference with DeLong's test, and paired bootstrap intervals
    of the differences in AUROC, AP and F1 (each model at its own thresholds), B - A throughout.

    ``significant`` is ``p < alpha`` per class; with several classes tested, ``bonferroni``
    (``alpha`` / the number of classes tested) is the stricter per-class level that keeps the
    chance of any false finding at ``alpha``, and ``significant_bonferroni`` says who passes it.

    Raises:
        DataError: the runs are not of the same samples (see :func:`same_samples_problem`).
    """

    problem = same_samples_problem(a, b)
    if problem:
        raise DataError(f"paired statistics need both evaluations on the same samples: {problem}")
    sa, sb, t = a.scores, b.scores, a.targets
    dl = delong_test(sa, sb, t)
    boot = paired_bootstrap(sa, sb, t, thr_a=list(a.thr), thr_b=list(b.thr), n=resamples, seed=seed)
    tested = sum(not math.isnan(p) for p in dl["p"])
    strict = alpha / max(tested, 1)

    def num(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)

    known = t >= 0
    pos, neg = ((t == 1) & known).sum(0).tolist(), ((t == 0) & known).sum(0).tolist()
    classes = []
    for i, name in enumerate(a.classes):
        p = dl["p"][i]
        auroc_ci = [num(v) for v in boot["per_class"]["AUROC"][i]]
        # the two tests of the AUROC difference disagree: DeLong's p against alpha, the bootstrap interval against 0
        disagree = None if math.isnan(p) or None in auroc_ci else bool((p < alpha) != (auroc_ci[0] > 0 or auroc_ci[1] < 0))
        f1_ci = [num(v) for v in boot["per_class"]["F1"][i]] if pos[i] else [None, None]  # no positive: F1 is 0 whatever the model
        classes.append({
            "positives": int(pos[i]), "negatives": int(neg[i]), "few": min(pos[i], neg[i]) < FEW_FOR_PAIRED,
            "name": name, "AUROC_a": num(dl["AUROC_a"][i]), "AUROC_b": num(dl["AUROC_b"][i]), "dAUROC": num(dl["diff"][i]),
            "z": num(dl["z"][i]) if not math.isinf(dl["z"][i]) else None, "p_delong": num(p),
            "dAUROC_ci": auroc_ci, "dAP_ci": [num(v) for v in boot["per_class"]["AP"][i]],
            "dF1_ci": f1_ci,
            "significant": None if math.isnan(p) else bool(p < alpha),
            "tests_disagree": disagree,
            "significant_bonferroni": None if math.isnan(p) else bool(p < strict),
        })  # fmt: skip
    return {
        "alpha": alpha, "classes_tested": tested, "bonferroni": strict, "resamples": resamples, "seed": seed,
        "level": boot["level"], "summary_ci": boot["summary"], "classes": classes,
    }  # fmt: skip


def _compare_row(name: str, ra: dict | None, rb: dict | None) -> dict:
    def get(r, k):
        return None if r is None else r[k]

    def diff(k):
        va, vb = get(ra, k), get(rb, k)
        return None if va is None or vb is None else round(vb - va, 4)

    return {
        "name": name, "pos_a": get(ra, "pos"), "pos_b": get(rb, "pos"),
        "AP_a": get(ra, "AP"), "AP_b": get(rb, "AP"), "dAP": diff("AP"),
        "F1_a": get(ra, "F1"), "F1_b": get(rb, "F1"), "dF1": diff("F1"),
    }  # fmt: skip


def format_paired(paired: dict, name_a: str, name_b: str) -> str:
    """:func:`paired_comparison` as a text table (B - A, percentage points)."""
    pct = f"{paired['level'] * 100:.0f}%"
    lines = [
        f"A: {name_a}\nB: {name_b}",
        f"B - A per class: AUROC with DeLong's test; {pct} paired bootstrap intervals ({paired['resamples']} resamples, seed "
        f"{paired['seed']}) of the AUROC, AP and F1 differences",
    ]
    width = max(5, *(len(r["name"]) for r in paired["classes"]))

    def f(v, spec="6.2f"):
        return format(v, spec) if v is not None else "n/a".rjust(6)

    def ci(v):
        return f"[{f(v[0], '.2f')}, {f(v[1], '.2f')}]".ljust(18)

    lines.append(
        f"{'class':<{width}}  {'AUROC A':>7}  {'AUROC B':>7}  {'diff':>6}  {'p':>7}  {'AUROC diff CI':<18}{'AP diff CI':<18}{'F1 diff CI':<18}sig."
    )
    for r in paired["classes"]:
        sig = (
            "n/a"
            if r["significant"] is None
            else ("yes" + (" (also Bonferroni)" if r["significant_bonferroni"] else ""))
            if r["significant"]
            else "no"
        )
        p = f"{r['p_delong']:7.4f}" if r["p_delong"] is not None else "n/a".rjust(7)
        few = f" (few: {r['positives']} positives, {r['negatives']} negatives)" if r.get("few") else ""
        few += " (the bootstrap interval says otherwise)" if r.get("tests_disagree") else ""
        lines.append(
            f"{r['name']:<{width}}  {f(r['AUROC_a'], '7.2f')}  {f(r['AUROC_b'], '7.2f')}  {f(r['dAUROC'], '+6.2f')}  {p}  "
            f"{ci(r['dAUROC_ci'])}{ci(r['dAP_ci'])}{ci(r['dF1_ci'])}{sig}{few}"
        )
    lines.append(
        f"sig.: p < {paired['alpha']:g} in DeLong's test (two-sided) per class; {paired['classes_tested']} classes tested, so "
        f"p < {paired['bonferroni']:.4f} keeps the chance of any false finding at {paired['alpha']:g} (Bonferroni). "
        + (
            f"Classes marked 'few' have under {FEW_FOR_PAIRED} positives or negatives: their p-values and intervals rest on "
            "too few samples to lean on. "
            if any(r.get("few") for r in paired["classes"])
            else ""
        )
        + "  ".join(f"{k} diff {pct} CI [{lo:.2f}, {hi:.2f}]" for k, (lo, hi) in paired["summary_ci"].items())
    )
    return "\n".join(lines)
