"""Write a dataset as WebDataset tar shards, for data that lives in object storage.

    python tools/make_shards.py CONFIG --split train --out DIR [--shard-size 500MB] [--seed 0]

Reads the ``{split}_dataloader.dataset`` of CONFIG (any mlcls dataset: CSV, TXT, COCO, VOC, Open
Images, ...) and writes DIR/shard-NNNNNN.tar (image bytes as stored, labels as positive,
verified-negative and ignored class indices), DIR/index.json (classes, shard sizes, label counts)
and DIR/labels.npz (the labels as arrays). DIR must not exist; it appears only when complete.
Train from it with ``dataset: {type: WebDatasetShards, index: DIR/index.json, pipeline: [...]}``.
"""

from __future__ import annotations

import argparse
import time

from mlcls.apis import prepare_config
from mlcls.cli import cli_main, seed_arg
from mlcls.datasets import build_dataset
from mlcls.datasets.class_balanced import unwrapped_dataset_cfg
from mlcls.datasets.shards import parse_size, write_shards
from mlcls.schema import require


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--out", required=True, help="the new shard folder")
    p.add_argument("--shard-size", default="500MB", help="about this many bytes per shard (default 500MB)")
    p.add_argument("--seed", type=seed_arg(), default=0, help="the order samples are written in")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    cfg = prepare_config(args.config, args.cfg_options)
    # shards hold each image once; repeats happen when reading
    ds_cfg = unwrapped_dataset_cfg(require(require(cfg, f"{args.split}_dataloader"), "dataset", f"{args.split}_dataloader"))
    ds_cfg["pipeline"] = []  # the bytes are copied as stored, nothing is decoded
    dataset = build_dataset(ds_cfg)
    t0 = time.perf_counter()
    index = write_shards(
        dataset, args.out, parse_size(args.shard_size), seed=args.seed, source={"config": args.config, "split": args.split}
    )
    total = sum(s["bytes"] for s in index["shards"])
    print(
        f"wrote {len(index['shards'])} shards ({total / 2**20:.1f} MB, {index['num_samples']} samples, "
        f"{len(index['classes'])} classes) to {args.out} in {time.perf_counter() - t0:.1f} s"
    )
    print(f"train from it with: dataset: {{type: WebDatasetShards, index: {args.out}/index.json, pipeline: [...]}}")


if __name__ == "__main__":
    main()
