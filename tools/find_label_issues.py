"""Find the labels that are likely wrong, from out-of-fold scores.

    python tools/train.py CONFIG --folds 5 --work-dir work_dirs/cv     # every sample scored out of fold
    python tools/find_label_issues.py work_dirs/cv                     # -> work_dirs/cv/label_issues.csv

Writes ``label_issues.csv`` (path, class, given_label, score, quality, kind, rank; most likely
errors first; kind ``missing`` = labelled 0 and scored high, ``extra`` = labelled 1 and scored low),
``label_issues.json`` beside it (the scores file and its hash: ``tools/report.py`` refuses a list
found in other scores) and prints each class's estimated error rate. ``tools/report.py`` on the same folder shows the
pairs for review; the fixes it downloads go back in through the dataset key ``label_fixes``.
It also takes any ``eval_scores.npz`` (a test split's, to audit it), with a warning: scores of a
model that trained on those samples are not out of sample. The method is in docs/label_issues.md.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from mlcls.cli import cli_main, int_at_least
from mlcls.errors import ConfigError, DataError

ISSUES_FILE = "label_issues.csv"


def parse_args(argv=None) -> argparse.Namespace:
    from mlcls.evaluation.label_issues import FILTERS, FIX_POLICIES

    p = argparse.ArgumentParser(description="Rank the given labels that out-of-fold scores contradict (cleanlab)")
    p.add_argument("scores", help="a --folds run folder (its oof_scores.npz), or an .npz of scores")
    p.add_argument("--out", help=f"the CSV (default: {ISSUES_FILE} beside the scores)")
    p.add_argument("--min-known", type=int_at_least(1), default=10, help="skip classes with fewer positives or negatives than this")
    p.add_argument(
        "--min-class-ap", type=float, default=0.0, metavar="AP",
        help="skip classes whose AP (scores against the given labels, 0-1) is below this: the model has not learned them, "
        "and their flags are mostly its own errors (see docs/label_issues.md)",
    )  # fmt: skip
    p.add_argument(
        "--filter-by", default="recall_corrected", choices=FILTERS,
        help="how the pairs are chosen: recall_corrected (default) flags as many pairs as cleanlab's confident joint, corrected "
        "for the left-out positives that score below the threshold, estimates wrong; prune_by_noise_rate (cleanlab's default) "
        "fewer; confident_learning fewer, more of them right; predicted_neq_given every pair on the wrong side of the threshold "
        "(see docs/label_issues.md)",
    )  # fmt: skip
    p.add_argument(
        "--write-fixes", metavar="POLICY", choices=FIX_POLICIES,
        help="also write label_fixes_<POLICY>.csv beside the list, for training without a review: missing_ignore makes the "
        "'missing' flags unknown (-1), missing_only flips them, ignore makes every flag unknown, all flips every flag "
        "(see docs/missing_labels.md)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if not 0 <= args.min_class_ap <= 1:
        p.error(f"--min-class-ap: expected a number from 0 to 1, got {args.min_class_ap}")
    return args


@cli_main
def main(argv=None) -> None:
    from mlcls.apis.folds import OOF_FILE
    from mlcls.datasets.label_fixes import spreadsheet_cell, write_label_fixes
    from mlcls.evaluation.label_issues import find_label_issues, policy_fixes
    from mlcls.report.store import issues_record, load_eval_scores
    from mlcls.utils.fileio import atomic_open, check_outputs
    from mlcls.utils.misc import write_json

    args = parse_args(argv)
    src = Path(args.scores)
    if src.is_dir():
        if not (src / OOF_FILE).is_file():
            raise DataError(f"{src}: no {OOF_FILE}; run python tools/train.py CONFIG --folds 5 --work-dir {src} first")
        src = src / OOF_FILE
    run = load_eval_scores(src)
    if not run.meta.get("folds"):
        print(
            f"warning: {src} is not out-of-fold: if its model trained on these samples it has learned their labels, errors "
            "included, and will miss them; use it to audit a held-out split (a test set), or run --folds for the training data",
            file=sys.stderr,
        )
    out = Path(args.out) if args.out else src.parent / ISSUES_FILE
    record = out.with_suffix(".json")  # which scores the flags were found in: report.py refuses a list found in other scores
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {out}: expected a .csv file (its record is written beside it as {record.name})")
    fixes_out = out.with_name(f"label_fixes_{args.write_fixes}.csv") if args.write_fixes else None
    check_outputs([out, record] + ([fixes_out] if fixes_out else []), [src], replaces=ISSUES_FILE)
    res = find_label_issues(run.scores.numpy(), run.targets.numpy(), min_known=args.min_known, min_class_ap=args.min_class_ap,
                            filter_by=args.filter_by)  # fmt: skip
    classes = run.classes
    with atomic_open(out, newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "class", "given_label", "score", "quality", "kind", "rank"])
        for rank, (row, c, given, score, quality) in enumerate(res["pairs"], 1):
            w.writerow([spreadsheet_cell(run.paths[row]), spreadsheet_cell(classes[c]), given, f"{score:.6f}", f"{quality:.6f}",
                        "extra" if given == 1 else "missing", rank])  # fmt: skip
    write_json(issues_record(src, run, out, len(res["pairs"]), vars(args)), record)
    if fixes_out is not None:  # no review: a policy decides for every flag
        write_label_fixes(fixes_out, ((run.paths[r], classes[c], label) for r, c, label in policy_fixes(res["pairs"], args.write_fixes)))
    width = max(5, *(len(c) for c in classes))
    print(f"{'class':<{width}}  {'known':>6}  {'pos':>5}  {'AP':>5}  {'flagged':>7}  {'missing':>7}  {'extra':>5}  {'est. error rate':>15}")
    for i, (c, r) in enumerate(zip(classes, res["per_class"])):
        rate = f"{100 * r['rate']:.2f}%"
        if i in res["skipped"]:
            rate = f"skipped (AP < {args.min_class_ap:g})" if r["unlearned"] else "skipped (few labels)"
        ap = "-" if r["ap"] is None else f"{100 * r['ap']:.1f}"
        print(
            f"{c:<{width}}  {r['known']:>6}  {r['positives']:>5}  {ap:>5}  {r['flagged']:>7}  {r['missing']:>7}  {r['extra']:>5}  {rate:>15}"
        )
    weak = [c for c, r in zip(classes, res["per_class"]) if r["ap"] is not None and r["ap"] < 0.5 and not r["unlearned"]]
    if weak:
        print(
            f"note: the model scores {', '.join(weak)} at AP < 50 against the given labels: their flags are mostly its own errors "
            "(review them last, or leave them out with --min-class-ap)",
            file=sys.stderr,
        )
    print(f"{len(res['pairs'])} (sample, class) pairs flagged ({args.filter_by}) -> {out} (and {record.name}: the scores they were found in)",
          file=sys.stderr)  # fmt: skip
    if fixes_out is not None:
        print(f"fixes of policy {args.write_fixes}, no review -> {fixes_out}; train with label_fixes: {fixes_out.resolve()} "
              "on the training dataset", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
