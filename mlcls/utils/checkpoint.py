"""Every read and write of weights and checkpoints: the one room for them.

Reading: :func:`read_file` is the only call of ``torch.load`` (always ``weights_only=True``, with the
CRC check of torch's zip format, one-line errors) and of safetensors. On top of it:
:func:`load_checkpoint` (an mlcls checkpoint, for resume/test/inference), :func:`checkpoint_meta`
(its metadata without reading tensor data), :func:`load_state_dict_file` (the weights of any
supported file: mlcls, torchvision, timm, mmpretrain/mmcls), :func:`read_weights` (a backbone's
``pretrained:``, local file or torchvision weights name), :func:`load_backbone_weights` (foreign key
names mapped, counts logged) and :func:`load_model_weights` (``load_from:``). Nothing is silent: the
log says how many tensors were loaded and which were missing or unused, and fewer than half
matching is an error.

Writing: atomic saves (a crash leaves the previous file or the new one, never a truncated one)
and hard-linked ``latest.pth``/``best.pth``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
from safetensors.torch import load_file as _load_safetensors
from torchvision.models import get_model_weights

from mlcls.errors import CheckpointError
from mlcls.utils.fileio import atomic_open, atomic_path

logger = logging.getLogger("mlcls")

CKPT_FORMAT = "mlcls-checkpoint-v1"
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the previous file or the new one, never a truncated one.
    """
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def link_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Make ``dst`` name the same file as ``src``, atomically replacing any earlier ``dst``.

    A hard link costs no disk (``latest.pth``/``best.pth`` next to ``epoch_N.pth`` would otherwise
    triple a run's footprint); where the filesystem has no hard links the file is copied. Every
    checkpoint write replaces the name with a new file, so the linked names never change together.
    """
    with atomic_path(dst) as tmp:
        tmp.unlink()  # os.link needs a free name; atomic_path reserved a unique one
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Save an mlcls checkpoint dict (tensors and plain types only) atomically."""
    atomic_save({"format": CKPT_FORMAT, **state}, path)


def save_checkpoint_keeping_links(state: dict, path: str | os.PathLike) -> list[Path]:
    """Rewrite checkpoint ``path`` atomically, and keep the names hard-linked to it naming it.

    ``best.pth`` and ``latest.pth`` are hard links to an ``epoch_N.pth`` file; an atomic rewrite
    of one name gives it a new file, so the others are re-linked to it: all names that were the
    same file still are, with the new contents. Returns those other names.
    """
    path = Path(path)
    st = path.stat()
    twins = []
    if st.st_nlink > 1:
        for other in path.parent.glob("*.pth"):
            if other.name != path.name and (o := other.stat()).st_ino == st.st_ino and o.st_dev == st.st_dev:
                twins.append(other)
    save_checkpoint(state, path)
    for other in twins:
        link_checkpoint(path, other)
    return twins


def read_file(path: str | os.PathLike, what: str = "weights", map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """The contents of a weights file: ``torch.load(weights_only=True)`` after the CRC check, or safetensors.

    Args:
        what: the file's role in error messages (``checkpoint``, ``weights``).
        mmap: map tensor data instead of reading it (metadata only; the CRC check is skipped).

    Raises:
        CheckpointError: the file is missing, damaged, unreadable, or holds objects other than
            tensors and plain data (the message names the object).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        if path.suffix == ".safetensors":
            # the format checks its header and sizes (a truncated file is an error) but stores no checksum
            logger.info("%s: a safetensors file has no checksum: its tensor data is read without an integrity check", path)
            return _load_safetensors(str(path), device=str(map_location))
        if not mmap and not verify_integrity(path):
            logger.info("%s: a legacy (non-zip) torch file has no checksum: read without an integrity check", path)
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - pickle, zip, EOF, safetensors errors: reported the same way
        raise CheckpointError(load_error(path, e, what)) from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """Load an mlcls checkpoint (see :func:`read_file`).

    Raises:
        CheckpointError: as :func:`read_file`, or the file is not an mlcls checkpoint.
    """
    ckpt = read_file(path, "checkpoint", map_location, mmap)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointError(
            f"{path} is not an mlcls checkpoint (no 'format: {CKPT_FORMAT}' entry); "
            "to start from plain weights use the backbone's 'pretrained' option instead"
        )
    return ckpt


def checkpoint_meta(path: str | os.PathLike) -> dict:
    """An mlcls checkpoint's ``meta`` (classes, config, epoch) without reading its tensor data."""
    return load_checkpoint(path, mmap=True).get("meta") or {}


def verify_integrity(path: Path) -> bool:
    """Check the CRC-32 that torch's zip format stores for every entry (about 1 GB/s).

    torch.load itself does not: a flipped byte inside tensor data would load as silently wrong
    weights. Files that are not zip archives (legacy torch files) have no checksum to check:
    False, and torch.load's own errors apply.

    Raises:
        CheckpointError: an entry's checksum does not match.
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError):
        return False
    if bad is not None:
        raise CheckpointError(f"{path} is damaged: the checksum of its entry '{bad}' does not match (bit rot or an incomplete copy)")
    return True


def download_weights(url: str, what: str) -> Path:
    """The local copy of a published weights file: torch hub's cache (``$TORCH_HOME/hub/checkpoints``),
    downloaded once. A file named ``<name>-<sha256 prefix>.<ext>`` (torchvision's and timm's
    convention) is checked against that prefix before it is kept; the caller then reads it with
    :func:`read_file` like any local file (``weights_only``, CRC), so a download is never unpickled.

    Raises:
        CheckpointError: the download failed (offline?) or its hash does not match, naming ``what`` and the URL.
    """
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    dst = cache / os.path.basename(url.split("?")[0])
    if dst.is_file():
        return dst
    match = torch.hub.HASH_REGEX.search(dst.name)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=match.group(1) if match else None, progress=False)
    except Exception as e:  # noqa: BLE001 - URLError, OSError, the hash check's RuntimeError
        raise CheckpointError(
            f"pretrained: could not download {what} from {url} ({str(e).splitlines()[0] if str(e) else type(e).__name__}). "
            f"Offline? Download it elsewhere and set 'pretrained: /path/to/{dst.name}', or 'pretrained: null' to train from scratch"
        ) from None
    if not match:
        logger.info("%s: downloaded without a published hash to check it against", dst)
    return dst


def load_error(path: Path, error: Exception, what: str) -> str:
    """One line for a file ``torch.load(weights_only=True)`` refused or could not read.

    For a blocked object it names the object and says why it was blocked, instead of torch's
    advice to switch the protection off.
    """
    text = str(error)
    # torch's wording differs by version: "unsupported GLOBAL x", "Unsupported global: GLOBAL x", "Unsupported class x"
    blocked = re.search(r"unsupported (?:global:? )?(?:GLOBAL|class) ([\w.]+)", text, flags=re.IGNORECASE)
    if blocked:
        return (
            f"refusing to load {path}: it contains a pickled '{blocked.group(1)}' object, which the safe loader blocks because "
            "unpickling it could run arbitrary code; mlcls reads only tensors and plain data. Use a checkpoint from a source "
            "you trust, or re-save its state_dict (tensors only) where it was made"
        )
    if "Weights only load failed" in text:  # torch's detail, without its advice to switch the check off
        detail = [ln for ln in text.splitlines()[1:] if ln.strip() and "weights_only" not in ln]
        return f"cannot load {what} {path}: not a file of tensors and plain data ({detail[0].strip() if detail else 'unreadable'})"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"cannot load {what} {path}: {first}"


def eval_state_dict(ckpt: dict) -> dict:
    """An mlcls checkpoint's evaluation weights: EMA when validation scored EMA, else the raw ones."""
    if ckpt.get("meta", {}).get("eval_weights") == "ema" and "ema" in ckpt:
        return ckpt["ema"]["state_dict"]
    return ckpt["state_dict"]


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the weights of any file: an mlcls checkpoint (its evaluation weights), or a state dict,
    possibly nested under 'state_dict' or 'model' (torchvision, timm, mmpretrain/mmcls files)."""
    sd = read_file(path)
    if isinstance(sd, dict) and sd.get("format") == CKPT_FORMAT:
        return eval_state_dict(sd)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


def state_mismatch(model_state: dict, state: dict) -> str | None:
    """The first difference between a model's state dict and ``state`` (shape, then names), or None."""
    for k, v in state.items():
        if k in model_state and model_state[k].shape != v.shape:
            return f"tensor '{k}' is {list(v.shape)} in the checkpoint but {list(model_state[k].shape)} in the model built from the config"
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    if missing or unexpected:
        first = (
            f"the model has '{missing[0]}', which the checkpoint lacks"
            if missing
            else f"the checkpoint has '{unexpected[0]}', which the model lacks"
        )
        return f"{first} ({len(missing) + len(unexpected)} mismatching names)"
    return None


def load_model_state(model: torch.nn.Module, state: dict, checkpoint: str | os.PathLike) -> None:
    """Load ``state`` into ``model`` exactly; a mismatch is one line naming the first differing tensor."""
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(
            f"{checkpoint}: weights do not fit the model built from the config: {problem} (another architecture or class count?)"
        )
    model.load_state_dict(state)


# -- weights into models: pretrained backbones and load_from ------------------------------------
KeyMap = Callable[[str], "str | None"]  # source key -> own key (None: drop, e.g. a classifier)


def identity(key: str) -> str:
    return key


def read_weights(pretrained: str, tv_builder=None) -> tuple[dict[str, torch.Tensor], str]:
    """``(backbone state dict, description)`` for a local file, or a torchvision weights name (downloaded).

    Of a whole-model file (mlcls, mmpretrain) only the ``backbone.*`` tensors are returned.

    Args:
        pretrained: a path, or a name such as ``IMAGENET1K_V1`` / ``ResNet50_Weights.IMAGENET1K_V2``.
        tv_builder: the torchvision model builder that resolves a weights name (None: files only).
    """
    if tv_builder is None or os.path.sep in pretrained or pretrained.endswith(WEIGHT_SUFFIXES) or os.path.exists(pretrained):
        sd = load_state_dict_file(pretrained)
        backbone, rest = split_model_keys(sd)
        if rest:
            logger.info(
                "pretrained %s: a whole-model file; its %d non-backbone tensors (%s) are not used",
                pretrained,
                len(rest),
                _short(list(rest)),
            )
        return backbone, pretrained
    enum = get_model_weights(tv_builder)
    name = pretrained.split(".")[-1]
    try:
        weights = enum[name]
    except KeyError:
        raise CheckpointError(
            f"pretrained: '{pretrained}' is neither an existing file nor a weights name of "
            f"{tv_builder.__name__} (choices: {', '.join(w.name for w in enum)})"
        ) from None
    # the same reader as a local file (weights_only, CRC), after torch hub's hash check of the download
    path = download_weights(weights.url, f"torchvision weights {enum.__name__}.{name}")
    return load_state_dict_file(path), f"{enum.__name__}.{name} ({path})"


def split_model_keys(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A whole-model state dict -> (backbone tensors without the prefix, the other tensors).

    A ``module.`` prefix (a DDP-wrapped save) is removed first. A file without ``backbone.`` keys
    is taken as backbone weights alone (torchvision, timm).
    """
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    backbone = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    if not backbone:
        return dict(sd), {}
    return backbone, {k: v for k, v in sd.items() if not k.startswith("backbone.")}


def _short(keys: Sequence[str], n: int = 3) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "") if keys else "none"


def _counted(keys) -> list[str]:
    # BatchNorm's step counters carry no learned value and are absent from many published files
    return [k for k in keys if not k.endswith("num_batches_tracked")]


def load_backbone_weights(backbone: nn.Module, sd: dict[str, torch.Tensor], source: str, min_fraction: float = 0.5) -> int:
    """Load backbone weights given under any supported naming; returns the number loaded.

    Raises:
        CheckpointError: a tensor's shape differs (named), or fewer than ``min_fraction`` of the
            backbone's tensors are found in ``sd`` (names the first expected and found keys).
    """
    maps: list[KeyMap] = list(backbone.pretrained_key_maps(list(sd)))  # declared by every backbone (models.protocols.Backbone)
    own = backbone.state_dict()
    best: tuple[int, dict, list] | None = None
    for key_map in maps:
        mapped, unused = {}, []
        for k, v in sd.items():
            nk = key_map(k)
            if nk is None:
                continue  # e.g. an ImageNet classifier: not part of a backbone
            if nk in own:
                mapped[nk] = v
            else:
                unused.append(k)
        if best is None or len(mapped) > len(best[1]):
            best = (len(mapped), mapped, unused)
    _, mapped, unused = best
    for k, v in mapped.items():
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"{source}: tensor '{k}' has shape {list(v.shape)} in the file but {list(own[k].shape)} in {type(backbone).__name__} "
                "(a different depth or width?)"
            )
    expected, loaded = _counted(own), _counted(mapped)
    if len(loaded) < min_fraction * len(expected):
        raise CheckpointError(
            f"{source}: only {len(loaded)} of the {len(expected)} tensors of {type(backbone).__name__} are in the file, so it "
            f"does not hold weights for this backbone (expected keys like '{expected[0]}', found keys like "
            f"'{next(iter(sd), '<none>')}')"
        )
    backbone.load_state_dict(mapped, strict=False)
    missing = [k for k in expected if k not in mapped]
    msg = "loaded %d/%d backbone tensors from %s (missing: %s; unused: %s)"
    (logger.warning if missing else logger.info)(msg, len(loaded), len(expected), source, _short(missing), _short(unused))
    return len(loaded)


def load_model_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """``load_from``: every matching tensor of a whole model from any supported file.

    The backbone goes through :func:`load_backbone_weights` (so foreign names are mapped); neck
    and head tensors load by name when their shapes agree. A head tensor whose shape differs (a
    different number of classes) is skipped with a warning naming it; any other mismatch is an error.
    """
    source = str(path)
    backbone_sd, rest = split_model_keys(load_state_dict_file(path))
    load_backbone_weights(model.backbone, backbone_sd, source)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    take, skipped = {}, []
    for k, v in rest.items():
        if k not in own:
            continue
        if v.shape == own[k].shape:
            take[k] = v
        elif k.startswith("head."):
            skipped.append(f"{k} {list(v.shape)} in the file, {list(own[k].shape)} here")
        else:
            raise CheckpointError(f"{source}: tensor '{k}' has shape {list(v.shape)} in the file but {list(own[k].shape)} in the model")
    model.load_state_dict(take, strict=False)
    if skipped:
        logger.warning("load_from %s: head tensors skipped, their shapes differ (another class count?): %s", source, "; ".join(skipped))
    logger.info("load_from %s: %d/%d head/neck tensors loaded", source, len(_counted(take)), len(_counted(own)))
