"""Predict labels for images with a trained checkpoint.

    python tools/infer.py CHECKPOINT INPUT... [--thr T | --topk K] [--out results.jsonl|.csv]
                          [--config CONFIG] [--batch-size B] [--workers N] [--device cpu]

INPUT: image files, folders (searched recursively for image extensions) or list files (.txt/.lst,
one path per line). For a model of samples made of many images (a bag per exam): volumes
(.npy/.npz), folders searched for volumes (a folder without any is one bag of images), or list
files of those; a single-view model only (several views: use inference_model with {view: path}). Labels use the per-class thresholds stored in the checkpoint (tuned on
validation) unless --thr or --topk is given. Unreadable images are reported, skipped and counted.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from _common import cli_main
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from mlcls.apis.inference import bag_views, collect_inputs, decode, init_model, predict_probs, preprocess, resolve_thresholds  # noqa: E402
from mlcls.errors import ConfigError, DataError  # noqa: E402
from mlcls.utils.fileio import atomic_open  # noqa: E402
from mlcls.utils.misc import get_logger  # noqa: E402


class _Images(Dataset):
    def __init__(self, paths, model):
        self.paths, self.model = paths, model

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, preprocess(self.model, self.paths[i]), None
        except DataError as e:
            return i, None, str(e)
        except Exception as e:  # noqa: BLE001 - a transform failing on an odd image is a bad image too
            return i, None, f"{self.paths[i]}: {e}"


def _collate(batch):
    return batch  # images may differ in size or be missing; stacked per batch in the main process


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", help="image files, folders or list files")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--thr", type=float, help="one threshold for every class")
    g.add_argument("--thr-file", help="per-class thresholds from a JSON file (thresholds.json, or downloaded from the evaluation report)")
    g.add_argument("--topk", type=int, help="the k most probable classes per image")
    p.add_argument("--out", type=Path, help="results file: .jsonl (one JSON per image) or .csv (image, labels, score_<class>...)")
    p.add_argument("--config", help="config file (default: the one stored in the checkpoint)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for decoding")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tta", help="test-time augmentation: 'flip' (image + horizontal flip) or 'flip4'")
    p.add_argument(
        "--trust-config",
        action="store_true",
        help="let the checkpoint's stored config import its custom_imports and open pipe:/URL shards (only for checkpoints you trust)",
    )
    args = p.parse_args(argv)
    if args.topk is not None and args.topk < 1:
        raise ConfigError(f"--topk: expected an integer >= 1, got {args.topk}")
    if args.out is not None and args.out.suffix.lower() not in (".jsonl", ".csv"):
        raise ConfigError(f"--out: expected a .jsonl or .csv file name, got '{args.out.name}' (nothing was written)")
    log = get_logger(stream=sys.stderr)
    model = init_model(args.config, args.checkpoint, device=args.device, trust_config=args.trust_config)
    if args.topk is not None and args.topk > len(model.classes):
        raise ConfigError(f"--topk: the model has {len(model.classes)} classes, got {args.topk}")
    if args.tta:
        from mlcls.apis.tta import TTAModel

        model = TTAModel(model, args.tta)
    paths = collect_inputs(args.inputs, bags=bag_views(model) is not None)
    if not paths:
        raise DataError(f"no images found in {' '.join(args.inputs)}")
    thresholds = resolve_thresholds(model, args.thr if args.thr is not None else args.thr_file)
    if args.thr is not None or args.thr_file:
        source = "--thr" if args.thr is not None else f"--thr-file {args.thr_file}"
    else:
        source = f"top-{args.topk}" if args.topk else model.thresholds_source
    rule = f"the {args.topk} most probable classes" if args.topk else f"the classes at or above their threshold ({source})"
    log.info("%d images, %d classes; labels: %s", len(paths), len(model.classes), rule)
    loader = DataLoader(_Images(paths, model), batch_size=args.batch_size, num_workers=args.workers, collate_fn=_collate)
    results, bad = [], []
    from tqdm import tqdm

    with tqdm(total=len(paths), disable=None, unit="img") as bar:
        for batch in loader:
            good = [(i, x) for i, x, err in batch if x is not None]
            for _, _, err in batch:
                if err is not None:
                    bad.append(err)
                    log.warning("skipped: %s", err)
            if good:
                preds = decode(predict_probs(model, [x for _, x in good]), model.classes, thresholds, args.topk)
                results += [{"image": paths[i], **pred} for (i, _), pred in zip(good, preds)]
            bar.update(len(batch))
    if args.out:
        write_results(results, model.classes, args.out)
    else:
        for r in results:
            print(json.dumps({"image": r["image"], "labels": r["labels"]}))
    print(f"{len(results)} images predicted, {len(bad)} skipped (unreadable){f' -> {args.out}' if args.out else ''}", file=sys.stderr)


def write_results(results: list[dict], classes: list[str], out: Path) -> None:
    """Write atomically (a temporary file renamed into place). File names that are not valid UTF-8
    (possible on Linux) are written back byte for byte (surrogateescape), never dropped."""
    with atomic_open(out, newline="", errors="surrogateescape") as f:
        if out.suffix.lower() == ".csv":
            w = csv.writer(f)
            w.writerow(["image", "labels", *(f"score_{c}" for c in classes)])
            for r in results:
                w.writerow([r["image"], " ".join(r["labels"]), *(f"{r['scores'][c]:.6f}" for c in classes)])
        else:
            for r in results:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
