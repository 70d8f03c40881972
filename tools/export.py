"""Export a checkpoint for deployment: probabilities out, class names and thresholds beside it.

    python tools/export.py CHECKPOINT --format onnx|torchscript [--out FILE] [--opset 17]
                           [--no-dynamic-batch] [--input-size H W] [--verify]

Writes FILE (the model: float32 NCHW normalised images in, probabilities [B, C] out) and
FILE-stem.json (classes, per-class thresholds, input size / mean / std), so the deployed model
needs no mlcls. --verify runs onnxruntime / TorchScript on random inputs of two batch sizes and
fails unless the outputs equal PyTorch's within 1e-4.
"""

from __future__ import annotations

import argparse
import json
import sys

from mlcls.apis.export import export_model
from mlcls.cli import cli_main
from mlcls.utils.misc import get_logger


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--out", help="output file (default: next to the checkpoint)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument(
        "--dynamic-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ONNX: any batch size (default); --no-dynamic-batch fixes it at 1, stated in the JSON beside the model",
    )
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="default: from the test pipeline")
    p.add_argument("--config", help="config file (default: the one in the checkpoint)")
    p.add_argument("--verify", action="store_true", help="check outputs against PyTorch (max abs diff 1e-4)")
    p.add_argument(
        "--trust-config",
        action="store_true",
        help="let the checkpoint's stored config import its custom_imports and open pipe:/URL shards (only for checkpoints you trust)",
    )
    args = p.parse_args(argv)
    get_logger(stream=sys.stderr)
    summary = export_model(
        args.checkpoint, args.format, args.out, args.opset, args.dynamic_batch, args.input_size, args.config, args.verify,
        trust_config=args.trust_config,
    )  # fmt: skip
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
