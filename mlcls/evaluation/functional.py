"""Pure tensor functions for multi-label metrics (no state, no I/O).

Conventions: ``scores`` and ``targets`` are [N, C] (tensors or arrays); a target of 1 is positive,
0 negative, -1 ignored (that entry takes no part in any metric). A label is predicted positive
when ``score >= thr``. Results are in percent where they are rates.

Average precision uses scikit-learn's definition (step-wise, tied scores form one point)::

    AP_c = (1 / P_c) * sum over positives i of  TP(score >= s_i) / N(score >= s_i)

so it only needs, for every positive, how many samples and how many positives score at least as
high. Those come from one values-only sort per class and ``searchsorted`` of the (few) positive
scores into it, which is what makes it an order of magnitude faster than sorting (score, label)
pairs per class. The same counts give the exact F1-optimal threshold of every class for free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

#: the summary line of every report (log, tools/test.py, report.html, test_metrics.json), in order:
#: threshold-free ranking metrics first, then the rates at the thresholds in use
RANKING_KEYS = ("mAP", "mAUROC")
THRESHOLD_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1", "F1_macro", "mSpec")
SUMMARY_KEYS = RANKING_KEYS + THRESHOLD_KEYS

EPS = 1e-12
_CHUNK_ELEMS = 1 << 18  # elements of a [classes, N] block handled at once (8 MB in float64)
SPARSE_FRACTION = 0.05  # below this fraction of known entries, PositiveStats sorts the known ones only


def as_tensors(scores, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and convert to CPU tensors (scores float32/float64 [N, C], targets [N, C])."""
    s = scores if isinstance(scores, torch.Tensor) else torch.as_tensor(np.asarray(scores))
    t = targets if isinstance(targets, torch.Tensor) else torch.as_tensor(np.asarray(targets))
    s, t = s.detach().cpu(), t.detach().cpu()
    if s.dim() == 1:
        s, t = s[:, None], t.reshape(-1, 1)
    if s.shape != t.shape or s.dim() != 2:
        raise ValueError(f"scores {tuple(s.shape)} and targets {tuple(t.shape)} must both be [N, C]")
    if not s.is_floating_point():
        s = s.double()
    elif s.dtype not in (torch.float32, torch.float64):
        s = s.float()
    if s.numel():
        lo, hi = torch.aminmax(s)  # one pass, no [N, C] temporary; NaN propagates
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            raise ValueError("scores must be finite (no NaN or inf)")
    return s, t


