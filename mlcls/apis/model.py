"""From a config or a checkpoint to a ready model: the one way every command builds one."""

from __future__ import annotations

import copy
import os
import sys

from mlcls.apis.config import apply_reader_limits, resolve_device
from mlcls.config import apply_overrides, check_untrusted_config, import_custom_modules
from mlcls.datasets.labels import first_difference
from mlcls.datasets.transforms import pipeline_min_side
from mlcls.errors import BuildError, CheckpointError, ConfigError
from mlcls.evaluation.thresholds import evaluator_section, resolve_thresholds
from mlcls.models import build_model
from mlcls.models.info import ModelInfo
from mlcls.models.protocols import Classifier, check_part
from mlcls.schema import require
from mlcls.utils.checkpoint import eval_state_dict, load_checkpoint, load_model_state


def check_same_classes(a: list[str], b: list[str], what_a: str, what_b: str) -> None:
    diff = first_difference(a, b)
    if diff is not None:
        i, x, y = diff
        raise ConfigError(
            f"class lists differ between {what_a} ({len(a)}) and {what_b} ({len(b)}); first difference at index {i}: '{x}' vs '{y}'"
        )


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
    apply_reader_limits(cfg)  # e.g. the uint16 rule the model was trained with
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
    thr = resolve_thresholds(classes, stored=ckpt.get("thresholds"), evaluator=evaluator_section(cfg), checkpoint=checkpoint)
    model.info = ModelInfo(list(classes), thr.values, thr.source, cfg)
    return model, ckpt, cfg


def build_model_for(cfg: dict, classes: list[str], label_stats: dict | None = None):
    """Build ``cfg['model']`` for ``classes`` and check the head agrees with the dataset.

    ``label_stats`` (the training split's counts) feed ``auto`` loss weights; without them (test,
    inference) those weights are restored from the checkpoint.
    """
    model = build_model(require(cfg, "model"), num_classes=len(classes), label_stats=label_stats)
    check_part(model, Classifier, "model")
    if model.num_classes != len(classes):
        raise ConfigError(
            f"model.head.num_classes is {model.num_classes} but the dataset has {len(classes)} classes; "
            "remove num_classes from the head (it is taken from the dataset) or fix the class list"
        )
    # at build time when a pipeline fixes the image size (else the first batch says it)
    for split in ("train", "val", "test"):
        side = pipeline_min_side(((cfg.get(f"{split}_dataloader") or {}).get("dataset") or {}).get("pipeline"))
        if side:
            model.check_input_size(side, f"the images {split}_dataloader.dataset.pipeline puts out")
    return model
