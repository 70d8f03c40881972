"""Plot training curves from runs' scalars.jsonl logs.

    python tools/analyze_logs.py WORK_DIR [WORK_DIR ...] [--keys loss mAP] [--out curves.png]

One panel per key; several work dirs are drawn on the same panels for comparison. Training keys
(loss, lr) are plotted against the iteration, validation keys (mAP, CF1, ...) against the epoch.
Also prints each run's best value of every validation key.

    python tools/analyze_logs.py --compare RUN_A RUN_B

compares two ``tools/train.py --seeds`` runs (folders holding seeds_summary.json): the difference
of each metric's mean, and whether it exceeds the spread between seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlcls.apis.seeds import compare_runs
from mlcls.cli import cli_main
from mlcls.errors import DataError
from mlcls.utils.misc import read_scalars
from mlcls.utils.plots import plot_curves


@cli_main
def main(argv=None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--compare":
        if len(argv) != 3:
            raise DataError("--compare takes two run folders: --compare RUN_A RUN_B")
        print("\n".join(compare_runs(Path(argv[1]), Path(argv[2]))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work_dirs", nargs="+", type=Path, help="run folders (or scalars.jsonl files)")
    p.add_argument("--keys", nargs="+", default=["loss", "mAP"], help="logged keys to plot (default: loss mAP)")
    p.add_argument("--out", type=Path, default=Path("curves.png"), help="output image (default: curves.png)")
    p.add_argument("--names", nargs="+", help="legend names (default: the folder names)")
    args = p.parse_args(argv)
    names = args.names or [d.name if d.is_dir() else d.parent.name for d in args.work_dirs]
    if len(names) != len(args.work_dirs):
        raise DataError(f"--names: {len(names)} names for {len(args.work_dirs)} runs")
    logs = {name: read_scalars(d, strict=True) for name, d in zip(names, args.work_dirs)}

    plot_curves(logs, args.keys, args.out)
    for name, records in logs.items():
        vals = [r for r in records if r.get("mode") == "val"]
        best = {k: max(float(r[k]) for r in vals if k in r) for k in args.keys if any(k in r for r in vals)}
        print(f"{name}: " + ", ".join(f"best {k} {v:.2f}" for k, v in best.items()) if best else f"{name}: no validation records")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
