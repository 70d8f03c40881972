"""Export a checkpoint to ONNX or TorchScript with probabilities as output, plus a sidecar JSON."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from mlcls.apis.inference import init_model, test_pipeline_cfg
from mlcls.errors import ConfigError, MlclsError
from mlcls.utils.fileio import atomic_path

logger = logging.getLogger("mlcls")


class ProbabilityModel(nn.Module):
    """images [B, 3, H, W] (normalised float) -> probabilities [B, C]: the deployable forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images, mode="predict")


def input_spec(cfg: dict, size: list[int] | None = None) -> dict:
    """What the exported model expects: size, mean, std, from the test pipeline (or ``size``)."""
    spec: dict = {"layout": "NCHW", "channels": "RGB", "dtype": "float32", "scale": "pixel / 255, then (x - mean) / std"}
    mean, std, found = None, None, None
    for t in test_pipeline_cfg(cfg):
        if t.get("type") == "ToFloatNormalize":
            mean, std = t.get("mean", [0.485, 0.456, 0.406]), t.get("std", [0.229, 0.224, 0.225])
        if t.get("type") in ("Resize", "CenterCrop") and t.get("size") is not None:
            s = t["size"]
            found = [s, s] if isinstance(s, int) else list(s)
    spec["size"] = list(size) if size else found
    spec["mean"], spec["std"] = mean, std
    return spec


def export_model(
    checkpoint: str | os.PathLike,
    fmt: str = "onnx",
    out: str | os.PathLike | None = None,
    opset: int = 17,
    dynamic_batch: bool = False,
    input_size: list[int] | None = None,
    config: str | None = None,
    verify: bool = False,
    atol: float = 1e-4,
) -> dict:
    """Export ``checkpoint``; returns a summary (paths, and the verification's max differences).

    The output file is written to a temporary name and renamed into place only after it was
    produced (and, with ``verify``, after the check passed), so a failure leaves nothing behind.
    """
    if fmt not in ("onnx", "torchscript"):
        raise ConfigError(f"--format: expected 'onnx' or 'torchscript', got '{fmt}'")
    model = init_model(config, checkpoint, device="cpu")
    spec = input_spec(model.cfg, input_size)
    if not spec["size"]:
        raise ConfigError("input size unknown: the test pipeline has no Resize/CenterCrop with a size; pass --input-size H W")
    h, w = spec["size"]
    out = Path(out or Path(checkpoint).with_suffix(".onnx" if fmt == "onnx" else ".torchscript.pt"))
    net = ProbabilityModel(model).eval()
    batch = 2
    example = torch.randn(batch, 3, h, w)
    summary = {"model": str(out), "format": fmt, "input": spec, "dynamic_batch": dynamic_batch}
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter / jit deprecation notices, not verification's
            if fmt == "onnx":
                torch.onnx.export(
                    net, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["images"], output_names=["probs"],
                    dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}} if dynamic_batch else None,
                )  # fmt: skip
            else:
                with torch.no_grad():
                    traced = torch.jit.trace(net, example)
                traced.save(str(tmp))
        if verify:  # raising here removes the file: only a verified export reaches ``out``
            sizes = (1, 3) if dynamic_batch or fmt == "torchscript" else (batch, batch)
            summary["verify"] = verify_export(net, tmp, fmt, sizes, (h, w), atol)
    meta = {
        "classes": model.classes,
        "thresholds": model.thresholds.tolist(),
        "thresholds_source": model.thresholds_source,
        "input": spec,
        "output": "probabilities [B, C] (sigmoid applied); predicted labels: probs >= thresholds",
        "format": fmt,
        **({"opset": opset} if fmt == "onnx" else {}),
    }
    meta_path = out.with_name(out.name.split(".")[0] + ".json")
    from mlcls.utils.misc import write_json

    write_json(meta, meta_path)
    summary["meta"] = str(meta_path)
    return summary


def verify_export(net: nn.Module, path: Path, fmt: str, sizes: tuple[int, ...], hw: tuple[int, int], atol: float) -> dict:
    """Compare the exported model's outputs with PyTorch's on random inputs of each batch size."""
    g = torch.Generator().manual_seed(0)
    report = {}
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    else:
        loaded = torch.jit.load(str(path))
    for b in sizes:
        x = torch.randn(b, 3, *hw, generator=g)
        with torch.no_grad():
            ref = net(x)
            got = torch.from_numpy(session.run(["probs"], {"images": x.numpy()})[0]) if fmt == "onnx" else loaded(x)
        diff = float((got - ref).abs().max())
        report[f"batch_{b}"] = diff
        if got.shape != ref.shape or diff > atol:
            raise MlclsError(
                f"export verification failed: batch {b}: max |exported - pytorch| = {diff:.3g} > {atol} (shape {tuple(got.shape)})"
            )
    logger.info("verified %s against PyTorch: %s", fmt, ", ".join(f"{k} max diff {v:.2e}" for k, v in report.items()))
    return report
