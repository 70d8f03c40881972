"""From a config dict to ready objects: datasets, loaders, model, optimizer, trainer."""

from __future__ import annotations

import copy
import difflib
import logging
import os
import sys
from pathlib import Path

import torch

import mlcls.datasets  # noqa: F401 - the imports register every built-in component
import mlcls.engine  # noqa: F401
import mlcls.evaluation  # noqa: F401
import mlcls.losses  # noqa: F401
import mlcls.models  # noqa: F401
from mlcls.config import apply_overrides, check_untrusted_config, import_custom_modules, load_config
from mlcls.errors import BuildError, CheckpointError, ConfigError
from mlcls.models.info import ModelInfo
from mlcls.utils.checkpoint import eval_state_dict, load_checkpoint, load_model_state

logger = logging.getLogger("mlcls")

# Top-level keys a config may use (a typo here would otherwise be silently ignored).
KNOWN_KEYS = {
    "model", "train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator", "test_evaluator",
    "optimizer", "param_scheduler", "train_cfg", "default_hooks", "custom_hooks", "work_dir", "seed",
    "deterministic", "device", "custom_imports", "load_from", "ema", "auto_scale_lr", "sync_bn",
    "find_unused_parameters", "dist_backend", "test_cfg", "max_image_pixels",
}  # fmt: skip


