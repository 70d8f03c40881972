"""Predict labels for images with a trained checkpoint.

    python tools/infer.py CHECKPOINT INPUT... [--thr T | --topk K] [--out results.jsonl|.csv]
                          [--config CONFIG] [--batch-size B] [--workers N] [--device cpu]

INPUT: image files, folders (searched recursively for image extensions) or list files (.txt/.lst,
one path per line). For a model of samples made of many images (a bag per exam): volumes
(.npy/.npz), folders searched for volumes (a folder without any is one bag of images), or list
files of those. For a model of named views (knee MRI: sagittal, coronal, axial), a folder laid out by
view (MRNet's split/<view>/<exam>.npy, or <exam>/<view>.npy) gives one row per exam with the
model's views only (the files used are in the row). Labels use the per-class thresholds stored in the checkpoint (tuned on
validation) unless --thr or --topk is given. Unreadable images are reported, skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlcls.apis.inference import (
    IMAGE_EXTENSIONS,
    bag_evidence,
    bag_views,
    collect_inputs,
    init_model,
    input_name,
    model_thresholds,
    predict_files,
    write_results,
)
from mlcls.cli import cli_main, int_at_least, number_in
from mlcls.datasets.bags import VOLUME_EXTENSIONS
from mlcls.errors import ConfigError, DataError
from mlcls.utils.misc import get_logger


def _workers(value: str) -> int | str:
    if value == "auto" or (value.isdigit() and int(value) >= 0):
        return value if value == "auto" else int(value)
    raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 0, got '{value}'")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", help="image files, folders or list files")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--thr", type=number_in(0, 1), help="one threshold for every class")
    g.add_argument("--thr-file", help="per-class thresholds from a JSON file (thresholds.json, or downloaded from the evaluation report)")
    g.add_argument("--topk", type=int_at_least(1), help="the k most probable classes per image")
    p.add_argument("--out", type=Path, help="results file: .jsonl (one JSON per image) or .csv (image, labels, score_<class>...)")
    p.add_argument("--config", help="config file (default: the one stored in the checkpoint)")
    p.add_argument("--batch-size", type=int_at_least(1), default=32)
    p.add_argument("--workers", type=_workers, default="auto",
                   help="DataLoader worker processes for decoding: auto (default; none on a CPU whose cores the model uses) or a number")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--tta", help="test-time augmentation: 'flip' (image + horizontal flip) or 'flip4'")
    p.add_argument(
        "--evidence",
        action="store_true",
        help="models of exams: also write which slice carried each class's score, and every slice's score (reads each exam once more)",
    )
    p.add_argument(
        "--trust-config",
        action="store_true",
        help="let the checkpoint's stored config import its custom_imports and open pipe:/URL shards (only for checkpoints you trust)",
    )
    return p.parse_args(argv)


@cli_main
def main(argv=None) -> None:
    args = parse_args(argv)
    if args.out is not None and args.out.suffix.lower() not in (".jsonl", ".csv"):
        raise ConfigError(f"--out: expected a .jsonl or .csv file name, got '{args.out.name}' (nothing was written)")
    log = get_logger(stream=sys.stderr)
    model = init_model(args.config, args.checkpoint, device=args.device, trust_config=args.trust_config)
    if args.topk is not None and args.topk > len(model.info.classes):
        raise ConfigError(f"--topk: the model has {len(model.info.classes)} classes, got {args.topk}")
    if args.tta:
        from mlcls.apis.tta import TTAModel

        model = TTAModel(model, args.tta)
    views = bag_views(model)
    paths = collect_inputs(args.inputs, bags=views is not None, views=views)
    what = "images" if views is None else "exams" if any(views) else "samples"
    if not paths:
        kinds = ", ".join(IMAGE_EXTENSIONS if views is None else VOLUME_EXTENSIONS + ("folders of images",))
        raise DataError(f"no {what} found in {' '.join(args.inputs)} (looked for {kinds})")
    given = args.thr if args.thr is not None else args.thr_file
    resolved = model_thresholds(model, given, given_as="--thr")
    thresholds, source = resolved.values, f"top-{args.topk}" if args.topk else resolved.source
    rule = f"the {args.topk} most probable classes" if args.topk else f"the classes at or above their threshold ({source})"
    log.info("%d %s, %d classes; labels: %s", len(paths), what, len(model.info.classes), rule)
    if args.evidence and views is None:
        raise ConfigError("--evidence: this model reads single images; evidence slices are for models of exams (bags of slices)")
    results, bad = predict_files(model, paths, thresholds, args.topk, args.batch_size, args.workers)
    if args.evidence:
        by_name = {input_name(p)["image"]: p for p in paths}
        for r, ev in zip(results, bag_evidence(model, [by_name[r["image"]] for r in results])):
            r["evidence"] = ev
    if not results:  # nothing of what was given could be predicted: a failure, not an empty success
        raise DataError(f"none of the {len(paths)} {what} could be predicted; the first: {bad[0]}")
    if args.out:
        write_results(results, model.info.classes, args.out)
    else:
        for r in results:
            print(json.dumps({"image": r["image"], "labels": r["labels"]}))
    print(f"{len(results)} {what} predicted, {len(bad)} skipped (unreadable){f' -> {args.out}' if args.out else ''}", file=sys.stderr)


if __name__ == "__main__":
    main()
