"""From a config file to a checked config dict, and the device it names."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mlcls.config import apply_overrides, import_custom_modules, load_config
from mlcls.datasets.bags import DEFAULT_MAX_VOLUME_BYTES, DEFAULT_MAX_VOLUME_SLICES, set_volume_settings
from mlcls.datasets.image_io import set_max_image_pixels
from mlcls.schema import check_config


def prepare_config(path: str | os.PathLike, options: list[str] | None = None, work_dir: str | None = None, seed: int | None = None) -> dict:
    """Load a config file, apply ``--cfg-options``, check it, import ``custom_imports`` and fill defaults."""
    cfg = load_config(path)
    cfg = apply_overrides(cfg, options)
    check_config(cfg, str(path))
    if work_dir is not None:
        cfg["work_dir"] = work_dir
    cfg.setdefault("work_dir", str(Path("work_dirs") / Path(path).stem))
    if seed is not None:
        cfg["seed"] = seed
    cfg.setdefault("seed", 0)
    apply_reader_limits(cfg)
    import_custom_modules(cfg)
    return cfg


def apply_reader_limits(cfg: dict) -> None:
    """The config's limits and rules for reading images and volumes (``max_image_pixels``,
    ``max_volume_slices``, ``max_volume_bytes``, ``volume_uint16``), set for this process and the
    DataLoader workers it starts; a checkpoint's stored config sets them the same way."""
    if "max_image_pixels" in cfg:
        set_max_image_pixels(cfg["max_image_pixels"])
    # every key set, to its default when absent: one config's limits never stay for the next
    set_volume_settings(
        max_slices=DEFAULT_MAX_VOLUME_SLICES if cfg.get("max_volume_slices") is None else cfg["max_volume_slices"],
        max_bytes=DEFAULT_MAX_VOLUME_BYTES if cfg.get("max_volume_bytes") is None else cfg["max_volume_bytes"],
        uint16=cfg.get("volume_uint16") or "range",
    )


def resolve_device(name: str | None = None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