def _class_blocks(scores: torch.Tensor, targets: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Yield ``(class slice, scores [c, N], targets [c, N])`` over small blocks of classes.

    Blocks of about 256k elements stay in cache and reuse heap memory, which on a 2-core machine
    is worth more than one big vectorised pass over [N, C]. Scores keep their dtype: every step
    below is a comparison or a monotone map, exact in float32 too.
    """
    n, c = scores.shape
    step = min(c, max(1, _CHUNK_ELEMS // max(n, 1)))
    # Columns are copied to rows 16 at a time (16 float32 fill a cache line, so the strided read
    # wastes nothing) into two buffers reused for every block: fresh allocations of this size
    # cost page faults that outweigh the copy itself.
    width = max(step, min(c, 16))
    sbuf = torch.empty((width, n), dtype=scores.dtype)
    tbuf = torch.empty((width, n), dtype=torch.float32)
    for outer in range(0, c, width):
        m = min(c, outer + width) - outer
        sbuf[:m].copy_(scores[:, outer : outer + m].T)
        tbuf[:m].copy_(targets[:, outer : outer + m].T)
        for start in range(0, m, step):
            stop = min(m, start + step)
            yield slice(outer + start, outer + stop), sbuf[start:stop], tbuf[start:stop]


def sorted_runs(cls: torch.Tensor, v: torch.Tensor, p: torch.Tensor):
    """Entries (class [M], score [M], positive [M]) sorted by (class, score), with the start of each
    run of equal (class, score) marked and, per entry, the index where its run starts."""
    order = torch.sort(v, stable=True).indices
    order = order[torch.sort(cls[order], stable=True).indices]  # by (class, score)
    r, v, p = cls[order], v[order], p[order]
    m = v.numel()
    idx = torch.arange(m)
    starts = torch.ones(m, dtype=torch.bool)
    starts[1:] = (r[1:] != r[:-1]) | (v[1:] != v[:-1])
    first = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), 0).values if m else idx
    return r, v, p, starts, first


class PositiveStats:
    """Each positive's score with the counts that AP and threshold tuning need, for a block of classes.

    Attributes (P = positives in the block, c = classes in the block):
        rows: [P] class index (within the block) of each positive.
        scores: [P] its score.
        tp_ge: [P] positives of that class scoring >= it.
        n_ge: [P] valid samples of that class scoring >= it.
        num_pos: [c] positives per class.

    ``n_ge`` is computed in O(N) per class: scores are put in N uniform bins (a monotone map, so a
    higher bin always means a higher score), a histogram gives the count of samples in higher
    bins, and only samples sharing a bin with a positive are compared exactly.
    """

    def __init__(self, s: torch.Tensor, t: torch.Tensor) -> None:
        valid = t >= 0
        n_valid = int(valid.sum())
        if n_valid < SPARSE_FRACTION * valid.numel():  # mostly unknown entries (partial labels)
            self._init_sparse(s, t > 0.5, valid)
            return
        if s.shape[0] == 1 and s.shape[1] > 0:
            self._init_one_class(s[0], t[0])
            return
        c, n = s.shape
        pos = t > 0.5
        all_valid = n_valid == valid.numel()
        nbins = max(n, 1)
        if all_valid:
            lo, hi = s.amin(1, keepdim=True), s.amax(1, keepdim=True)
        else:
            lo = s.masked_fill(~valid, math.inf).amin(1, keepdim=True)
            hi = s.masked_fill(~valid, -math.inf).amax(1, keepdim=True)
        span = hi - lo
        scale = torch.where(span > 0, nbins / span, torch.zeros_like(span))
        scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))
        x = s - lo
        bins = x.mul_(scale).floor_().clamp_(0, nbins - 1).long()
        del x
        if not all_valid:
            bins.masked_fill_(~valid, nbins)  # an extra bin for ignored entries, never counted
        width = nbins + 1
        keys = bins + torch.arange(0, c * width, width)[:, None]
        hist = torch.bincount(keys.view(-1), minlength=c * width).view(c, width)[:, :nbins]
        # samples in strictly higher bins = valid count - samples in this bin or lower
        above = valid.sum(1, keepdim=True) - hist.cumsum(1)
        pr, pc = pos.nonzero(as_tuple=True)
        has_pos = torch.zeros(c * width, dtype=torch.bool)
        has_pos[keys[pr, pc]] = True
        cand = has_pos[keys]  # samples that share a bin with some positive (positives included)
        if not all_valid:
            cand &= valid
        cr, cc = cand.nonzero(as_tuple=True)
        # Order candidates by (class, score). Bins are monotone in the score, so this also orders
        # them by (class, bin): equal keys are contiguous and each run of equal scores is too.
        # (ties keep no particular order: equal scores of a class form one run either way)
        order = torch.sort(s[cr, cc], stable=c > 1).indices
        if c > 1:
            order = order[torch.sort(cr[order], stable=True).indices]
        cr, cc = cr[order], cc[order]
        r, k, v, p = cr, keys[cr, cc], s[cr, cc], pos[cr, cc]
        m = v.numel()
        idx = torch.arange(m)
        new_run = torch.ones(m, dtype=torch.bool)
        new_run[1:] = (k[1:] != k[:-1]) | (v[1:] != v[:-1])
        first_equal = torch.cummax(torch.where(new_run, idx, torch.zeros_like(idx)), 0).values
        run_end = _run_ends(new_run)
        bin_end = torch.searchsorted(k, k, right=True)
        row_end = torch.searchsorted(r, r, right=True) if c > 1 else torch.full_like(idx, m)
        pos_before = torch.zeros(m + 1, dtype=torch.long)
        torch.cumsum(p, 0, out=pos_before[1:])
        self.rows = r[p]
        self.scores = v[p]
        # >= s: everything in higher bins, plus the part of its own bin from its run of ties on;
        # > s: the same from the end of its run of ties
        higher_bins = above.reshape(-1)[(k - r)[p]]
        self.n_ge = higher_bins + (bin_end - first_equal)[p]
        self.n_gt = higher_bins + (bin_end - run_end)[p]
        self.tp_ge = (pos_before[row_end] - pos_before[first_equal])[p]
        self.tp_gt = (pos_before[row_end] - pos_before[run_end])[p]
        self.num_pos = pos.sum(1)
        self.num_valid = valid.sum(1)
        self.num_classes = c
        self.pos, self.valid, self.all_valid = pos, valid, all_valid

    def _init_sparse(self, s: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> None:
        """The same counts from the known entries alone: when most entries are unknown (Open
        Images: about 10 verified labels of 10k per image), sorting the few known scores of each
        class is cheaper than binning all N."""
        cr, cc = valid.nonzero(as_tuple=True)
        self._from_entries(cr, s[cr, cc], pos[cr, cc], s.shape[0])
        self.pos, self.valid = pos, valid

    @classmethod
    def from_entries(cls, classes: torch.Tensor, scores: torch.Tensor, positive: torch.Tensor, num_classes: int) -> "PositiveStats":
        """From the known entries only: their class [M], score [M] and positive flag [M]."""
        self = cls.__new__(cls)
        self._from_entries(classes, scores, positive, num_classes)
        return self

    def _from_entries(self, cls: torch.Tensor, v: torch.Tensor, p: torch.Tensor, c: int) -> None:
        r, v, p, new_run, first_equal = sorted_runs(cls, v, p)
        m = v.numel()
        run_end = _run_ends(new_run)
        row_end = torch.searchsorted(r, r, right=True)
        pos_before = torch.zeros(m + 1, dtype=torch.long)
        torch.cumsum(p, 0, out=pos_before[1:])
        self.rows, self.scores = r[p], v[p]
        # known entries of the class scoring >= it: from its run of ties to the end of the class (> it: from the run's end)
        self.n_ge = (row_end - first_equal)[p]
        self.n_gt = (row_end - run_end)[p]
        self.tp_ge = (pos_before[row_end] - pos_before[first_equal])[p]
        self.tp_gt = (pos_before[row_end] - pos_before[run_end])[p]
        self.num_pos = torch.bincount(r[p], minlength=c)
        self.num_valid = torch.bincount(r, minlength=c)
        self.num_classes = c
        self.all_valid = False

    def _init_one_class(self, s: torch.Tensor, t: torch.Tensor) -> None:
        """The same computation for one class ([N] tensors), the usual case for large N.

        torch does the passes over all N samples (its allocator reuses memory); numpy does the
        gathers, where torch's advanced indexing is several times slower on CPU.
        """
        n = s.numel()
        pos, valid = t > 0.5, t >= 0
        all_valid = bool(valid.all())
        lo, hi = torch.aminmax(s if all_valid else s[valid]) if bool(valid.any()) else (s.new_zeros(()), s.new_zeros(()))
        span = float(hi - lo)
        scale = n / span if span > 0 and math.isfinite(n / span) else 0.0
        bins = ((s - lo) * scale).to(torch.int64).clamp_(0, n - 1)  # trunc == floor: s - lo >= 0
        if not all_valid:
            bins.masked_fill_(~valid, n)  # an extra bin for ignored entries, never counted
        hist = torch.bincount(bins, minlength=n + 1)[:n]
        above = (int(valid.sum()) - hist.cumsum(0)).numpy()  # samples in strictly higher bins
        s_np, bins_np, pos_np = s.numpy(), bins.numpy(), pos.numpy()
        has_pos = np.zeros(n + 1, dtype=bool)
        has_pos[bins_np[pos_np]] = True
        cand = has_pos[bins_np]  # samples sharing a bin with a positive (positives included)
        if not all_valid:
            cand &= valid.numpy()
        ci = np.flatnonzero(cand)
        v = s_np[ci]
        order = np.argsort(v)  # bins are monotone in the score: this orders bins too
        ci, v = ci[order], v[order]
        k, p = bins_np[ci], pos_np[ci]
        m = len(v)
        new_run = np.ones(m, dtype=bool)
        new_run[1:] = (k[1:] != k[:-1]) | (v[1:] != v[:-1])
        first_equal = np.maximum.accumulate(np.where(new_run, np.arange(m), 0)) if m else np.zeros(0, np.int64)
        run_end = _run_ends(torch.from_numpy(new_run)).numpy()
        bin_end = np.searchsorted(k, k, side="right")
        pos_before = np.concatenate([[0], np.cumsum(p)])
        self.scores = torch.from_numpy(v[p])
        self.rows = torch.zeros(len(self.scores), dtype=torch.long)
        higher_bins = above[k[p]]
        self.n_ge = torch.from_numpy(higher_bins + (bin_end - first_equal)[p])
        self.n_gt = torch.from_numpy(higher_bins + (bin_end - run_end)[p])
        self.tp_ge = torch.from_numpy(pos_before[m] - pos_before[first_equal][p])
        self.tp_gt = torch.from_numpy(pos_before[m] - pos_before[run_end][p])
        self.num_pos = pos.sum().reshape(1)
        self.num_valid = valid.sum().reshape(1)
        self.num_classes = 1
        self.pos, self.valid, self.all_valid = pos[None], valid[None], all_valid

    def confusion(self, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tp, fp, fn) per class [c] for boolean predictions [c, N] of this block."""
        tp = (pred & self.pos).sum(1)
        predicted = pred.sum(1) if self.all_valid else (pred & self.valid).sum(1)
        return tp, predicted - tp, self.num_pos - tp

    def per_class_max(self, values: torch.Tensor) -> torch.Tensor:
        """[P] -> [c] maximum over each class's positives (NaN for a class without positives)."""
        out = torch.full((self.num_classes,), math.nan, dtype=torch.float64)
        return out.scatter_reduce(0, self.rows, values.double(), "amax", include_self=False)

    def per_class_min(self, values: torch.Tensor) -> torch.Tensor:
        out = torch.full((self.num_classes,), math.nan, dtype=torch.float64)
        return out.scatter_reduce(0, self.rows, values.double(), "amin", include_self=False)

    def f1_thresholds(self) -> torch.Tensor:
        """[c] the threshold (a positive's score) that maximises each class's F1; ties go to the
        higher threshold; NaN for a class without positives."""
        f1 = 2 * self.tp_ge.double() / (self.n_ge + self.num_pos[self.rows]).double()
        best = self.per_class_max(f1)
        return self.per_class_max(torch.where(f1 >= best[self.rows], self.scores.double(), -math.inf))

    def roc_auc(self) -> torch.Tensor:
        """[c] ROC AUC in [0, 1] from the same pass as AP; NaN where a class lacks positives or negatives.

        Per positive: the negatives scoring below it, plus half of those tied with it (the
        Mann-Whitney statistic with ties averaged, which is scikit-learn's ``roc_auc_score``):
        ``n_neg - (neg_ge + neg_gt) / 2`` with ``neg_ge = n_ge - tp_ge`` and ``neg_gt = n_gt - tp_gt``.
        The sum is taken in integers (twice each term) and divided once, so the value is the
        correctly rounded AUC, bit for bit the same as from ranks.
        """
        n_neg = (self.num_valid - self.num_pos).long()
        twice = 2 * n_neg[self.rows] - (self.n_ge - self.tp_ge) - (self.n_gt - self.tp_gt)
        total = torch.zeros(self.num_classes, dtype=torch.long).index_add_(0, self.rows, twice.long())
        auc = total.double() / (2 * self.num_pos.long() * n_neg).double()
        return torch.where((self.num_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, math.nan))

    def average_precision(self) -> torch.Tensor:
        """[c] AP in [0, 1]; NaN for a class without positives."""
        prec = self.tp_ge.double() / self.n_ge.clamp(min=1).double()
        total = torch.zeros(self.num_classes, dtype=torch.float64).index_add_(0, self.rows, prec)
        ap = total / self.num_pos.clamp(min=1).double()
        return torch.where(self.num_pos > 0, ap, torch.full_like(ap, math.nan))


def _run_ends(new_run: torch.Tensor) -> torch.Tensor:
    """[m] for each entry, the index just past its run of equal values (``new_run`` marks run starts)."""
    m = new_run.numel()
    if not m:
        return torch.zeros(0, dtype=torch.long)
    idx = torch.arange(m)
    nxt = torch.full((m,), m, dtype=torch.long)
    nxt[:-1] = torch.where(new_run[1:], idx[1:], m)  # the next entry starts a new run: this one ends a run
    return torch.cummin(nxt.flip(0), 0).values.flip(0)


def roc_auc(scores, targets) -> torch.Tensor:
    """Per-class area under the ROC curve [C] in [0, 1] (as ``sklearn.metrics.roc_auc_score`` on each
    column, over its known entries); NaN for a class without both positives and negatives."""
    s, t = as_tensors(scores, targets)
    out = torch.empty(s.shape[1], dtype=torch.float64)
    for sl, sb, tb in _class_blocks(s, t):
        out[sl] = PositiveStats(sb, tb).roc_auc()
    return out


#: Per-class metrics of the AP pass: name -> ``f(stats, counts) -> [c]`` (float, NaN where undefined),
#: with ``stats`` a :class:`PositiveStats` and ``counts`` the block's :data:`COUNT_FIELDS` ([c] int64).
#: The dense, the known-entries (partial labels) and the class-sharded paths all build their
#: per-class numbers with :func:`class_record`, and the sharded one gathers every entry, so a metric
#: added here reaches each of them, the per-class table (``compute_metrics(...)[name]``, a list)
#: and a mean over the classes where it is defined (``m<name>``, unless :func:`class_summary` names it).
CLASS_METRICS: dict[str, Callable[["PositiveStats", dict], torch.Tensor]] = {
    "AP": lambda stats, counts: stats.average_precision() * 100,
    "AUROC": lambda stats, counts: stats.roc_auc() * 100,  # from the AP pass: no sort of all N per class
}
#: the per-class counts at the thresholds in use (known entries only) every record holds
COUNT_FIELDS = ("tp", "fp", "fn", "num_pos", "num_neg")


def class_record(stats: "PositiveStats", tp: torch.Tensor, fp: torch.Tensor) -> dict[str, torch.Tensor]:
    """The one per-class record: every :data:`CLASS_METRICS` entry and :data:`COUNT_FIELDS`, each [c].

    Args:
        stats: the AP pass over a block of c classes (dense, or from the known entries).
        tp, fp: [c] true and false positives at the thresholds in use (known entries only).
    """
    counts = {"tp": tp.long(), "fp": fp.long(), "fn": (stats.num_pos - tp).long(), "num_pos": stats.num_pos.long(),
              "num_neg": (stats.num_valid - stats.num_pos).long()}  # fmt: skip
    return {**{k: f(stats, counts).double() for k, f in CLASS_METRICS.items()}, **counts}


def record_fields() -> tuple[str, ...]:
    """The keys of :func:`class_record`, in a fixed order (what the sharded path gathers)."""
    return (*CLASS_METRICS, *COUNT_FIELDS)


def class_summary(record: dict[str, torch.Tensor]) -> dict:
    """The per-class numbers every evaluation path reports, and their summaries (one place).

    Args:
        record: :func:`class_record`'s fields over all C classes ([C] each).

    Returns:
        ``mAP``, ``num_classes_skipped``, ``AP``, ``mAUROC``, ``auroc_skipped``, ``AUROC``, the
        :func:`rates_from_counts` keys, per-class ``specificity`` (TN / negatives; ``recall`` is
        the sensitivity) and its mean ``mSpec``, ``num_pos``, ``num_neg``; for every other
        :data:`CLASS_METRICS` entry its per-class list and ``m<name>``.
    """
    ap, auroc = record["AP"], record["AUROC"]
    m_ap, skipped = mean_average_precision(ap)
    m_auc, auc_skipped = mean_average_precision(auroc)
    out = {
        "mAP": m_ap,
        "num_classes_skipped": skipped,
        "AP": ap.tolist(),
        "mAUROC": m_auc,
        "auroc_skipped": auc_skipped,
        "AUROC": auroc.tolist(),
    }
    for name in CLASS_METRICS:
        if name not in out:
            out[name] = record[name].tolist()
            out[f"m{name}"] = mean_average_precision(record[name])[0]
    tp, fp, fn = record["tp"], record["fp"], record["fn"]
    out.update(rates_from_counts(tp, fp, fn))
    num_neg = record["num_neg"].double()
    spec = torch.where(num_neg > 0, (num_neg - fp.double()) / num_neg.clamp(min=1) * 100, math.nan)
    out["specificity"] = spec.tolist()
    out["mSpec"] = float(spec[~torch.isnan(spec)].mean()) if bool((~torch.isnan(spec)).any()) else math.nan
    out["num_pos"] = record["num_pos"].tolist()
    out["num_neg"] = record["num_neg"].tolist()
    # a class with positives and no negative scores AP 100 whatever the model; mAP counts it (the
    # usual definition, as scikit-learn's), and the reports say how many such classes there are
    out["ap_trivial"] = int(((record["num_pos"] > 0) & (record["num_neg"] == 0)).sum())
    return out


def average_precision(scores, targets) -> torch.Tensor:
    """Per-class AP [C] in percent, as scikit-learn's ``average_precision_score`` (NaN: no positives)."""
    s, t = as_tensors(scores, targets)
    ap = torch.empty(s.shape[1], dtype=torch.float64)
    for sl, sb, tb in _class_blocks(s, t):
        ap[sl] = PositiveStats(sb, tb).average_precision()
    return ap * 100


def mean_average_precision(ap: torch.Tensor) -> tuple[float, int]:
    """(mAP over classes with positives, number of classes skipped)."""
    keep = ~torch.isnan(ap)
    return (float(ap[keep].mean()) if keep.any() else math.nan), int((~keep).sum())


def _threshold_vector(thr: float | Sequence[float] | torch.Tensor, c: int) -> torch.Tensor:
    t = torch.as_tensor(thr, dtype=torch.float64).flatten()
    if t.numel() == 1:
        return t.expand(c)
    if t.numel() != c:
        raise ValueError(f"thr must be a scalar or have one value per class ({c}), got {t.numel()}")
    return t


def predict_labels(scores: torch.Tensor, thr=0.5, topk: int | None = None, floor: float | None = None) -> torch.Tensor:
    """Boolean predictions [N, C]: ``score >= thr``, or membership in the image's top-k (and >= floor)."""
    if topk is None:
        return scores >= _threshold_vector(thr, scores.shape[1]).to(scores.dtype)
    k = min(int(topk), scores.shape[1])
    pred = torch.zeros_like(scores, dtype=torch.bool)
    pred.scatter_(1, scores.topk(k, dim=1).indices, True)
    if floor is not None:
        pred &= scores >= floor
    return pred


def confusion_counts(pred: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class (tp, fp, fn) [C] as int64, ignoring targets of -1."""
    valid = targets >= 0
    pos = targets > 0.5
    tp = (pred & pos).sum(0)
    fp = (pred & valid & ~pos).sum(0)
    fn = (~pred & pos).sum(0)
    return tp, fp, fn


def rates_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, suffix: str = "") -> dict:
    """CP, CR, CF1, OP, OR, OF1, F1_macro, F1_micro (percent) and per-class P, R, F1 lists.

    CP/CR average the per-class precision/recall over all C classes; CF1 is the harmonic mean of
    CP and CR (a different number from F1_macro, the mean of per-class F1). OF1 equals F1_micro.
    """
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    p = tp / (tp + fp).clamp(min=EPS)
    r = tp / (tp + fn).clamp(min=EPS)
    f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=EPS)
    cp, cr = float(p.mean()) * 100, float(r.mean()) * 100
    op = float(tp.sum() / (tp.sum() + fp.sum()).clamp(min=EPS)) * 100
    or_ = float(tp.sum() / (tp.sum() + fn.sum()).clamp(min=EPS)) * 100
    out = {
        "CP": cp,
        "CR": cr,
        "CF1": 2 * cp * cr / max(cp + cr, EPS),
        "OP": op,
        "OR": or_,
        "OF1": 2 * op * or_ / max(op + or_, EPS),
    }
    out = {k + suffix: v for k, v in out.items()}
    if not suffix:
        out["F1_macro"] = float(f1.mean()) * 100
        out["F1_micro"] = out["OF1"]
        out["precision"] = (p * 100).tolist()
        out["recall"] = (r * 100).tolist()
        out["F1"] = (f1 * 100).tolist()
        out["tp"], out["fp"], out["fn"] = tp.long().tolist(), fp.long().tolist(), fn.long().tolist()
    return out


def compute_metrics(scores, targets, thr=0.5, topk: int | None = None, tune: str | None = None, sample_metrics: bool = False) -> dict:
    """Every metric the reports need, in one call.

    Args:
        scores: [N, C] probabilities (or any monotone, finite score).
        targets: [N, C] with 1 / 0 / -1 (ignored).
        thr: a scalar or a per-class sequence of length C; predicted positive iff ``score >= thr``.
        topk: also report ``CP@k ... OF1@k`` where an image's k highest scores are its predictions.
        tune: ``"f1"`` also returns ``tuned_thr``, each class's F1-optimal threshold on these
            scores (as :func:`tune_thresholds` with ``min_pos=1``; classes without positives get
            NaN), from the same pass over the data.
        sample_metrics: also ``hamming_loss``, ``subset_accuracy`` and ``one_error``.

    Returns:
        dict with ``mAP``, ``num_classes_skipped`` (classes without positives, left out of mAP),
        ``AP`` (per-class list, NaN where skipped), ``CP, CR, CF1, OP, OR, OF1, F1_macro, F1_micro``,
        with ``sample_metrics`` the :data:`IMAGE_METRICS` (``hamming_loss``, ``subset_accuracy``, ``one_error``),
        per-class ``precision, recall, F1, tp, fp, fn``, ``num_pos``, ``thr`` (per class) and,
        with topk, the ``@k`` keys.
    """
    s, t = as_tensors(scores, targets)
    c = s.shape[1]
    thr_vec = _threshold_vector(thr, c)
    if tune not in (None, "f1"):
        raise ValueError(f"compute_metrics: tune must be None or 'f1', got '{tune}' (see tune_thresholds for others)")
    record, per_image, tuned = class_records(s, t, thr_vec, sample_metrics, tune == "f1")
    out = class_summary(record)
    if topk is not None:
        out.update(rates_from_counts(*confusion_counts(predict_labels(s, topk=topk), t), suffix=f"@{topk}"))
    if per_image is not None:
        out.update(image_metrics(image_sums(per_image), s.shape[0]))
    out["num_samples"] = int(s.shape[0])
    out["thr"] = thr_vec.tolist()
    if tune:
        out["tuned_thr"] = tuned.tolist()
    return out


def class_records(s: torch.Tensor, t: torch.Tensor, thr_vec: torch.Tensor, sample_metrics: bool = False, tune: bool = False):
    """:func:`class_record` over all C classes and, with ``sample_metrics``, the :class:`ImageCounts`:
    what every evaluation path builds its numbers from.

    Args:
        s, t: scores and targets [N, C] (see :func:`as_tensors`); thr_vec: [C] thresholds.
        tune: also each class's F1-optimal threshold.

    Returns:
        ``(record, ImageCounts or None, tuned F1 thresholds [C] or None)``: from the known entries
        alone when most are unknown (partial labels: O(known) work), else one block of classes at a time.
    """
    known = _known_entries(t)
    if known is not None:
        return _entries_records(s, t, known, thr_vec, sample_metrics, tune)
    n, c = s.shape
    record = {k: torch.empty(c, dtype=torch.float64 if k in CLASS_METRICS else torch.long) for k in record_fields()}
    tuned = torch.full((c,), math.nan, dtype=torch.float64) if tune else None
    per_image = _ImageAccumulator(n) if sample_metrics else None
    for sl, sb, tb in _class_blocks(s, t):
        stats = PositiveStats(sb, tb)
        pred = sb >= thr_vec[sl, None].to(sb.dtype)
        tp, fp, _ = stats.confusion(pred)
        for k, v in class_record(stats, tp, fp).items():
            record[k][sl] = v
        if per_image is not None:
            per_image.update(sb, pred, stats.pos, stats.valid)
        if tuned is not None:
            tuned[sl] = stats.f1_thresholds()
    return record, (per_image.counts() if per_image is not None else None), tuned


def _known_entries(t: torch.Tensor, rows_per_chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(row, class) of every entry with a known target (>= 0) when under :data:`SPARSE_FRACTION`
    of all are known, else None (found out from the first chunk of rows for dense targets)."""
    n, c = t.shape
    limit = SPARSE_FRACTION * n * c
    if not n * c or int((t[: min(n, rows_per_chunk)] >= 0).sum()) > limit:
        return None
    rows, cols, found = [], [], 0
    for a in range(0, n, rows_per_chunk):
        r, cc = (t[a : a + rows_per_chunk] >= 0).nonzero(as_tuple=True)
        found += r.numel()
        if found > limit:
            return None
        rows.append(r + a)
        cols.append(cc)
    return torch.cat(rows), torch.cat(cols)


def _entries_records(s, t, known, thr_vec, sample_metrics, tune):
    """:func:`class_records` from the known entries only (the same numbers, O(known) work)."""
    n, c = s.shape
    rows, cols = known
    v, p, pred = _known_entry_values(s, t, known, thr_vec)
    stats = PositiveStats.from_entries(cols, v, p, c)
    record = class_record(stats, torch.bincount(cols[pred & p], minlength=c), torch.bincount(cols[pred & ~p], minlength=c))
    per_image = _entries_image_counts(n, c, rows, cols, v, p, pred) if sample_metrics else None
    return record, per_image, (stats.f1_thresholds() if tune else None)


def _known_entry_values(s, t, known, thr_vec):
    """The known entries' scores [M], positive flags [M] and predictions [M] at ``thr_vec``."""
    rows, cols = known
    v = s[rows, cols]
    return v, t[rows, cols] > 0.5, v >= thr_vec.to(v.dtype)[cols]


def _entries_image_counts(n, c, rows, cols, v, p, pred) -> "ImageCounts":
    """:class:`ImageCounts` from the known entries (row, class, score, positive, predicted), [M] each."""
    # the top-scored known label of each image; ties go to the lowest class index, as in the block path
    top = torch.full((n,), -math.inf, dtype=v.dtype).scatter_reduce(0, rows, v, "amax")
    at_top = v == top[rows]
    first = torch.full((n,), c, dtype=torch.long).scatter_reduce(0, rows[at_top], cols[at_top], "amin")
    chosen = at_top & (cols == first[rows])
    top_is_pos = torch.zeros(n, dtype=torch.bool)
    top_is_pos[rows[chosen]] = p[chosen]
    return ImageCounts(
        tp=torch.bincount(rows[pred & p], minlength=n), fp=torch.bincount(rows[pred & ~p], minlength=n),
        fn=torch.bincount(rows[~pred & p], minlength=n), known=torch.bincount(rows, minlength=n),
        pos=torch.bincount(rows[p], minlength=n), top_is_pos=top_is_pos,
    )  # fmt: skip


def image_counts(s: torch.Tensor, t: torch.Tensor, thr_vec: torch.Tensor) -> "ImageCounts":
    """The :class:`ImageCounts` alone, without the per-class AP pass (what a class-sharded rank
    needs of its own rows); the same numbers as :func:`class_records` gives with ``sample_metrics``."""
    n, c = s.shape
    known = _known_entries(t)
    if known is not None:
        return _entries_image_counts(n, c, *known, *_known_entry_values(s, t, known, thr_vec))
    acc = _ImageAccumulator(n)
    for sl, sb, tb in _class_blocks(s, t):
        acc.update(sb, sb >= thr_vec[sl, None].to(sb.dtype), tb > 0.5, tb >= 0)
    return acc.counts()


@dataclass
class ImageCounts:
    """Per-image counts over the known entries (targets >= 0) at the thresholds in use, each [N].

    Attributes:
        tp, fp, fn: true positives, false positives, missed positives (int64).
        known: known entries; pos: positive entries (int64).
        top_is_pos: the image's top-scored known label is a positive (bool).
    """

    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor
    known: torch.Tensor
    pos: torch.Tensor
    top_is_pos: torch.Tensor


#: Per-image metrics (percent): name -> ``f(ImageCounts) -> (numerator [N], denominator [N])``;
#: the metric is ``100 * sum(numerator) / sum(denominator)`` over the images (NaN without images).
#: Every path (dense, known entries, class-sharded, whose ranks add their sums, and the dataset
#: statistics' predict-nothing baseline) reports them through :func:`image_metrics`: one added
#: here reaches all of them.
IMAGE_METRICS: dict[str, Callable[[ImageCounts], tuple[torch.Tensor, torch.Tensor]]] = {
    # wrong entries / known entries
    "hamming_loss": lambda c: (c.fp + c.fn, c.known),
    # images whose known entries are all right (exact match), among all images
    "subset_accuracy": lambda c: ((c.fp + c.fn) == 0, torch.ones_like(c.known)),
    # images whose top-scored known label is not a positive, among images with a positive
    "one_error": lambda c: (~c.top_is_pos & (c.pos > 0), c.pos > 0),
}


def image_sums(counts: ImageCounts) -> torch.Tensor:
    """[2 M] float64: each :data:`IMAGE_METRICS` entry's numerator and denominator summed over the
    images (what ranks add up under class-sharded DDP)."""
    parts = [torch.stack([x.double().sum() for x in f(counts)]) for f in IMAGE_METRICS.values()]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def image_metrics(sums: torch.Tensor, num_images: int) -> dict:
    """The one per-image finaliser: :data:`IMAGE_METRICS` in percent from :func:`image_sums` (NaN for no image)."""
    out = {}
    for k, name in enumerate(IMAGE_METRICS):
        num, den = float(sums[2 * k]), float(sums[2 * k + 1])
        out[name] = math.nan if num_images == 0 else num / max(den, 1.0) * 100
    return out


class _ImageAccumulator:
    """:class:`ImageCounts` accumulated block by block over classes."""

    def __init__(self, n: int) -> None:
        self.tp, self.fp, self.fn, self.known, self.pos = (torch.zeros(n, dtype=torch.long) for _ in range(5))
        self.top = torch.full((n,), -math.inf, dtype=torch.float64)
        self.top_is_pos = torch.zeros(n, dtype=torch.bool)

    def update(self, s: torch.Tensor, pred: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> None:
        """A block: scores, predictions, positive and valid masks, all [c, N]."""
        if not bool(valid.all()):
            pred = pred & valid
            s = s.masked_fill(~valid, -math.inf)
        tp, npos = (pred & pos).sum(0), pos.sum(0)
        self.tp += tp
        self.fp += pred.sum(0) - tp
        self.fn += npos - tp
        self.pos += npos
        self.known += valid.sum(0)
        best, arg = s.max(0)
        better = best.double() > self.top
        self.top = torch.where(better, best.double(), self.top)
        self.top_is_pos = torch.where(better, pos.gather(0, arg[None])[0], self.top_is_pos)

    def counts(self) -> ImageCounts:
        return ImageCounts(self.tp, self.fp, self.fn, self.known, self.pos, self.top_is_pos)


TUNE_OBJECTIVES = ("f1", "precision", "recall", "specificity")


#: bootstrap_ci's per-class keys -> the per-class table's column names (R = sensitivity)
CI_COLUMNS = {"AP": "AP", "AUROC": "AUROC", "recall": "R", "specificity": "spec", "F1": "F1"}


def bootstrap_ci(
    scores,
    targets,
    thr=0.5,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    keys: Sequence[str] = ("mAP", "mAUROC", "CF1", "OF1"),
    per_class: Sequence[str] = ("AP", "AUROC", "recall", "specificity", "F1"),
) -> dict:
    """Percentile bootstrap confidence intervals: ``n`` resamples of the samples (rows, with
    replacement), :func:`compute_metrics` on each.

    Small test sets (a 120-exam validation set) give wide intervals: report them with the point
    estimates. A class whose resample lacks positives (or negatives, for AUROC) is left out of
    that resample's per-class value (NaN, ignored by the percentiles) and of its means, as in
    :func:`compute_metrics`.

    Args:
        scores, targets: [N, C] (targets 1 / 0 / -1).
        thr: the thresholds of the threshold-based keys.
        n: resamples; ``seed``: their generator's seed (the same seed gives the same intervals).
        level: the interval's coverage (0.95: the 2.5th and 97.5th percentiles).
        keys: summary metrics; ``per_class``: per-class metric lists (by default AP, AUROC and,
            at the thresholds ``thr``, sensitivity (``recall``), ``specificity`` and ``F1``).

    Returns:
        ``{"level", "resamples", "seed", "summary": {key: [low, high]}, "per_class": {key: [[low,
        high] per class]}}`` in the metrics' units (percent).
    """
    s, t = as_tensors(scores, targets)
    if not 0 < level < 1 or n < 1:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1) and n >= 1, got {level}, {n}")
    g = torch.Generator().manual_seed(int(seed))
    rows = s.shape[0]
    summary = torch.empty(n, len(keys), dtype=torch.float64)
    classes = torch.empty(n, len(per_class), s.shape[1], dtype=torch.float64)
    for i in range(n):
        idx = torch.randint(rows, (rows,), generator=g)
        m = compute_metrics(s[idx], t[idx], thr=thr)
        summary[i] = torch.tensor([m[k] for k in keys], dtype=torch.float64)
        classes[i] = torch.tensor([m[k] for k in per_class], dtype=torch.float64)
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)
    lo_hi = torch.nanquantile(summary, q, dim=0)  # [2, keys]
    pc = torch.nanquantile(classes, q, dim=0)  # [2, per_class, C]
    return {
        "level": level,
        "resamples": n,
        "seed": int(seed),
        "summary": {k: lo_hi[:, j].tolist() for j, k in enumerate(keys)},
        "per_class": {k: pc[:, j].T.tolist() for j, k in enumerate(per_class)},
    }


def tune_thresholds(scores, targets, objective: str = "f1", target: float | None = None, min_pos: int = 1) -> tuple[torch.Tensor, dict]:
    """Per-class thresholds chosen on a validation split (exact search, vectorised over classes).

    Candidates are each class's positive scores: F1 can only peak there (raising the threshold up
    to the next positive removes negatives only), and the precision/recall goals change there.
    A returned threshold is such a score, so ``score >= thr`` reproduces the chosen operating point.

    Args:
        scores, targets: [N, C] validation scores and targets (-1 ignored).
        objective: ``f1`` (maximise F1 per class; ties go to the higher threshold),
            ``precision`` (the lowest threshold whose precision >= ``target``: the most recall at
            that precision), ``recall`` (the highest threshold whose recall >= ``target``) or
            ``specificity`` (the lowest threshold whose specificity >= ``target``: the highest
            sensitivity at that specificity, the usual operating point in medical reports).
        target: the precision/recall/specificity goal in (0, 1] for those objectives.
        min_pos: classes with fewer validation positives (or no feasible threshold) fall back to
            the single global threshold that maximises micro-F1.

    Returns:
        ``(thresholds float64 [C], info)``; ``info`` holds the objective, ``fallback`` (class
        indices that fell back) and ``global_thr``.
    """
    if objective not in TUNE_OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(TUNE_OBJECTIVES)}, got '{objective}'")
    if objective != "f1" and (target is None or not 0 < target <= 1):
        raise ValueError(f"objective '{objective}' needs target in (0, 1], got {target}")
    s, t = as_tensors(scores, targets)
    thr = torch.full((s.shape[1],), math.nan, dtype=torch.float64)
    for sl, sb, tb in _class_blocks(s, t):
        st = PositiveStats(sb, tb)
        if st.rows.numel() == 0:
            continue
        if objective == "f1":
            choice = st.f1_thresholds()
        elif objective == "precision":
            ok = st.tp_ge.double() / st.n_ge.double() >= target - 1e-12
            choice = st.per_class_min(torch.where(ok, st.scores, math.inf))
        elif objective == "specificity":  # negatives scoring >= a positive's score are its false positives
            num_neg = ((tb >= 0).sum(1) - st.num_pos).double()
            spec = 1 - (st.n_ge - st.tp_ge).double() / num_neg[st.rows].clamp(min=1)
            ok = (spec >= target - 1e-12) & (num_neg[st.rows] > 0)  # without negatives specificity is undefined
            choice = st.per_class_min(torch.where(ok, st.scores, math.inf))
        else:
            ok = st.tp_ge.double() / st.num_pos[st.rows].double() >= target - 1e-12
            choice = st.per_class_max(torch.where(ok, st.scores, -math.inf))
        choice[~torch.isfinite(choice) | (st.num_pos < min_pos)] = math.nan
        thr[sl] = choice
    fallback = torch.isnan(thr).nonzero().flatten().tolist()
    info = {"objective": objective, "target": target, "min_pos": min_pos, "fallback": fallback, "global_thr": None}
    if fallback:
        info["global_thr"] = global_f1_threshold(s, t)
        thr[fallback] = info["global_thr"]
    return thr, info


