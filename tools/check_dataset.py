"""Verify a config's datasets before training: annotations parse, every image exists and decodes.

    python tools/check_dataset.py CONFIG [--split train val test] [--no-decode] [--cfg-options k=v ...]

Reports, with the annotation line of each: missing, zero-byte, truncated, unreadable and duplicate
image entries; an annotation error (unknown class name, out-of-range index, malformed file) is
reported for its split. Exit status 0 when clean, 1 when anything was found.
"""

from __future__ import annotations

import argparse
import sys

from mlcls.apis import prepare_config
from mlcls.cli import cli_main
from mlcls.datasets.check import check_splits


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--split", nargs="+", default=["train", "val", "test"], choices=["train", "val", "test"])
    p.add_argument("--no-decode", action="store_true", help="only check existence, size and end markers")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    cfg = prepare_config(args.config, args.cfg_options)
    lines, n = check_splits(cfg, args.split, decode=not args.no_decode)
    print("\n".join(lines))
    print(f"{'FAILED' if n else 'OK'}: {n} problem(s)")
    sys.exit(1 if n else 0)


if __name__ == "__main__":
    main()
