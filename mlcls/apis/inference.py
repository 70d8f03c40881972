"""Inference with mmcls-style names: ``init_model`` and ``inference_model``.

Unlike an argmax, a multi-label prediction is the set of classes whose probability reaches that
class's threshold; by default the per-class thresholds tuned on validation and stored in the
checkpoint (``tools/test.py --tune-thr``, ``ThresholdTuningHook``), else the config's evaluator
threshold (0.5 by default).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mlcls.apis.loaders import test_pipeline_cfg
from mlcls.apis.model import build_from_checkpoint
from mlcls.apis.tta import TTAModel
from mlcls.config import import_custom_modules, load_config
from mlcls.datasets.bags import VOLUME_EXTENSIONS, bag_input, evaluation_indices, load_bag, pack, sample_unit, subsample, volume_to_uint8
from mlcls.datasets.builder import resolve_num_workers
from mlcls.datasets.image_io import load_image, pil_to_uint8
from mlcls.datasets.transforms import build_pipeline, split_final_normalize
from mlcls.errors import ConfigError, DataError
from mlcls.evaluation.thresholds import Thresholds, resolve_thresholds
from mlcls.utils.fileio import atomic_open, read_text_lines

logger = logging.getLogger("mlcls")


def init_model(
    config: str | os.PathLike | dict | None, checkpoint: str | os.PathLike, device: str = "cpu", trust_config: bool = False
) -> nn.Module:
    """Build a model from a checkpoint, ready for :func:`inference_model`.

    Args:
        config: a config file (its ``custom_imports`` are imported) or dict; ``None`` uses the
            config stored in the checkpoint.
        checkpoint: an mlcls checkpoint (its evaluation weights: EMA when validation used EMA).
        device: ``cpu``, ``cuda``, ``cuda:1``, ``auto``.
        trust_config: let the checkpoint's stored config import its ``custom_imports`` (and open
            program URLs); without it, a stored config that asks for either is refused.

    Returns:
        The model in eval mode; ``model.info`` (:class:`~mlcls.models.info.ModelInfo`) holds its
        classes, thresholds ([C] float tensor), their source, the config and the test pipeline.
    """
    if config is not None and not isinstance(config, dict):
        config = load_config(config)
        import_custom_modules(config)  # the user's own config: its plugins are theirs to import
    model, _, cfg = build_from_checkpoint(checkpoint, config, device, trust_config=trust_config)
    return with_test_pipeline(model)


def with_test_pipeline(model: nn.Module) -> nn.Module:
    """``model`` with ``model.info.pipeline`` set to its config's test pipeline when it has none yet
    (a model built for evaluation, as tools/test.py builds it, gets one the first time it is asked)."""
    if model.info.pipeline is None:
        model.info.pipeline = build_pipeline(test_pipeline_cfg(model.info.cfg))
    return model


def to_uint8_tensor(item: Any) -> torch.Tensor:
    """A path, PIL image, HxWx3 / HxW uint8 array or [3, H, W] uint8 tensor -> uint8 [3, H, W] RGB."""
    if isinstance(item, (str, os.PathLike)):
        path = str(item)
        if not os.path.isfile(path):
            raise DataError(f"image file not found: {path}")
        try:
            return load_image(path)
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad image
            raise DataError(f"cannot decode image {path}: {e}") from None
    if isinstance(item, torch.Tensor):
        if item.dtype != torch.uint8 or item.dim() != 3 or item.shape[0] != 3:
            raise DataError(f"tensor input must be uint8 [3, H, W], got {item.dtype} {tuple(item.shape)}")
        if min(item.shape[1:]) == 0:
            raise DataError(f"empty image: {tuple(item.shape)}")
        return item
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise DataError(f"array input must be uint8 HxWx3 (RGB), got dtype {item.dtype}")
        if item.ndim == 2:
            item = np.repeat(item[:, :, None], 3, axis=2)
        if item.ndim != 3 or item.shape[2] not in (3, 4):
            raise DataError(f"array input must be HxWx3 (RGB), got shape {item.shape}")
        if min(item.shape[:2]) == 0:
            raise DataError(f"empty image: array of shape {item.shape}")
        return torch.from_numpy(np.array(item[:, :, :3])).permute(2, 0, 1).contiguous()  # a copy: inputs may be read-only
    if isinstance(item, Image.Image):
        if min(item.size) == 0:
            raise DataError(f"empty image: PIL image of size {item.size}")
        return pil_to_uint8(item)  # decoded as a file of the same image would be (16-bit, transparency, EXIF)
    raise DataError(f"unsupported input type {type(item).__name__}: give a path, a PIL image or an HxWx3 uint8 array")


@torch.no_grad()
def predict_probs(model: nn.Module, images: Sequence[torch.Tensor] | torch.Tensor, batch_transform: Callable | None = None) -> torch.Tensor:
    """Preprocessed images (each [3, H, W], or already stacked [N, 3, H, W]) -> probabilities [N, C],
    one forward when sizes agree; bags (each [S, 3, H, W] or ``{view: ...}``) are packed into one
    batch. ``batch_transform`` (e.g. the normalisation a :class:`Preprocessor` handed over) runs on
    each batch on the device."""
    device = next(model.parameters()).device
    prepare = batch_transform or (lambda x: x)
    if isinstance(images, torch.Tensor):
        return model(prepare(images.to(device)), mode="predict").float().cpu()
    if images and (isinstance(images[0], dict) or images[0].dim() == 4):
        return model(pack(list(images)).to(device), mode="predict").float().cpu()
    if len({tuple(x.shape) for x in images}) == 1:
        return model(prepare(torch.stack(list(images)).to(device)), mode="predict").float().cpu()
    return torch.cat([model(prepare(x.unsqueeze(0).to(device)), mode="predict").float().cpu() for x in images])


def decode(probs: torch.Tensor, classes: Sequence[str], thresholds: torch.Tensor, topk: int | None = None) -> list[dict]:
    """probs [N, C] -> per image ``{"labels": [...], "scores": {name: prob}}``.

    ``topk``: the k most probable classes, regardless of thresholds; otherwise every class whose
    probability reaches its threshold, most probable first.
    """
    out = []
    for row in probs:
        order = torch.argsort(row, descending=True).tolist()
        if topk is not None:
            chosen = order[:topk]
        else:
            chosen = [c for c in order if row[c] >= thresholds[c]]
        out.append({"labels": [classes[c] for c in chosen], "scores": {classes[c]: round(float(row[c]), 6) for c in range(len(classes))}})
    return out


def model_thresholds(model: nn.Module, thr: Any = None, given_as: str = "thr") -> Thresholds:
    """The thresholds a prediction uses: ``thr`` when given (any form
    :func:`~mlcls.evaluation.thresholds.threshold_values` accepts), else the model's own
    (``model.info``: resolved when it was built, by the same rule)."""
    if thr is None:
        return Thresholds(model.info.thresholds, model.info.thresholds_source)
    return resolve_thresholds(model.info.classes, thr, given_as=given_as)


def bag_evidence(model: nn.Module, inputs: Sequence[Any]) -> list[dict]:
    """For a model of bags (exams): which slice carried each class's score, and every slice's score.

    See :meth:`~mlcls.models.classifiers.ImageClassifier.instance_evidence` for what a slice's
    score is (and is not). Slices are numbered as in the input (0-based), also when the model
    reads only ``max_instances`` evenly spaced ones.

    Returns:
        per input ``{"per_class": {class: {"view", "slice", "score"}}, "slices": {view: [{"slice",
        "scores": {class: p}, "attention": weight or None}]}}``.
    """
    m = model.model if isinstance(model, TTAModel) else model  # evidence of the model itself, not of test-time augmentation
    views = bag_views(m)
    if views is None or not hasattr(m, "instance_evidence"):
        raise ConfigError("evidence: only a model of samples made of many images (slices, views) has per-slice evidence")
    prepare, classes = Preprocessor(with_test_pipeline(m)), m.info.classes
    device = next(m.parameters()).device
    out = []
    for item in inputs:
        item = item if isinstance(item, dict) else {views[0]: item}
        raw = {v: to_uint8_bag(x) for v, x in item.items()}
        kept = {v: evaluation_indices(b.shape[0], prepare.max_instances) for v, b in raw.items()}
        ev = m.instance_evidence(pack([prepare(raw if views != [""] else raw[""])]).to(device))[0]
        slices, best = {}, {}
        for v, e in ev.items():
            scores = e["scores"].float().cpu()
            weights = None if e["attention"] is None else e["attention"].float().cpu().tolist()
            slices[v] = [
                {"slice": kept[v][k], "scores": dict(zip(classes, row)), "attention": None if weights is None else weights[k]}
                for k, row in enumerate(scores.tolist())
            ]
            for c, name in enumerate(classes):
                k = int(scores[:, c].argmax())
                if name not in best or float(scores[k, c]) > best[name]["score"]:
                    best[name] = {"view": v, "slice": kept[v][k], "score": float(scores[k, c])}
        out.append({"per_class": best, "slices": slices})
    return out


def evidence_arrays(model: nn.Module, paths: Sequence[str], chunk: int = 16) -> dict:
    """Per sample and class, the view and slice that carried the score (:func:`bag_evidence`), as
    the arrays a scores file keeps (:func:`~mlcls.report.store.save_eval_scores`).

    Args:
        paths: N dataset sample paths (a ``{view}`` path is read in each of the model's views).

    Returns:
        ``{"view": int [N, C] (index into the model's views), "slice": int [N, C] (0-based)}``.
    """
    views = bag_views(model)
    classes = model.info.classes
    view_arr = np.zeros((len(paths), len(classes)), dtype=np.int64)
    slice_arr = np.full((len(paths), len(classes)), -1, dtype=np.int64)
    for start in range(0, len(paths), chunk):
        part = paths[start : start + chunk]
        for i, ev in enumerate(bag_evidence(model, [bag_input(p, views) for p in part]), start=start):
            for c, name in enumerate(classes):
                best = ev["per_class"][name]
                view_arr[i, c], slice_arr[i, c] = views.index(best["view"]), best["slice"]
    return {"view": view_arr, "slice": slice_arr}


def inference_model(
    model: nn.Module,
    inputs: Any,
    thr: float | Sequence[float] | dict | str | os.PathLike | None = None,
    topk: int | None = None,
    batch_size: int = 32,
    tta: str | Sequence | None = None,
    evidence: bool = False,
) -> dict | list[dict]:
    """Predict the labels of one image or of a list of images.

    Args:
        model: from :func:`init_model`.
        inputs: a path, a PIL image, an HxWx3 uint8 RGB array, or a list of those.
        thr: instead of the checkpoint's thresholds: a global threshold, one per class (a list
            or a ``{class: threshold}`` dict), a threshold record, or the path of a JSON file
            with one (e.g. downloaded from the evaluation report); see :func:`threshold_values`.
        topk: return the k most probable classes instead of thresholding.
        batch_size: images per forward pass.
        tta: test-time augmentation, ``flip`` or a list of views (see :mod:`mlcls.apis.tta`);
            the scores are the mean over the views.
        evidence: for a model of exams (bags of slices), also return ``evidence``: the slice
            that carried each class's score and every slice's score (:func:`bag_evidence`).

    Returns:
        ``{"labels": [names...], "scores": {name: probability}}`` for a single input, a list of
        such dicts for a list.
    """
    if thr is not None and topk is not None:
        raise ConfigError("give either thr or topk, not both")
    if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= len(model.info.classes)):
        raise ConfigError(f"topk: expected an integer from 1 to {len(model.info.classes)} (the number of classes), got {topk!r}")
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    thresholds = model_thresholds(model, thr).values
    if tta:
        model = TTAModel(model, tta)
    prepare = Preprocessor(model)
    results: list[dict] = []
    for start in range(0, len(items), batch_size):
        batch = [prepare(x) for x in items[start : start + batch_size]]
        results += decode(predict_probs(model, batch), model.info.classes, thresholds, topk)
    if evidence:
        for r, ev in zip(results, bag_evidence(model, items)):
            r["evidence"] = ev
    return results[0] if single else results


def bag_views(model: nn.Module) -> list[str] | None:
    """The views of a model that reads samples made of many images (``[""]`` for one unnamed
    view), or None for a model of single images."""
    return model.bag_views  # declared by the model (and passed through by a TTAModel)


class Preprocessor:
    """One input as the model's test pipeline prepares it: an image -> [3, H, W]; for a model of
    bags, a volume (.npy/.npz path or [S, H, W(, C)] array), a folder of images, ``a|b|c`` image
    paths or a [S, 3, H, W] uint8 tensor -> [S, 3, H, W], or ``{view: one of those}`` per view
    (a single-view model also takes the bag alone). Long bags keep evenly spaced instances
    (the test dataset's ``max_instances``).

    Holds the pipeline and the bag views, not the model: loader workers get only what they need.
    ``batch_normalize``: single images stay uint8 and a final ``ToFloatNormalize`` becomes
    :attr:`batch_transform`, for :func:`predict_probs` to run once per batch on the device.
    """

    def __init__(self, model: nn.Module, batch_normalize: bool = False) -> None:
        self.pipeline = model.info.pipeline
        self.views = bag_views(model)
        self.max_instances = model.info.max_instances
        self.batch_transform = None
        if batch_normalize and self.views is None:
            self.pipeline, self.batch_transform = split_final_normalize(self.pipeline)

    def __call__(self, item: Any):
        if self.views is None:
            return self.pipeline(to_uint8_tensor(item))
        views = self.views
        if not isinstance(item, dict):
            if len(views) > 1:
                raise DataError(f"this model reads the views {views}: give {{view: volume or images}} for each")
            item = {views[0]: item}
        if set(item) != set(views):
            raise DataError(f"this model reads the views {views}, got {sorted(item)}")
        out = {v: self.pipeline(subsample(to_uint8_bag(x), self.max_instances, training=False)) for v, x in item.items()}
        return out if views != [""] else out[""]


def preprocess(model: nn.Module, item: Any):
    """One input prepared for ``model`` (see :class:`Preprocessor`)."""
    return Preprocessor(model)(item)


class _InputFiles(Dataset):
    """Files (or bags) to predict, prepared in loader workers; an unreadable one yields its error
    instead of stopping the others: items are ``(index, prepared input or None, error or None)``."""

    def __init__(self, paths: Sequence[str], prepare: Preprocessor) -> None:
        self.paths, self.prepare = list(paths), prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, self.prepare(self.paths[i]), None
        except DataError as e:
            return i, None, str(e)
        except Exception as e:  # noqa: BLE001 - a transform failing on an odd image is a bad image too
            return i, None, f"{input_name(self.paths[i])['image']}: {e}"


def _collate_inputs(batch: list) -> tuple[list[int], torch.Tensor | list, list[str]]:
    """``(indices, inputs, errors)`` of a batch of :class:`_InputFiles` items. Images of one size are
    stacked in the worker: one shared-memory tensor crosses to the main process instead of one per
    image. Bags, images of different sizes and unreadable files stay lists."""
    good = [(i, x) for i, x, err in batch if x is not None]
    inputs = [x for _, x in good]
    if inputs and all(isinstance(x, torch.Tensor) and x.dim() == 3 for x in inputs) and len({x.shape for x in inputs}) == 1:
        inputs = torch.stack(inputs)
    return [i for i, _ in good], inputs, [err for _, _, err in batch if err is not None]


def predict_files(
    model: nn.Module,
    paths: Sequence[str],
    thresholds: torch.Tensor,
    topk: int | None = None,
    batch_size: int = 32,
    workers: int | str = "auto",
    progress: bool | None = None,
) -> tuple[list[dict], list[str]]:
    """Predict every file of ``paths``, decoding in ``workers`` loader processes (``auto``: chosen for
    the model's device as for ``num_workers: auto``, see :func:`mlcls.datasets.builder.auto_num_workers`).

    Returns:
        ``({"image": path, "labels": [...], "scores": {...}}`` per readable file in input order,
        one message per skipped unreadable file).
    """
    prepare = Preprocessor(model, batch_normalize=True)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    workers = resolve_num_workers(workers, device)
    loader = DataLoader(_InputFiles(paths, prepare), batch_size=batch_size, num_workers=workers, collate_fn=_collate_inputs)
    results, bad = [], []
    unit = sample_unit(prepare.views is not None, prepare.views)
    with tqdm(total=len(paths), disable=None if progress is None else not progress, unit=unit) as bar:
        for indices, inputs, errors in loader:
            for err in errors:
                bad.append(err)
                logger.warning("skipped: %s", err)
            if indices:
                probs = predict_probs(model, inputs, prepare.batch_transform)
                preds = decode(probs, model.info.classes, thresholds, topk)
                results += [{**input_name(paths[i]), **pred} for i, pred in zip(indices, preds)]
            bar.update(len(indices) + len(errors))
    return results, bad


def input_name(item) -> dict:
    """How a result row names its input: ``{"image": path}``, or for an :class:`Exam`
    ``{"image": exam name, "files": {view: file}}`` (real files, never a ``{view}`` template)."""
    if isinstance(item, Exam):
        return {"image": item.name, "files": dict(item)}
    return {"image": str(item)}


def write_results(results: list[dict], classes: list[str], out: Path) -> None:
    """``.csv`` (image, labels, score_<class>...) or ``.jsonl`` (one JSON per image), written
    atomically. File names that are not valid UTF-8 (possible on Linux) are written back byte for
    byte (surrogateescape), never dropped."""
    with atomic_open(out, newline="", errors="surrogateescape") as f:
        if out.suffix.lower() == ".csv":
            w = csv.writer(f)
            views = list(results[0].get("files", {})) if results else []
            evidence = bool(results) and "evidence" in results[0]
            w.writerow(
                ["image", *(f"file_{v}" for v in views), "labels", *(f"score_{c}" for c in classes)]
                + [f"evidence_{c}" for c in classes if evidence]  # view:slice that carried the class's score
            )
            for r in results:
                files = [r["files"][v] for v in views]
                where = [r["evidence"]["per_class"][c] for c in classes] if evidence else []
                w.writerow(
                    [r["image"], *files, " ".join(r["labels"]), *(f"{r['scores'][c]:.6f}" for c in classes)]
                    + [f"{e['view']}:{e['slice']}" if e["view"] else str(e["slice"]) for e in where]
                )
        else:
            for r in results:
                f.write(json.dumps(r) + "\n")


def to_uint8_bag(item: Any) -> torch.Tensor:
    """A bag (see :func:`preprocess`) -> uint8 [S, 3, H, W]."""
    if isinstance(item, (str, os.PathLike)):
        path = str(item)
        if not (os.path.exists(path) or "|" in path):
            raise DataError(f"input not found: {path}")
        try:
            return load_bag(path)
        except FileNotFoundError as e:
            raise DataError(f"input not found: {e.filename}") from None
    if isinstance(item, np.ndarray):
        return volume_to_uint8(item, f"array of shape {item.shape}")
    if isinstance(item, torch.Tensor) and item.dtype == torch.uint8 and item.dim() == 4 and item.shape[1] == 3:
        return item
    raise DataError(
        f"unsupported bag input {type(item).__name__}: give a volume path or array, a folder, 'a|b' paths or uint8 [S, 3, H, W]"
    )


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class Exam(dict):
    """One sample of a multi-view model as ``{view: file}``, with the ``name`` its result row carries
    (``valid/0000`` for ``valid/sagittal/0000.npy``, ``valid/coronal/0000.npy``, ...)."""

    def __init__(self, name: str, files: dict[str, str]) -> None:
        super().__init__(files)
        self.name = name


def _exams_in(folder: Path, views: list[str]) -> list[Exam] | None:
    """The exams of ``folder`` when it is laid out by view, else None:

    * ``folder/<view>/<exam>.npy`` (the MRNet release: a split folder such as ``valid/``), or
    * ``folder/<exam>/<view>.npy`` (one folder per exam; ``folder`` itself when it holds the views).

    Every view of the model must be there; an exam missing one (also an exam that only another
    view's folder, or only another view's file, holds) is listed with the missing file, which is
    then reported as skipped (not silently predicted from the other views, nor dropped).
    """

    def volumes(d: Path) -> dict[str, Path]:
        return {f.stem: f for f in sorted(d.iterdir()) if f.is_file() and f.suffix.lower() in VOLUME_EXTENSIONS}

    if all((folder / v).is_dir() for v in views):  # by view, then exam
        per_view = {v: volumes(folder / v) for v in views}
        # every exam of the folder, also those only another view's folder holds: reported as missing this view, not dropped
        others = [volumes(d) for d in sorted(folder.iterdir()) if d.is_dir() and d.name not in views]
        names = sorted(set().union(*per_view.values(), *others))
        return [
            Exam(str(folder / n), {v: str(per_view[v].get(n, folder / v / f"{n}{VOLUME_EXTENSIONS[0]}")) for v in views}) for n in names
        ]

    def exam(d: Path, inside: bool) -> Exam | None:
        files = volumes(d)
        # an exam folder inside holding only other views is an exam missing the model's: reported, not dropped
        if not any(v in files for v in views) and not (inside and files):
            return None
        return Exam(str(d), {v: str(files.get(v, d / f"{v}{VOLUME_EXTENSIONS[0]}")) for v in views})

    one = exam(folder, inside=False)
    if one is not None:
        return [one]
    found = [e for e in (exam(d, inside=True) for d in sorted(folder.iterdir()) if d.is_dir()) if e is not None]
    return found or None


def collect_inputs(inputs: Sequence[str | os.PathLike], bags: bool = False, views: Sequence[str] | None = None) -> list:
    """Files as given; folders searched recursively for image extensions (``bags``: for volumes,
    ``.npy``/``.npz``; a folder without volumes is itself one bag of images); ``.txt``/``.lst``
    files read as one path per line (relative to the list file; ``#`` comments allowed).

    With the named ``views`` of a multi-view or single-view exam model, a folder laid out by view
    (``split/<view>/<exam>.npy`` as MRNet ships it, or ``<exam>/<view>.npy``) gives one
    :class:`Exam` per exam holding the model's views only; a folder of split folders is searched
    for them. Another folder is, for a single-view model, searched for volumes as for any bag
    model, and for a multi-view model an error that says what was expected.
    """
    named = [v for v in views or [] if v]
    found: list = []
    for item in inputs:
        p = Path(item)
        exams = None
        if p.is_dir() and named:
            exams = _exams_in(p, named)
            if exams is None:  # a release root: its split folders
                exams = [e for d in sorted(p.iterdir()) if d.is_dir() for e in (_exams_in(d, named) or [])]
            if not exams and len(named) > 1:
                raise DataError(
                    f"{p}: no exams with the views {named} found; expected <view>/<exam>.npy (MRNet's layout) or "
                    f"<exam>/<view>.npy inside it"
                )
        if exams:
            found += exams
        elif p.is_dir() and bags:  # (a single-view model: a plain folder of volumes holds exams of its view)
            volumes = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VOLUME_EXTENSIONS)
            found += volumes or [str(p)]
        elif p.is_dir():
            found += sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.suffix.lower() in (".txt", ".lst") and p.is_file():
            for line in read_text_lines(p):
                line = line.split("#", 1)[0].strip()
                if line:
                    found.append(str(p.parent / line) if not os.path.isabs(line) else line)
        elif p.exists():
            found.append(str(p))
        else:
            raise DataError(f"input not found: {p}")
    return found
