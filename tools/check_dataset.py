"""Verify a config's datasets before training: annotations parse, every image exists and decodes.

    python tools/check_dataset.py CONFIG [--split train val test] [--no-decode] [--cfg-options k=v ...]

Reports, with the annotation line of each: missing, zero-byte, truncated, unreadable and duplicate
image entries; an annotation error (unknown class name, out-of-range index, malformed file) is
reported for its split. Exit status 0 when clean, 1 when anything was found.
"""

from __future__ import annotations

import argparse
import sys

from _common import cli_main

from mlcls.apis import prepare_config
from mlcls.datasets.check import check_images, summarize
from mlcls.datasets.class_balanced import unwrapped_dataset_cfg
from mlcls.errors import DataError


def check_config(cfg: dict, splits: list[str], decode: bool = True, out=sys.stdout) -> int:
    """Check ``splits`` of ``cfg``; prints a report, returns the number of problems."""
    from mlcls.datasets import build_dataset

    total = 0
    for split in splits:
        section = cfg.get(f"{split}_dataloader")
        if not section:
            continue
        ds_cfg = unwrapped_dataset_cfg(section["dataset"])  # check the images, not the repeats
        try:
            dataset = build_dataset(dict(ds_cfg, check_files=False, pipeline=[], collect_errors=True))
        except DataError as e:  # the file itself is missing or unparseable
            print(f"[{split}] annotation error: {e}", file=out)
            total += 1
            continue
        problems = [{"kind": "annotation", "path": "", "source": "", "detail": msg} for msg in dataset.annotation_errors or []]
        problems += check_images(dataset, decode=decode)
        print(f"[{split}] {len(dataset)} images, {dataset.num_classes} classes: {summarize(problems)}", file=out)
        for p in problems[:50]:
            where = f"{p['path']}  ({p['source']}: {p['detail']})" if p["path"] else p["detail"]
            print(f"  {p['kind']:<10} {where}", file=out)
        if len(problems) > 50:
            print(f"  ... and {len(problems) - 50} more", file=out)
        for warning in label_warnings(dataset):
            print(f"  warning    {warning}", file=out)
        total += len(problems)
    return total


def label_warnings(dataset) -> list[str]:
    """What is legal but almost certainly wrong in the labels: nothing positive at all, or classes
    that never occur (their AP is undefined and an 'auto' pos_weight would sit at its cap)."""
    import numpy as np

    counts = dataset.class_counts()
    out = []
    if len(dataset) and counts.sum() == 0:
        out.append("no image has any positive label: is the labels column filled, and are labels space-separated?")
    elif (counts == 0).any():
        missing = [dataset.classes[i] for i in np.flatnonzero(counts == 0)]
        out.append(
            f"{len(missing)} class(es) with no positive image: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
            "(no AP for them; pos_weight: auto would give them its cap)"
        )
    return out


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--split", nargs="+", default=["train", "val", "test"], choices=["train", "val", "test"])
    p.add_argument("--no-decode", action="store_true", help="only check existence, size and end markers")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    cfg = prepare_config(args.config, args.cfg_options)
    n = check_config(cfg, args.split, decode=not args.no_decode)
    print(f"{'FAILED' if n else 'OK'}: {n} problem(s)")
    sys.exit(1 if n else 0)


if __name__ == "__main__":
    main()
