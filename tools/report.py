"""Rebuild an evaluation report from saved scores, or compare two evaluations, without running a model.

    python tools/report.py TEST_DIR                 # rebuild TEST_DIR/report.html
    python tools/report.py WORK_DIR                 # the run's one test_* folder
    python tools/report.py TEST_DIR_A TEST_DIR_B    # A and B side by side: per-class AUROC with DeLong's
                                                    # test, paired bootstrap intervals of the AUROC, AP
                                                    # and F1 differences (same samples, checked)

A test folder is what ``tools/test.py`` wrote (it holds ``eval_scores.npz``); the file itself may
be given too. ``--thr-file`` rebuilds the report at other thresholds (for instance the JSON the
report's threshold explorer downloads).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlcls.cli import cli_main, int_at_least, resamples_arg, seed_arg
from mlcls.errors import DataError
from mlcls.report.store import find_scores


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Rebuild or compare mlcls evaluation reports from saved scores")
    p.add_argument("paths", nargs="+", metavar="DIR", help="one evaluation (rebuild) or two (compare A B)")
    p.add_argument(
        "--out", help="the HTML file (default: report.html in the test folder; for two, compare_<A>.html in B's, with the paired "
        "statistics in compare_<A>.json beside it)",
    )  # fmt: skip
    p.add_argument("--thr-file", help="rebuild at these thresholds (a thresholds JSON) instead of the stored ones")
    p.add_argument("--gallery-k", type=int_at_least(0), default=6, help="false positives and misses shown per class")
    p.add_argument("--gallery-classes", type=int_at_least(0), default=100, help="at most this many classes get a gallery, lowest AP first")
    p.add_argument(
        "--review-max", type=int_at_least(1), default=5000, metavar="N",
        help="the review of suspected label errors holds the first N flags by rank (default 5000; each carries its picture)",
    )  # fmt: skip
    p.add_argument("--resamples", type=resamples_arg(), default=1000, help="compare: paired bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=seed_arg(), default=0, help="compare: seed of the resamples (default 0)")
    args = p.parse_args(argv)
    if len(args.paths) > 2:
        p.error("expected one folder (rebuild) or two (compare)")
    return args


@cli_main
def main(argv=None) -> None:
    from mlcls.evaluation.thresholds import resolve_thresholds
    from mlcls.report import build_report, load_eval_scores, report_data, write_compare
    from mlcls.report.data import align_samples, format_paired, paired_comparison, same_samples_problem
    from mlcls.report.html import has_model_evidence
    from mlcls.report.store import stale_issues
    from mlcls.utils.fileio import check_outputs
    from mlcls.utils.misc import write_json

    args = parse_args(argv)
    files = [find_scores(p) for p in args.paths]
    runs = [load_eval_scores(f) for f in files]
    for i, (f, run) in enumerate(zip(files, runs)):
        if args.thr_file:
            given = resolve_thresholds(run.classes, args.thr_file)
            runs[i] = run = run.with_thresholds(given.values.tolist(), given.source)
        run.meta.setdefault("name", f.parent.name)
    inputs = files + ([Path(args.thr_file)] if args.thr_file else [])
    if len(runs) == 1:
        run = runs[0]
        out = Path(args.out) if args.out else files[0].parent / "report.html"
        if not args.out and has_model_evidence(out):  # never a poorer page over tools/test.py's (its exams by evidence slices)
            out = out.with_name("report_from_scores.html")
            print(f"note: {out.with_name('report.html')} shows exams by the evidence slices of its model, which saved scores do not hold: "
                  f"kept, and this page written to {out.name}", file=sys.stderr)  # fmt: skip
        check_outputs([out], inputs, replaces=out.name)
        issues = files[0].parent / "label_issues.csv"  # tools/find_label_issues.py's: reviewed in the page
        if issues.is_file():
            stale = stale_issues(issues, files[0])
            if stale:  # flags of other scores would be reviewed against these: left out of the page
                print(f"warning: no review section: {stale}; run python tools/find_label_issues.py {files[0].parent} again",
                      file=sys.stderr)  # fmt: skip
                issues = None
        build_report(run, out, gallery_k=args.gallery_k, gallery_classes=args.gallery_classes,
                     label_issues=issues if issues is not None and issues.is_file() else None, review_max=args.review_max)  # fmt: skip
        written = [out]
    else:
        if runs[0].classes != runs[1].classes:  # compared class by class: positions must mean the same classes
            only_a = [c for c in runs[0].classes if c not in runs[1].classes]
            only_b = [c for c in runs[1].classes if c not in runs[0].classes]
            what = f"only in A: {only_a[:5]}; only in B: {only_b[:5]}" if only_a or only_b else "the same classes in another order"
            raise DataError(f"cannot compare {files[0]} and {files[1]}: their class lists differ ({what})")
        a, b = (report_data(r.scores, r.targets, r.classes, r.thr, meta=r.meta, gallery_classes=0) for r in runs)
        out = Path(args.out) if args.out else files[1].parent / f"compare_{files[0].parent.name}.html"
        check_outputs([out, out.with_suffix(".json")], inputs)  # before the resamples: a refused command costs nothing
        runs[1] = align_samples(runs[0], runs[1])  # the same samples in another order are compared row by row
        problem = same_samples_problem(*runs)
        paired = None
        if problem:
            print(f"warning: no paired statistics (DeLong, paired bootstrap): {problem}", file=sys.stderr)
        else:
            paired = paired_comparison(*runs, resamples=args.resamples, seed=args.seed)
            print(format_paired(paired, runs[0].meta["name"], runs[1].meta["name"]))
        written = [out] + ([out.with_suffix(".json")] if paired is not None else [])
        write_compare(a, b, out, paired=paired)
        if paired is not None:
            write_json(paired, out.with_suffix(".json"))
    print("wrote " + " and ".join(str(w) for w in written))


if __name__ == "__main__":
    main()