def check_top_level(cfg: dict, source: str = "config") -> None:
    for key in cfg:
        if key not in KNOWN_KEYS and not key.startswith("_"):  # "_name" keys hold YAML anchors
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown top-level key '{key}'{hint} (see docs/config.md)")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# (key path, test, what is allowed): the framework's own keys, checked before any work
_CHECKS = [
    ("optimizer.lr", lambda v: _is_num(v) and v > 0, "a positive number"),
    ("train_cfg.max_epochs", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train_cfg.val_interval", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train_cfg.accumulate", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train_cfg.grad_clip", lambda v: v is None or (_is_num(v) and v > 0), "null or a positive number"),
    ("train_cfg.skip_nonfinite", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    ("train_cfg.amp", lambda v: isinstance(v, bool), "true or false"),
    ("seed", lambda v: _is_int(v), "an integer"),
    ("max_image_pixels", lambda v: v is None or (_is_int(v) and v >= 0), "null or 0 (no limit) or a number of pixels"),
    *[
        (f"{split}_dataloader.{key}", test, allowed)
        for split in ("train", "val", "test")
        for key, test, allowed in (
            ("batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
            ("num_workers", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
        )
    ],
    *[
        (
            f"{ev}.thr",
            lambda v: (_is_num(v) and 0 <= v <= 1) or (isinstance(v, list) and v and all(_is_num(x) and 0 <= x <= 1 for x in v)),
            "a number in [0, 1] or a per-class list of them",
        )
        for ev in ("val_evaluator", "test_evaluator")
    ],  # fmt: skip
    *[
        (f"{ev}.topk", lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1")
        for ev in ("val_evaluator", "test_evaluator")
    ],
]


def validate_config(cfg: dict, source: str = "config") -> None:
    """Check the types and ranges of the framework's own keys: one line naming the key, the value
    and what is allowed, before anything is built (not a traceback minutes into training)."""
    from mlcls.datasets.builder import check_loader_keys

    for split in ("train", "val", "test"):
        section = cfg.get(f"{split}_dataloader")
        if isinstance(section, dict):
            check_loader_keys(section, f"{source}: {split}_dataloader")
    for path, test, allowed in _CHECKS:
        node, found = cfg, True
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                found = False
                break
            node = node[part]
        if found and not test(node):
            raise ConfigError(f"{source}: {path} must be {allowed}, got {node!r} ({type(node).__name__})")


def prepare_config(path: str | os.PathLike, options: list[str] | None = None, work_dir: str | None = None, seed: int | None = None) -> dict:
    """Load a config file, apply ``--cfg-options``, check it, import ``custom_imports`` and fill defaults."""
    cfg = load_config(path)
    cfg = apply_overrides(cfg, options)
    check_top_level(cfg, str(path))
    validate_config(cfg, str(path))
    if work_dir is not None:
        cfg["work_dir"] = work_dir
    cfg.setdefault("work_dir", str(Path("work_dirs") / Path(path).stem))
    if seed is not None:
        cfg["seed"] = seed
    cfg.setdefault("seed", 0)
    if "max_image_pixels" in cfg:
        from mlcls.datasets.base import set_max_image_pixels

        set_max_image_pixels(cfg["max_image_pixels"])
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


def build_loader(cfg: dict, split: str, purpose: str, seed: int):
    """The ``{split}_dataloader`` section as a DataLoader for a purpose (``None`` without the section).

    Args:
        purpose: ``train``: the section as configured (its sampler, shuffling, per-batch seeded
            augmentation). ``eval``: every image exactly once, in dataset order (a sequential
            :class:`DefaultSampler`, each rank its share), each sample carrying its dataset index
            so scores are attributed to their images whatever the split; a training split is
            read without ``ClassBalancedDataset`` repeats and with the test pipeline, the
            preprocessing inference applies.
    """
    if purpose not in ("train", "eval"):
        raise ValueError(f"purpose must be 'train' or 'eval', got '{purpose}'")
    section = cfg.get(f"{split}_dataloader")
    if not section:
        return None
    try:
        return _build_loader(cfg, section, split, purpose, seed)
    except BuildError as e:  # a typo in the dataset/sampler/pipeline: say which section it is in
        raise BuildError(f"{split}_dataloader: {e}") from None


def _build_loader(cfg: dict, section: dict, split: str, purpose: str, seed: int):
    from mlcls.datasets import build_dataloader

    if purpose == "train":
        return build_dataloader(section, seed=seed, shuffle=True, seeded_batches=True)
    section = {k: v for k, v in section.items() if k not in ("sampler", "drop_last")}
    from mlcls.datasets.class_balanced import unwrapped_dataset_cfg

    dataset_cfg = unwrapped_dataset_cfg(require(section, "dataset", f"{split}_dataloader"))
    if split == "train":
        from mlcls.apis.inference import test_pipeline_cfg

        dataset_cfg["pipeline"] = test_pipeline_cfg(cfg)
    section["dataset"] = dataset_cfg
    section["sampler"] = {"type": "DefaultSampler", "shuffle": False}
    from mlcls.datasets import build_dataset

    dataset = build_dataset(dataset_cfg)
    from torch.utils.data import IterableDataset

    if isinstance(dataset, IterableDataset):  # a shard stream deals its shards to the ranks itself
        section.pop("sampler")
    if hasattr(dataset, "return_index"):
        dataset.return_index = True
        dataset.training = False  # long bags: evenly spaced instances, not a random subset
    else:
        from mlcls.datasets.base import IndexedDataset

        dataset = IndexedDataset(dataset)
    return build_dataloader(section, seed=seed, dataset=dataset)


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


def fill_data_derived(user: dict, stored: dict) -> dict:
    """``user``'s model config with the values training derived from the labels taken from ``stored``.

    Where both configs describe the same component (same ``type``), an argument that ``user``
    leaves out, sets to null or to a placeholder string (``auto``, ``effective``) is filled with
    ``stored``'s plain value (a list): a config file written for training then evaluates the
    checkpoint it produced, e.g. a powerset head gets its combination table back.
    """
    out = dict(user)
    for key, s in stored.items():
        u = user.get(key)
        if isinstance(u, dict) and isinstance(s, dict):
            if u.get("type") == s.get("type"):
                out[key] = fill_data_derived(u, s)
        elif key not in user or u is None or isinstance(u, str):
            if isinstance(s, list) and "type" in user and "type" in stored and user["type"] == stored["type"]:
                out[key] = copy.deepcopy(s)
    return out


def stored_custom_imports(stored: dict | None) -> list[str]:
    """The module names a stored config lists under ``custom_imports`` (either accepted form)."""
    spec = (stored or {}).get("custom_imports") or []
    if isinstance(spec, dict):
        spec = spec.get("imports") or []
    return [spec] if isinstance(spec, str) else [str(m) for m in spec]


def import_checkpoint_modules(cfg: dict, checkpoint: str | os.PathLike) -> None:
    """Import the ``custom_imports`` of a checkpoint's config (only with ``trust_config``)."""
    try:
        import_custom_modules(cfg)
    except ConfigError as e:
        raise ConfigError(f"{checkpoint} was trained with custom components: {e}; make that module importable (PYTHONPATH)") from None


def build_from_checkpoint(
    checkpoint: str | os.PathLike,
    cfg: dict | None = None,
    device: str | None = None,
    cfg_options: list[str] | None = None,
    trust_config: bool = False,
):
    """The one way from a checkpoint to a ready model (test, inference, export, visualisation).

    The config stored in a checkpoint is data, not the user's own config: without
    ``trust_config`` it may not import modules (``custom_imports``) or name files that are opened
    through another program (``pipe:`` shard URLs, see :func:`mlcls.config.unsafe_entries`).

    Args:
        checkpoint: any checkpoint ``tools/train.py`` writes.
        cfg: the user's config to build from instead of the one stored in the checkpoint; values
            that training derived from the labels come from the stored config (:func:`fill_data_derived`).
        device: ``cpu``, ``cuda``, ``auto`` (default: the config's device).
        cfg_options: ``key=value`` overrides applied to the stored config (when ``cfg`` is None).
        trust_config: let the stored config import its ``custom_imports`` and open program URLs.

    Returns:
        ``(model, checkpoint dict, config)``. The model is in eval mode with the evaluation
        weights (EMA when validation scored EMA) and carries ``model.info``, a
        :class:`~mlcls.models.info.ModelInfo` (classes; thresholds: tuned ones stored in the
        checkpoint, else the evaluator's; their source; the config).
    """
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.get("meta", {})
    stored = meta.get("config")
    if stored is not None and not isinstance(stored, dict):
        raise CheckpointError(f"{checkpoint}: its stored config is a {type(stored).__name__}, not a mapping")
    if cfg is None:
        if stored is None:
            raise CheckpointError(f"{checkpoint}: holds no config; pass the config file as well")
        cfg = apply_overrides(stored, cfg_options)
        check_untrusted_config(cfg, str(checkpoint), trust_config)
    elif stored is not None and isinstance(cfg.get("model"), dict) and isinstance(stored.get("model"), dict):
        cfg = {**cfg, "model": fill_data_derived(cfg["model"], stored["model"])}
    if trust_config and stored is not None:
        import_checkpoint_modules(stored, checkpoint)
    classes = meta.get("classes")
    if not classes:
        raise CheckpointError(f"{checkpoint}: holds no class names")
    try:
        model = build_model_for(cfg, classes)
    except BuildError as e:
        not_imported = [m for m in stored_custom_imports(stored) if m not in sys.modules]
        if not not_imported:
            raise
        raise ConfigError(
            f"{e}; {checkpoint} was trained with custom_imports {not_imported}, which mlcls does not import on a "
            f"checkpoint's word: list them under custom_imports in your config, or pass --trust-config (trust_config=True)"
        ) from None
    load_model_state(model, eval_state_dict(ckpt), checkpoint)
    model.to(resolve_device(device or cfg.get("device"))).eval()
    thresholds = ckpt.get("thresholds")
    if thresholds and len(thresholds.get("values", [])) == len(classes):
        values = torch.tensor(thresholds["values"], dtype=torch.float32)
        source = f"tuned on {thresholds.get('split', '?')} ({thresholds.get('objective', '?')})"
    else:
        thr = (cfg.get("test_evaluator") or cfg.get("val_evaluator") or {}).get("thr", 0.5)
        values = torch.as_tensor(thr, dtype=torch.float32).expand(len(classes)).clone()
        source = "config evaluator" if thr != 0.5 else "default 0.5"
    model.info = ModelInfo(list(classes), values, source, cfg)
    return model, ckpt, cfg
