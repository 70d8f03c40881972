"""Atomic checkpoint writes and safe (``weights_only``) loading."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from mlcls.errors import CheckpointError
from mlcls.utils.fileio import atomic_open, atomic_path

CKPT_FORMAT = "mlcls-checkpoint-v1"


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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load an mlcls checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: the file is missing, truncated/corrupt, holds non-tensor objects, or is
            not an mlcls checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    verify_integrity(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise CheckpointError(load_error(path, e, "checkpoint")) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointError(
            f"{path} is not an mlcls checkpoint (no 'format: {CKPT_FORMAT}' entry); "
            "to start from plain weights use the backbone's 'pretrained' option instead"
        )
    return ckpt


def verify_integrity(path: Path) -> None:
    """Check the CRC-32 that torch's zip format stores for every entry (about 1 GB/s).

    torch.load itself does not: a flipped byte inside tensor data would load as silently wrong
    weights. Files that are not zip archives are left to torch.load's own errors.
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError):
        return
    if bad is not None:
        raise CheckpointError(f"{path} is damaged: the checksum of its entry '{bad}' does not match (bit rot or an incomplete copy)")


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
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any unreadable file the same way
        raise CheckpointError(load_error(path, e, "weights")) from None
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
