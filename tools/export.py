"""Export a checkpoint for deployment: probabilities out, class names and thresholds beside it.

    python tools/export.py CHECKPOINT --format onnx|torchscript [--out FILE] [--opset 17]
                           [--dynamic-batch] [--input-size H W] [--verify]

Writes FILE (the model: float32 NCHW normalised images in, probabilities [B, C] out) and
FILE-stem.json (classes, per-class thresholds, input size / mean / std), so the deployed model
needs no mlcls. --verify runs onnxruntime / TorchScript on random inputs of two batch sizes and
fails unless the outputs equal PyTorch's within 1e-4.
"""

from __future__ import annotations

import argparse
import json
import sys

from _common import cli_main

from mlcls.apis.export import export_model
from mlcls.utils.misc import get_logger


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--out", help="output file (default: next to the checkpoint)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: any batch size (TorchScript always is)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="default: from the test pipeline")
    p.add_argument("--config", help="config file (default: the one in the checkpoint)")
    p.add_argument("--verify", action="store_true", help="check outputs against PyTorch (max abs diff 1e-4)")
    args = p.parse_args(argv)
    get_logger(stream=sys.stderr)
    summary = export_model(
        args.checkpoint, args.format, args.out, args.opset, args.dynamic_batch, args.input_size, args.config, args.verify
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