def threshold_record(thr: torch.Tensor, info: dict, classes: Sequence[str], split: str, **extra) -> dict:
    """What a checkpoint stores under ``thresholds``: the values with where and how they were tuned.

    Args:
        thr, info: the result of :func:`tune_thresholds`.
        classes: class names (fallback classes are reported by name).
        split: the split the thresholds were tuned on.
        **extra: more plain fields (e.g. ``epoch``).
    """
    return {
        "values": thr.tolist(),
        "classes": list(classes),
        "split": split,
        **extra,
        "objective": info["objective"],
        "target": info["target"],
        "min_pos": info["min_pos"],
        "fallback_classes": [classes[i] if i < len(classes) else i for i in info["fallback"]],
        "global_thr": info["global_thr"],
    }


def global_f1_threshold(scores, targets) -> float:
    """The single threshold (shared by all classes) that maximises micro-F1 (OF1); 0.5 if no positive."""
    s, t = as_tensors(scores, targets)
    valid = t >= 0
    flat_s, flat_t = s[valid].double()[None], t[valid].float()[None]
    st = PositiveStats(flat_s, flat_t)
    if st.rows.numel() == 0:
        return 0.5
    f1 = 2 * st.tp_ge.double() / (st.n_ge + st.num_pos[0]).double()
    best = f1.max()
    return float(st.scores[f1 >= best].max())


def first_occurrence_sorted(sorted_idx: torch.Tensor) -> torch.Tensor:
    """Bool mask over ascending (stably sorted) indices: True at the first of each run of equal values."""
    first = torch.ones_like(sorted_idx, dtype=torch.bool)
    first[1:] = sorted_idx[1:] != sorted_idx[:-1]
    return first
