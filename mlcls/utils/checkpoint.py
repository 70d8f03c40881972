"""Atomic checkpoint writes and safe (``weights_only``) loading."""

from __future__ import annotations

import os
import pickle
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
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {msg}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointError(
            f"{path} is not an mlcls checkpoint (no 'format: {CKPT_FORMAT}' entry); "
            "to start from plain weights use the backbone's 'pretrained' option instead"
        )
    return ckpt


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
        raise CheckpointError(f"cannot load weights {path}: {str(e).splitlines()[0]}") from None
    if isinstance(sd, dict) and sd.get("format") == CKPT_FORMAT:
        return eval_state_dict(sd)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd
