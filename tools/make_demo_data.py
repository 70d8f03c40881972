"""Generate the bundled demo set (coloured shapes, 10 long-tailed classes) if it is not there yet.

python tools/make_demo_data.py [--root data/shapes] [--seed 0] [--size 64] [--force]
"""

from __future__ import annotations

import argparse
import time

from _common import cli_main

from mlcls.datasets.shapes import make_shapes_dataset


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", default="data/shapes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--force", action="store_true", help="regenerate even if an identical set exists")
    args = p.parse_args(argv)
    t0 = time.time()
    root = make_shapes_dataset(args.root, seed=args.seed, size=args.size, force=args.force)
    print(f"demo data ready in {root} ({time.time() - t0:.1f}s)")


if __name__ == "__main__":
    main()
