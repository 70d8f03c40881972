"""Export a checkpoint to ONNX or TorchScript with probabilities as output, plus a sidecar JSON."""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from mlcls.apis.inference import bag_views, init_model
from mlcls.apis.loaders import test_pipeline_cfg
from mlcls.datasets import build_dataset
from mlcls.datasets.bags import pack
from mlcls.errors import ConfigError, MlclsError
from mlcls.utils.fileio import atomic_path
from mlcls.utils.misc import write_json

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
    dynamic_batch: bool = True,
    input_size: list[int] | None = None,
    config: str | None = None,
    verify: bool = False,
    atol: float = 1e-4,
    trust_config: bool = False,
) -> dict:
    """Export ``checkpoint``; returns a summary (paths, and the verification's max differences).

    The output file is written to a temporary name and renamed into place only after it was
    produced (and, with ``verify``, after the check passed), so a failure leaves nothing behind.
    """
    if fmt not in ("onnx", "torchscript"):
        raise ConfigError(f"--format: expected 'onnx' or 'torchscript', got '{fmt}'")
    model = init_model(config, checkpoint, device="cpu", trust_config=trust_config)
    spec = input_spec(model.info.cfg, input_size)
    # Without a fixed size in the test pipeline the images keep their own size: export with a free
    # height/width (CNN backbones pool adaptively) and check at the data's size and one other.
    dynamic_hw = not spec["size"]
    h, w = spec["size"] or data_image_size(model)
    if dynamic_hw and not accepts_other_sizes(model, (h, w)):
        raise ConfigError(
            f"the model accepts only a fixed input size but the test pipeline has no Resize/CenterCrop with a size; "
            f"add one or pass --input-size H W (the data's images are {h}x{w})"
        )
    spec["dynamic_hw"] = dynamic_hw
    spec["checked_sizes"] = [[h, w], [h + 32, w + 32]] if dynamic_hw else [[h, w]]
    out = Path(out or Path(checkpoint).with_suffix(".onnx" if fmt == "onnx" else ".torchscript.pt"))
    views = bag_views(model)
    if views is not None:
        summary = export_bags(model, views, spec, fmt, out, opset, verify, atol)
        return _write_meta(model, spec, fmt, opset, out, summary)
    net = ProbabilityModel(model).eval()
    # a fixed batch is 1 (one image per call); a dynamic one is traced at 2 so that no size-1
    # dimension gets specialised away, and checked at 1 and 3
    batch = 2 if dynamic_batch else 1
    example = torch.randn(batch, 3, h, w)
    spec["batch"] = "dynamic" if dynamic_batch or fmt == "torchscript" else batch
    summary = {"model": str(out), "format": fmt, "input": spec, "dynamic_batch": dynamic_batch or fmt == "torchscript"}
    axes = {0: "batch"} if dynamic_batch else {}
    if dynamic_hw:
        axes.update({2: "height", 3: "width"})
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter / jit deprecation notices, not verification's
            if fmt == "onnx":
                # the TorchScript-based exporter; torch >= 2.5 names it with dynamo=False, older ones have only it
                legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
                torch.onnx.export(
                    net, (example,), str(tmp), **legacy, opset_version=opset, input_names=["images"], output_names=["probs"],
                    dynamic_axes={"images": axes, "probs": {0: "batch"} if dynamic_batch else {}} if axes else None,
                )  # fmt: skip
            else:
                with torch.no_grad():
                    traced = torch.jit.trace(net, example)
                traced.save(str(tmp))
        if verify:  # raising here removes the file: only a verified export reaches ``out``
            sizes = (1, 3) if dynamic_batch or fmt == "torchscript" else (batch, batch)
            summary["verify"] = {}
            for hw in spec["checked_sizes"]:
                summary["verify"].update(
                    {f"{k}_{hw[0]}x{hw[1]}": v for k, v in verify_export(net, tmp, fmt, sizes, tuple(hw), atol).items()}
                )
    return _write_meta(model, spec, fmt, opset, out, summary)


def _write_meta(model: nn.Module, spec: dict, fmt: str, opset: int, out: Path, summary: dict) -> dict:
    """``<model stem>.json`` beside the export: classes, thresholds, what the input is."""
    meta = {
        "classes": model.info.classes,
        "thresholds": model.info.thresholds.tolist(),
        "thresholds_source": model.info.thresholds_source,
        "input": spec,
        "output": "probabilities [B, C] (sigmoid applied; [1, C]: one exam per call for a model of bags); labels: probs >= thresholds",
        "format": fmt,
        **({"opset": opset} if fmt == "onnx" else {}),
    }
    meta_path = out.with_name(out.name.split(".")[0] + ".json")

    write_json(meta, meta_path)
    summary["meta"] = str(meta_path)
    return summary


