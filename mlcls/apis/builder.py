"""From a config dict to ready objects: datasets, loaders, model, optimizer, trainer."""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path

import torch

import mlcls.datasets  # noqa: F401 - the imports register every built-in component
import mlcls.engine  # noqa: F401
import mlcls.evaluation  # noqa: F401
import mlcls.losses  # noqa: F401
import mlcls.models  # noqa: F401
from mlcls.config import apply_overrides, import_custom_modules, load_config
from mlcls.errors import ConfigError

logger = logging.getLogger("mlcls")

# Top-level keys a config may use (a typo here would otherwise be silently ignored).
KNOWN_KEYS = {
    "model", "train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator", "test_evaluator",
    "optimizer", "param_scheduler", "train_cfg", "default_hooks", "custom_hooks", "work_dir", "seed",
    "deterministic", "device", "custom_imports", "load_from", "ema", "auto_scale_lr", "sync_bn",
    "find_unused_parameters", "dist_backend",
}  # fmt: skip


def check_top_level(cfg: dict, source: str = "config") -> None:
    for key in cfg:
        if key not in KNOWN_KEYS and not key.startswith("_"):  # "_name" keys hold YAML anchors
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown top-level key '{key}'{hint} (see docs/config.md)")


def prepare_config(path: str | os.PathLike, options: list[str] | None = None, work_dir: str | None = None, seed: int | None = None) -> dict:
    """Load a config file, apply ``--cfg-options``, import ``custom_imports`` and fill defaults."""
    cfg = load_config(path)
    cfg = apply_overrides(cfg, options)
    check_top_level(cfg, str(path))
    if work_dir is not None:
        cfg["work_dir"] = work_dir
    cfg.setdefault("work_dir", str(Path("work_dirs") / Path(path).stem))
    if seed is not None:
        cfg["seed"] = seed
    cfg.setdefault("seed", 0)
    import_custom_modules(cfg)
    return cfg


def resolve_device(name: str | None = None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def require(cfg: dict, key: str, where: str = "config") -> dict:
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"{where}: missing required key '{key}'")
    return cfg[key]


def build_loader(cfg: dict, split: str, shuffle: bool, seed: int):
    """The ``{split}_dataloader`` section as a DataLoader (``None`` when the section is absent)."""
    from mlcls.datasets import build_dataloader

    section = cfg.get(f"{split}_dataloader")
    if not section:
        return None
    return build_dataloader(section, seed=seed, shuffle=shuffle, seeded_batches=split == "train")


def build_model_for(cfg: dict, classes: list[str], label_stats: dict | None = None):
    """Build ``cfg['model']`` for ``classes`` and check the head agrees with the dataset.

    ``label_stats`` (the training split's counts) feed ``auto`` loss weights; without them (test,
    inference) those weights are restored from the checkpoint.
    """
    from mlcls.models import build_model

    model = build_model(require(cfg, "model"), num_classes=len(classes), label_stats=label_stats)
    if getattr(model, "num_classes", len(classes)) != len(classes):
        raise ConfigError(
            f"model.head.num_classes is {model.num_classes} but the dataset has {len(classes)} classes; "
            "remove num_classes from the head (it is taken from the dataset) or fix the class list"
        )
    return model


def build_evaluator(cfg: dict | None):
    from mlcls.registry import METRICS

    return METRICS.build(cfg or {"type": "MultiLabelMetric"})


def check_same_classes(a: list[str], b: list[str], what_a: str, what_b: str) -> None:
    if list(a) != list(b):
        n = min(len(a), len(b))
        i = next((i for i in range(n) if a[i] != b[i]), n)
        first = f"index {i}: '{a[i] if i < len(a) else '<end>'}' vs '{b[i] if i < len(b) else '<end>'}'"
        raise ConfigError(f"class lists differ between {what_a} ({len(a)}) and {what_b} ({len(b)}); first difference at {first}")
