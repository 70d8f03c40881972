"""Generate the bundled procedural data sets if they are not there yet (deterministic from --seed).

python tools/make_demo_data.py                     # the demo set: data/shapes (10 classes, 48 px)
python tools/make_demo_data.py --kind sparse30     # data/sparse30 (30 sparse, noisy classes, 32 px)
python tools/make_demo_data.py --kind mrnet        # data/mrnet_demo (knee-MRI-shaped exams: 3 views of 8-14 slices, 32 px)
"""

from __future__ import annotations

import argparse
import time

from mlcls.cli import cli_main, seed_arg
from mlcls.datasets.mrnet import make_mrnet_demo
from mlcls.datasets.shapes import inject_label_noise, make_shapes_dataset, make_sparse30_dataset
from mlcls.errors import ConfigError

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
    p.add_argument("--seed", type=seed_arg(), default=0)
    p.add_argument("--size", type=int, help="image size in pixels (default: 48 for shapes, 32 for sparse30 and mrnet)")
    p.add_argument("--force", action="store_true", help="regenerate even if an identical set exists")
    p.add_argument(
        "--label-noise", metavar="missing=P,extra=Q",
        help="also write train_noisy.csv: each positive dropped with probability P, Q x N wrong positives added; the truth "
        "goes to train_noise.csv (label-error benchmarks; shapes and sparse30)",
    )  # fmt: skip
    args = p.parse_args(argv)
    noise = parse_noise(args.label_noise) if args.label_noise else None
    if noise and args.kind == "mrnet":
        raise ConfigError("--label-noise: for the image sets (shapes, sparse30); the MRNet layout has one label file per task")
    make, root, size = KINDS[args.kind]
    t0 = time.time()
    out = make(args.root or root, seed=args.seed, size=args.size or size, force=args.force)
    print(f"{args.kind} data ready in {out} ({time.time() - t0:.1f}s)")
    if noise:
        noisy = inject_label_noise(out, "train", seed=args.seed, **noise)
        print(f"noisy labels: {noisy} (the truth: {noisy.with_name('train_noise.csv')})")


def parse_noise(text: str) -> dict:
    """``missing=0.15,extra=0.03`` -> ``{"missing": 0.15, "extra": 0.03}``, or one clear error."""
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        try:
            v = float(value)
        except ValueError:
            v = -1.0
        if key.strip() not in ("missing", "extra") or not 0 <= v <= 1:
            raise ConfigError(f"--label-noise: expected missing=P,extra=Q with P and Q in [0, 1], got '{text}'")
        out[key.strip()] = v
    return out


if __name__ == "__main__":
    main()
