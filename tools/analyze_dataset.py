"""Label statistics of a config's dataset: python tools/analyze_dataset.py CONFIG [--split train] [--out DIR].

Prints images, labels per image, per-class counts, imbalance ratio, co-occurring pairs, the
all-zeros baseline, suggested pos_weight and repeat factors; writes stats.json, class_frequency.png
and cooccurrence.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlcls.apis import prepare_config
from mlcls.apis.analyze import dataset_statistics
from mlcls.cli import cli_main, number_in
from mlcls.datasets import build_dataset
from mlcls.datasets.stats import cooccurrence
from mlcls.schema import require
from mlcls.utils.misc import write_json
from mlcls.utils.plots import bar_chart, heatmap

PLOT_CLASSES = 100  # bars and printed rows
HEATMAP_CLASSES = 50  # co-occurrence cells


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--out", help="output folder (default: <work_dir>/dataset_stats)")
    p.add_argument("--oversample-thr", type=number_in(0, 1, low_open=True), help="repeat-factor threshold t (default: the suggested one)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    cfg = prepare_config(args.config, args.cfg_options)
    ds_cfg = dict(require(require(cfg, f"{args.split}_dataloader"), "dataset", f"{args.split}_dataloader"))
    ds_cfg["pipeline"] = []  # labels only: no image is decoded
    dataset = build_dataset(ds_cfg)
    stats = dataset_statistics(dataset, args.oversample_thr)
    out = Path(args.out or Path(cfg["work_dir"]) / "dataset_stats")
    out.mkdir(parents=True, exist_ok=True)
    write_json(stats, out / "stats.json")
    classes = stats["classes"]
    shown = classes[:PLOT_CLASSES]  # most frequent first; a 20k-class bar chart is unreadable
    note = f" (the {PLOT_CLASSES} most frequent of {len(classes)}; all in stats.json)" if len(classes) > PLOT_CLASSES else ""
    bar_chart(
        [c["name"] for c in shown],
        [c["count"] for c in shown],
        out / "class_frequency.png",
        f"{args.split}: images per class{note}",
        "images (symmetric log scale from 0)",
        log=True,
        labels=True,
    )
    top = [dataset.classes.index(c["name"]) for c in classes[:HEATMAP_CLASSES]]
    heatmap(
        cooccurrence(dataset, classes=top), [dataset.classes[i] for i in top], out / "cooccurrence.png",
        f"{args.split}: images with both labels (diagonal: the class alone, not coloured)"
        + (f"; the {HEATMAP_CLASSES} most frequent of {len(classes)} classes" if len(classes) > HEATMAP_CLASSES else ""),
        off_diagonal=True,
    )  # fmt: skip

    lpi = stats["labels_per_image"]
    print(
        f"{stats['num_images']} images, {stats['num_classes']} classes; labels per image: mean {lpi['mean']:.2f}, max {lpi['max']}, histogram {lpi['histogram']}"
    )
    print(f"images without labels: {stats['images_without_labels']}; imbalance ratio (max/min count): {_ratio(stats['imbalance_ratio'])}")
    if stats["classes_without_positives"]:
        print(f"classes without positives: {stats['classes_without_positives']}")
    z = stats["all_zeros_baseline"]
    print(
        f"all-zeros baseline: element accuracy {z['element_accuracy']:.1f}%, exact match {z['exact_match']:.1f}%, recall 0 (why accuracy misleads)"
    )
    print(
        f"suggested oversample_thr {stats['oversample_thr']:.4f} -> epoch of {stats['repeat_factor_epoch_size']:.0f} samples (from {stats['num_images']})"
    )
    width = max(5, *(len(c["name"]) for c in shown))
    print(f"{'class':<{width}}  {'count':>7}  {'freq':>7}  {'pos_weight':>10}  {'repeat':>6}" + note)
    for c in shown:
        pw = f"{c['pos_weight']:.2f}" if c["pos_weight"] is not None else "n/a"
        rf = f"{c['repeat_factor']:.2f}" if c["repeat_factor"] is not None else "n/a"
        print(f"{c['name']:<{width}}  {c['count']:>7}  {c['frequency']:>7.4f}  {pw:>10}  {rf:>6}")
    if stats["top_pairs"]:
        print(
            "top co-occurring pairs: "
            + ", ".join(f"{a}+{b} {n}" for (a, b), n in ((t["pair"], t["count"]) for t in stats["top_pairs"][:10]))
        )
    print(f"written: {out}/stats.json, class_frequency.png, cooccurrence.png")


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