class BagProbabilityModel(nn.Module):
    """One sample made of many images -> probabilities [1, C]: ``forward(*bags)`` takes one
    normalised float [S_v, 3, H, W] tensor per view (any S_v)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *bags: torch.Tensor) -> torch.Tensor:
        return self.model.predict_one_bag(*bags)


SLICE_COUNTS = (7, 5, 12)  # traced at the first; verified at the others (a free slice count)


def export_bags(model: nn.Module, views: list[str], spec: dict, fmt: str, out: Path, opset: int, verify: bool, atol: float) -> dict:
    """Export a model of bags: one input per view (``instances`` or ``instances_<view>``,
    [slices, 3, H, W], the slice count free), probabilities [1, C] out. Verification compares
    the exported model at two slice counts with the packed-batch forward used in training."""
    h, w = spec["checked_sizes"][0]
    names = [f"instances_{v}" if v else "instances" for v in views]
    spec.update({"layout": "per view: [slices, 3, H, W], one exam per call", "inputs": names, "batch": 1, "slices": "dynamic"})
    net = BagProbabilityModel(model).eval()
    example = tuple(torch.randn(SLICE_COUNTS[0], 3, h, w) for _ in views)
    axes = {n: {0: f"slices_{i}", **({2: "height", 3: "width"} if spec["dynamic_hw"] else {})} for i, n in enumerate(names)}
    summary: dict = {"model": str(out), "format": fmt, "input": spec, "dynamic_batch": False}
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "onnx":
                legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
                torch.onnx.export(
                    net, example, str(tmp), **legacy, opset_version=opset, input_names=names, output_names=["probs"], dynamic_axes=axes
                )  # fmt: skip
            else:
                with torch.no_grad():
                    torch.jit.trace(net, example).save(str(tmp))
        if verify:
            g = torch.Generator().manual_seed(0)
            if fmt == "onnx":
                import onnxruntime as ort

                session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
                run = lambda xs: torch.from_numpy(session.run(["probs"], {n: x.numpy() for n, x in zip(names, xs)})[0])  # noqa: E731
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    loaded = torch.jit.load(str(tmp))
                run = lambda xs: loaded(*xs)  # noqa: E731
            summary["verify"] = {}
            for count in SLICE_COUNTS[1:]:
                xs = [torch.randn(count + i, 3, h, w, generator=g) for i in range(len(views))]  # views of different lengths
                with torch.no_grad():
                    ref = model(pack([dict(zip(views, xs)) if views != [""] else xs[0]]), mode="predict")
                    try:
                        got = run(xs)
                    except Exception as e:  # noqa: BLE001 - the runtime's own error types
                        raise MlclsError(f"export verification failed at {count} slices: {str(e).strip().splitlines()[-1][:300]}") from None
                diff = float((got - ref).abs().max())
                summary["verify"][f"slices_{count}"] = diff
                if got.shape != ref.shape or diff > atol:
                    raise MlclsError(f"export verification failed: {count} slices: max |exported - pytorch| = {diff:.3g} > {atol}")
            logger.info("verified %s against PyTorch's packed batches: %s", fmt, summary["verify"])
    return summary


def data_image_size(model: nn.Module) -> tuple[int, int]:
    """(H, W) of the first test (else validation) image after the test pipeline."""
    for split in ("test", "val"):
        dataset_cfg = (model.info.cfg.get(f"{split}_dataloader") or {}).get("dataset")
        if not dataset_cfg:
            continue
        try:
            dataset = build_dataset({**dataset_cfg, "check_files": False, "cache": False})
            image = dataset[0][0]
            image = next(iter(image.values())) if isinstance(image, dict) else image  # a bag per view: its slices
        except (MlclsError, OSError, IndexError) as e:
            raise ConfigError(
                f"input size unknown: the test pipeline has no Resize/CenterCrop with a size and the {split} data could not "
                f"be read to measure it ({e}); pass --input-size H W"
            ) from None
        logger.info("export: input size %dx%d, from the first %s image after the test pipeline", image.shape[-2], image.shape[-1], split)
        return int(image.shape[-2]), int(image.shape[-1])
    raise ConfigError(
        "input size unknown: the test pipeline has no Resize/CenterCrop with a size and no test/val data; pass --input-size H W"
    )


def accepts_other_sizes(model: nn.Module, hw: tuple[int, int]) -> bool:
    """Whether ``model`` runs on an input 32 px larger than ``hw`` (adaptive pooling) or needs exactly ``hw``."""
    x = torch.zeros(1, 3, hw[0] + 32, hw[1] + 32)
    views = bag_views(model)
    if views is not None:  # a bag of one instance per view
        x = pack([{v: x for v in views} if views != [""] else x])
    try:
        with torch.no_grad():
            model(x, mode="predict")
        return True
    except (RuntimeError, AssertionError, ValueError):
        return False


def verify_export(net: nn.Module, path: Path, fmt: str, sizes: tuple[int, ...], hw: tuple[int, int], atol: float) -> dict:
    """Compare the exported model's outputs with PyTorch's on random inputs of each batch size."""
    g = torch.Generator().manual_seed(0)
    report = {}
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice; the file is ours
            loaded = torch.jit.load(str(path))
    for b in sizes:
        x = torch.randn(b, 3, *hw, generator=g)
        with torch.no_grad():
            ref = net(x)
            try:
                got = torch.from_numpy(session.run(["probs"], {"images": x.numpy()})[0]) if fmt == "onnx" else loaded(x)
            except Exception as e:  # noqa: BLE001 - the runtime's own error types
                msg = str(e).strip().splitlines()[-1][:300]
                raise MlclsError(
                    f"export verification failed: the exported model does not run on a batch of {b} at {hw[0]}x{hw[1]} ({msg}); "
                    "if it only works at one size, pass --input-size H W"
                ) from None
        diff = float((got - ref).abs().max())
        report[f"batch_{b}"] = diff
        if got.shape != ref.shape or diff > atol:
            raise MlclsError(
                f"export verification failed: batch {b}: max |exported - pytorch| = {diff:.3g} > {atol} (shape {tuple(got.shape)})"
            )
    logger.info("verified %s against PyTorch: %s", fmt, ", ".join(f"{k} max diff {v:.2e}" for k, v in report.items()))
    return report
