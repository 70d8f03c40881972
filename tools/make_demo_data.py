"""Generate the bundled procedural data sets if they are not there yet (deterministic from --seed).

python tools/make_demo_data.py                     # the demo set: data/shapes (10 classes, 48 px)
python tools/make_demo_data.py --kind sparse30     # data/sparse30 (30 sparse, noisy classes, 32 px)
python tools/make_demo_data.py --kind mrnet        # data/mrnet_demo (knee-MRI-shaped exams: 3 views of 8-14 slices, 32 px)
"""

from __future__ import annotations

import argparse
import time

from mlcls.cli import cli_main
from mlcls.datasets.mrnet import make_mrnet_demo
from mlcls.datasets.shapes import make_shapes_dataset, make_sparse30_dataset

KINDS = {
    "shapes": (make_shapes_dataset, "data/shapes", 48),
    "sparse30": (make_sparse30_dataset, "data/sparse30", 32),
    "mrnet": (make_mrnet_demo, "data/mrnet_demo", 32),
}


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(KINDS), default="shapes")
    p.add_argument("--root", help="output folder (default: data/<kind>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, help="image size in pixels (default: 48 for shapes, 32 for sparse30 and mrnet)")
    p.add_argument("--force", action="store_true", help="regenerate even if an identical set exists")
    args = p.parse_args(argv)
    make, root, size = KINDS[args.kind]
    t0 = time.time()
    out = make(args.root or root, seed=args.seed, size=args.size or size, force=args.force)
    print(f"{args.kind} data ready in {out} ({time.time() - t0:.1f}s)")


if __name__ == "__main__":
    main()
