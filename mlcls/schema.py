"""Every config key the framework itself reads: its type, range and default, in one table.

Components (``{type: Name, ...}``) check their own arguments through the registry; this table
covers the rest: the top-level keys and the sections with a fixed set of keys (``train_cfg``,
``ema``, ``auto_scale_lr``, ``test_cfg``, the ``*_dataloader`` sections). :func:`check_config`
runs it before anything is built, :func:`get` reads a value with its default, and
``tests/test_schema.py`` checks that docs/config.md describes every key listed here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

from mlcls.errors import ConfigError

REQUIRED = object()  # the default of a key that must be given
#: the largest seed: numpy's and scikit-learn's generators (stratified splits) take 0 .. 2^32 - 1
SEED_MAX = 2**32 - 1


def _any(v: Any) -> bool:
    return True


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_at_least(n: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= n), f"an integer >= {n}"


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_mapping(v: Any) -> bool:
    return isinstance(v, dict)


def _is_probability(v: Any) -> bool:
    return _is_num(v) and 0 <= v <= 1


@dataclass(frozen=True)
class Key:
    """One config key: its dotted path, the test its value must pass, that test in words, its default."""

    path: str
    test: Callable[[Any], bool] = _any
    allowed: str = "any value"
    default: Any = None


BOOL = (_is_bool, "true or false")
MAPPING = (_is_mapping, "a mapping")
LIST = (lambda v: isinstance(v, list), "a list")
OPT_LIST = (lambda v: v is None or isinstance(v, list), "null or a list")
SPLITS = ("train", "val", "test")

KEYS: tuple[Key, ...] = (
    Key("model", *MAPPING, default=REQUIRED),
    *(Key(f"{s}_dataloader", *MAPPING) for s in SPLITS),
    *(Key(f"{s}_dataloader.dataset", *MAPPING, default=REQUIRED) for s in SPLITS),
    *(Key(f"{s}_dataloader.batch_size", *_int_at_least(1), default=32) for s in SPLITS),
    *(Key(f"{s}_dataloader.num_workers", lambda v: v == "auto" or (_is_int(v) and v >= 0), "'auto' or an integer >= 0", default="auto")
      for s in SPLITS),
    *(Key(f"{s}_dataloader.sampler", lambda v: v is None or _is_mapping(v), "null or a sampler mapping") for s in SPLITS),
    *(Key(f"{s}_dataloader.pin_memory", lambda v: v is None or _is_bool(v), "null (when CUDA is there), true or false") for s in SPLITS),
    *(Key(f"{s}_dataloader.persistent_workers", *BOOL, default=False) for s in SPLITS),
    *(Key(f"{s}_dataloader.drop_last", *BOOL, default=False) for s in SPLITS),
    *(Key(f"{s}_dataloader.decode_on_device", *BOOL, default=False) for s in SPLITS),
    *(Key(f"{s}_dataloader.prefetch_factor", lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1") for s in SPLITS),
    Key("val_evaluator", *MAPPING, default={"type": "MultiLabelMetric"}),
    Key("test_evaluator", *MAPPING),
    *(
        Key(
            f"{ev}.thr",
            lambda v: _is_probability(v) or (isinstance(v, list) and v and all(_is_probability(x) for x in v)),
            "a number in [0, 1] or a per-class list of them",
            0.5,
        )
        for ev in ("val_evaluator", "test_evaluator")
    ),
    *(Key(f"{ev}.topk", lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1") for ev in ("val_evaluator", "test_evaluator")),
    Key("optimizer", *MAPPING, default=REQUIRED),
    Key("optimizer.lr", lambda v: _is_num(v) and v > 0, "a positive number", REQUIRED),
    Key("param_scheduler", *OPT_LIST),
    Key("train_cfg", *MAPPING, default=REQUIRED),
    Key("train_cfg.max_epochs", *_int_at_least(1), default=REQUIRED),
    Key("train_cfg.val_interval", *_int_at_least(1), default=1),
    Key("train_cfg.amp", *BOOL, default=False),
    Key("train_cfg.accumulate", *_int_at_least(1), default=1),
    Key("train_cfg.grad_clip", lambda v: v is None or (_is_num(v) and v > 0), "null or a positive number"),
    Key("train_cfg.channels_last", *BOOL, default=False),
    Key("train_cfg.skip_nonfinite", *_int_at_least(0), default=0),
    Key("train_cfg.batch_augments", *OPT_LIST),
    Key("test_cfg", *MAPPING),
    Key("test_cfg.tta", lambda v: v is None or isinstance(v, (str, list)), "null, a view name or a list of views"),
    Key("ema", lambda v: v is None or _is_mapping(v), "null or a mapping"),
    Key("ema.decay", lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)", 0.9997),
    Key("ema.warmup", *BOOL, default=False),
    Key("ema.val_weights", lambda v: v in ("ema", "raw", "both"), "'ema', 'raw' or 'both'", "ema"),
    Key("auto_scale_lr", lambda v: v is None or _is_mapping(v), "null or a mapping"),
    Key("auto_scale_lr.enable", *BOOL, default=False),
    Key("auto_scale_lr.base_batch_size", *_int_at_least(1)),
    Key("default_hooks", *MAPPING, default={}),
    Key("custom_hooks", *LIST, default=[]),
    Key("work_dir", lambda v: isinstance(v, str), "a folder path"),
    Key("seed", lambda v: _is_int(v) and 0 <= v <= SEED_MAX, "an integer from 0 to 2^32 - 1", 0),
    Key("deterministic", *BOOL, default=False),
    Key("device", lambda v: v is None or isinstance(v, str), "auto, cpu, cuda or cuda:N", "auto"),
    Key("custom_imports", lambda v: isinstance(v, (str, list, dict)), "a module name or a list of them", []),
    Key("load_from", lambda v: v is None or isinstance(v, str), "null or a weights file"),
    Key("sync_bn", *BOOL, default=False),
    Key("find_unused_parameters", *BOOL, default=False),
    Key("dist_backend", lambda v: v is None or isinstance(v, str), "null or a torch.distributed backend"),
    Key("max_image_pixels", lambda v: v is None or (_is_int(v) and v >= 0), "null or 0 (no limit) or a number of pixels"),
    Key("max_volume_slices", lambda v: v is None or (_is_int(v) and v >= 0), "null or 0 (no limit) or a number of slices"),
    Key("max_volume_bytes", lambda v: v is None or (_is_int(v) and v >= 0), "null or 0 (no limit) or a number of bytes"),
    Key("volume_uint16", lambda v: v in ("range", "full", "12bit"), "'range', 'full' or '12bit'", "range"),
)  # fmt: skip

BY_PATH = {k.path: k for k in KEYS}
TOP_LEVEL = tuple(k.path for k in KEYS if "." not in k.path)
#: sections whose keys are all listed above (an unknown one is a typo); other mappings are components
CLOSED_SECTIONS = ("train_cfg", "test_cfg", "ema", "auto_scale_lr", *(f"{s}_dataloader" for s in SPLITS))


def _section_keys(section: str) -> list[str]:
    """The keys the schema lists under ``section`` (``train_cfg`` -> ``max_epochs``, ...)."""
    prefix = section + "."
    return [k.path[len(prefix) :] for k in KEYS if k.path.startswith(prefix) and "." not in k.path[len(prefix) :]]


def _hint(key: str, accepted: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), accepted, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_top_level(cfg: dict, source: str = "config") -> None:
    """An unknown top-level key is one line with a did-you-mean (it would otherwise be ignored)."""
    for key in cfg:
        if key not in BY_PATH and not key.startswith("_"):  # "_name" keys hold YAML anchors
            raise ConfigError(f"{source}: unknown top-level key '{key}'{_hint(key, TOP_LEVEL)} (see docs/config.md)")


def check_section(section: dict, name: str, where: str | None = None) -> None:
    """Every key of a closed section (``train_cfg``, ``ema``, a ``*_dataloader``) is one the schema lists."""
    accepted = _section_keys(name)
    for key in section:
        if key not in accepted:
            raise ConfigError(f"{where or name}: unknown key '{key}'{_hint(key, accepted)} (accepted: {', '.join(accepted)})")


def check_config(cfg: dict, source: str = "config") -> None:
    """Check the framework's own keys: unknown keys, then each value's type and range, one line naming
    the key, the value and what is allowed, before anything is built (not a traceback minutes into training)."""
    check_top_level(cfg, source)
    for name in CLOSED_SECTIONS:
        if isinstance(cfg.get(name), dict):
            check_section(cfg[name], name, f"{source}: {name}")
    for key in KEYS:
        found, value = _lookup(cfg, key.path)
        if found and value is not None and not key.test(value):
            raise ConfigError(f"{source}: {key.path} must be {key.allowed}, got {value!r} ({type(value).__name__})")


def _lookup(cfg: dict, path: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def get(cfg: dict, path: str, where: str = "config") -> Any:
    """The value at ``path`` in ``cfg``, or the schema's default for it (a missing required key is an error).

    ``path`` is the full dotted path and ``cfg`` the whole config (``get(cfg, "train_cfg.max_epochs")``).
    """
    key = BY_PATH[path]  # a KeyError here is a bug: every key read must be in the schema
    found, value = _lookup(cfg, path)
    if found and value is not None:
        return value
    if key.default is REQUIRED:
        raise ConfigError(f"{where}: missing required key '{path}'")
    return key.default if not isinstance(key.default, (dict, list)) else type(key.default)(key.default)


def require(cfg: dict, key: str, where: str = "config") -> Any:
    """``cfg[key]``, or one line naming the missing key."""
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"{where}: missing required key '{key}'")
    return cfg[key]
