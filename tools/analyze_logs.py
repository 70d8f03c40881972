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
import json
from pathlib import Path

from _common import cli_main

from mlcls.errors import DataError
from mlcls.utils.misc import read_scalars


def read_log(work_dir: Path) -> list[dict]:
    return read_scalars(work_dir, strict=True)


def series(records: list[dict], key: str) -> list[tuple[float, float]]:
    """``(x, value)`` points for ``key``; a resumed run's repeated points keep the later value."""
    points: dict[float, float] = {}
    for r in records:
        if key in r and r.get("mode") in ("train", "val"):
            x = r["iter"] if r["mode"] == "train" else r["epoch"]
            points[x] = float(r[key])
    return sorted(points.items())


def compare(a: Path, b: Path) -> None:
    from mlcls.apis.seeds import compare_summaries

    summaries = []
    for d in (a, b):
        path = d / "seeds_summary.json" if d.is_dir() else d
        if not path.is_file():
            raise DataError(f"{path}: not found (run tools/train.py CONFIG --seeds 0 1 2 first)")
        summaries.append(json.loads(path.read_text()))
    rows = compare_summaries(*summaries, names=(a.name, b.name))
    print(f"{'metric':<9} {a.name:>12} {b.name:>12} {'diff':>8} {'spread':>8}  verdict")
    for r in rows:
        verdict = "beyond the seed spread" if r["beyond_spread"] else "within the seed spread: not a difference"
        print(f"{r['metric']:<9} {r[a.name]:12.2f} {r[b.name]:12.2f} {r['diff']:+8.2f} {r['spread']:8.2f}  {verdict}")


@cli_main
def main(argv=None) -> None:
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv and argv[0] == "--compare":
        if len(argv) != 3:
            raise DataError("--compare takes two run folders: --compare RUN_A RUN_B")
        return compare(Path(argv[1]), Path(argv[2]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work_dirs", nargs="+", type=Path, help="run folders (or scalars.jsonl files)")
    p.add_argument("--keys", nargs="+", default=["loss", "mAP"], help="logged keys to plot (default: loss mAP)")
    p.add_argument("--out", type=Path, default=Path("curves.png"), help="output image (default: curves.png)")
    p.add_argument("--names", nargs="+", help="legend names (default: the folder names)")
    args = p.parse_args(argv)
    names = args.names or [d.name if d.is_dir() else d.parent.name for d in args.work_dirs]
    if len(names) != len(args.work_dirs):
        raise DataError(f"--names: {len(names)} names for {len(args.work_dirs)} runs")
    logs = {name: read_log(d) for name, d in zip(names, args.work_dirs)}

    from mlcls.utils.plots import _plt, save_figure

    plt = _plt()
    fig, axes = plt.subplots(1, len(args.keys), figsize=(5.5 * len(args.keys), 4), squeeze=False)
    for ax, key in zip(axes[0], args.keys):
        found = False
        for name, records in logs.items():
            pts = series(records, key)
            if pts:
                found = True
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=name, marker="." if len(pts) < 50 else None)
        if not found:
            available = sorted({k for lg in logs.values() for r in lg for k in r} - {"mode", "epoch", "iter"})
            raise DataError(f"--keys: '{key}' is in none of the logs (logged keys: {', '.join(available)})")
        is_val = any(r.get("mode") == "val" and key in r for lg in logs.values() for r in lg)
        ax.set_xlabel("epoch" if is_val else "iteration")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, args.out)
    for name, records in logs.items():
        vals = [r for r in records if r.get("mode") == "val"]
        best = {k: max(float(r[k]) for r in vals if k in r) for k in args.keys if any(k in r for r in vals)}
        print(f"{name}: " + ", ".join(f"best {k} {v:.2f}" for k, v in best.items()) if best else f"{name}: no validation records")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
