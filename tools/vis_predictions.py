"""Draw a grid of images with their true and predicted labels (and optionally Grad-CAM).

    python tools/vis_predictions.py CONFIG CHECKPOINT [--split val] [--num 32] [--cam LABEL]
                                    [--thr T] [--sort errors] --out grid.png

Hits are green, misses (true, not predicted) orange with '-', false alarms red with '+'.
Thresholds: the checkpoint's tuned per-class ones unless --thr is given. CONFIG may be '-' to use
the config stored in the checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlcls.cli import cli_main, int_at_least, number_in


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="config file, or '-' for the checkpoint's own")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--num", type=int_at_least(1), default=32, help="images to draw")
    p.add_argument("--ncols", type=int_at_least(1), default=8)
    p.add_argument("--thr", type=number_in(0, 1), help="one threshold for every class (default: the checkpoint's)")
    p.add_argument("--cam", metavar="LABEL", help="overlay the Grad-CAM map of this class")
    p.add_argument("--sort", choices=["first", "errors"], default="first", help="'errors': images with the most mistakes first")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--trust-config",
        action="store_true",
        help="let the checkpoint's stored config import its custom_imports and open pipe:/URL shards (only for checkpoints you trust)",
    )
    args = p.parse_args(argv)

    import torch

    from mlcls.apis.inference import init_model, model_thresholds
    from mlcls.apis.loaders import build_loader
    from mlcls.apis.visualize import exam_evidence_grid, split_prediction_grid
    from mlcls.datasets.bags import pack
    from mlcls.datasets.device_decode import stack_images
    from mlcls.errors import ConfigError
    from mlcls.evaluation import MultiLabelMetric
    from mlcls.evaluation.loop import predict_loader
    from mlcls.schema import require
    from mlcls.utils.fileio import atomic_path
    from mlcls.utils.misc import get_logger

    get_logger()
    model = init_model(None if args.config == "-" else args.config, args.checkpoint, trust_config=args.trust_config)
    require(model.info.cfg, f"{args.split}_dataloader")
    loader = build_loader(
        {**model.info.cfg, f"{args.split}_dataloader": {**model.info.cfg[f"{args.split}_dataloader"], "num_workers": 0}},
        args.split,
        "eval",
        0,
    )
    dataset = loader.dataset
    prepare = loader.batch_transform or (lambda x: x)  # samples may be uint8, normalised per batch
    cam = None
    if args.cam is not None:
        if args.cam not in model.info.classes:
            raise ConfigError(f"--cam: unknown class '{args.cam}' (classes: {', '.join(model.info.classes)})")
        cam = model.info.classes.index(args.cam)
    resolved = model_thresholds(model, args.thr, given_as="--thr")
    thr = resolved.values
    num = min(args.num, len(dataset))
    if args.sort == "errors":
        metric = MultiLabelMetric()
        scores, targets = predict_loader(model, loader, metric, next(model.parameters()).device)
        errors = ((scores >= thr) != (targets > 0.5)) & (targets >= 0)
        rows = torch.argsort(errors.sum(1), descending=True, stable=True)[:num]
        order = metric.indices[rows].tolist()  # the dataset index of each chosen row
        chosen = scores[rows].numpy()
    else:
        order = list(range(num))
        with torch.no_grad():
            samples = [dataset[i][0] for i in order]
            batch = pack(samples) if getattr(dataset, "bags", False) else prepare(stack_images(samples))
            chosen = model(batch, mode="predict").numpy()
    if getattr(dataset, "bags", False):  # exams: each shown by the slice that carried its score
        grid = exam_evidence_grid(model, dataset, order, chosen, thr.numpy(), cam_class=cam, ncols=args.ncols)
    else:
        grid = split_prediction_grid(model, dataset, order, chosen, thr.numpy(), cam_class=cam, ncols=args.ncols, prepare=prepare)
    from PIL import Image

    with atomic_path(args.out) as tmp:
        Image.fromarray(np.ascontiguousarray(grid)).save(tmp)
    print(f"wrote {args.out} ({len(order)} images from '{args.split}', thresholds: {resolved.source})")


if __name__ == "__main__":
    main()
