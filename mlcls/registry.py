"""A flat name -> class registry per component kind (in the style of fvcore's Registry).

Usage::

    from mlcls.registry import LOSSES

    @LOSSES.register_module()
    class MyLoss(torch.nn.Module): ...

    loss = LOSSES.build({"type": "MyLoss", "gamma": 2.0})
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Callable

import torch
import torchvision.transforms.v2 as T

from mlcls.errors import BuildError, MlclsError

__all__ = [
    "Registry",
    "DATASETS",
    "TRANSFORMS",
    "SAMPLERS",
    "MODELS",
    "LOSSES",
    "METRICS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "HOOKS",
]


def _origin(obj: Any) -> str:
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (TypeError, OSError):
        return getattr(obj, "__module__", "?") + "." + getattr(obj, "__qualname__", "?")


class Registry:
    """Maps names to classes (or factory functions) of one component kind.

    Args:
        name: the component kind, used in messages.
        locations: modules whose import registers the built-in components (as mmengine's
            ``locations``); imported on the first lookup, so ``LOSSES.build(...)`` works in a
            fresh interpreter that imported nothing else.
    """

    def __init__(self, name: str, locations: tuple[str, ...] = ()) -> None:
        self.name = name
        self.locations = locations
        self._obj_map: dict[str, Callable] = {}
        self._imported = not locations

    def _import_locations(self) -> None:
        if not self._imported:
            self._imported = True  # set first: the imported modules register into this registry
            for module in self.locations:
                importlib.import_module(module)

    def __contains__(self, name: str) -> bool:
        self._import_locations()
        return name in self._obj_map

    def __len__(self) -> int:
        self._import_locations()
        return len(self._obj_map)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {self.keys()})"

    def keys(self) -> list[str]:
        """Every registered name, the built-in ones included."""
        self._import_locations()
        return sorted(self._obj_map)

    def _register(self, name: str, obj: Callable) -> None:
        if name in self._obj_map and self._obj_map[name] is not obj:
            raise BuildError(
                f"{self.name}: '{name}' is already registered by {_origin(self._obj_map[name])}; "
                f"cannot register it again from {_origin(obj)} (choose another name)"
            )
        self._obj_map[name] = obj

    def register_module(self, name: str | None = None, module: Callable | None = None):
        """Register ``module`` (or, used as a decorator, the decorated class) under ``name``."""
        if module is not None:
            self._register(name or module.__name__, module)
            return module

        def deco(obj: Callable) -> Callable:
            self._register(name or obj.__name__, obj)
            return obj

        return deco

    def get(self, name: str) -> Callable:
        self._import_locations()
        try:
            return self._obj_map[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._obj_map, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise BuildError(
                f"unknown {self.name} type '{name}'{hint} "
                f"(registered: {', '.join(sorted(self._obj_map)[:30])}"
                f"{', ...' if len(self._obj_map) > 30 else ''})"
            ) from None

    def build(self, cfg: dict | None, **defaults: Any) -> Any:
        """Build an object from ``{type: Name, **kwargs}``.

        Args:
            cfg: the component's config dict; ``type`` names a registered class. Not modified.
            **defaults: keyword arguments used where ``cfg`` does not set them (parents pass what
                they know, e.g. a head's ``in_channels``).
        """
        if cfg is None:
            return None
        if not isinstance(cfg, dict) or "type" not in cfg:
            raise BuildError(f"{self.name}: expected a dict with a 'type' key, got {cfg!r}")
        kwargs = dict(defaults)
        kwargs.update({k: v for k, v in cfg.items() if k != "type"})
        obj_cls = cfg["type"] if callable(cfg["type"]) else self.get(cfg["type"])
        _check_kwargs(self.name, obj_cls, kwargs, user_keys=set(cfg) - {"type"})
        try:
            return obj_cls(**kwargs)
        except MlclsError:  # already says what is wrong, and where
            raise
        except (TypeError, ValueError) as e:
            raise BuildError(f"{self.name} '{getattr(obj_cls, '__name__', obj_cls)}': {e}") from e


def missing_members(obj: object, protocol: type) -> list[str]:
    """The members (attributes, methods, properties) of a ``typing.Protocol`` that ``obj`` lacks."""
    names = [n for n in getattr(protocol, "__annotations__", {}) if not n.startswith("_")]
    names += [n for n, v in vars(protocol).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))]
    return [n for n in dict.fromkeys(names) if not hasattr(obj, n)]


def check_part(obj: object, protocol: type, where: str) -> None:
    """One error naming what ``obj`` (built for ``where``, a config key) lacks of ``protocol``, the
    interface the rest of mlcls relies on (:mod:`mlcls.models.protocols`, the evaluator's), so a
    plugin is told at build time instead of failing with an ``AttributeError`` deep in a run.

    Raises:
        BuildError: e.g. ``model.head: MyHead lacks spatial_input (what every head declares: see mlcls.models.protocols.Head)``.
    """
    missing = missing_members(obj, protocol)
    if missing:
        raise BuildError(
            f"{where}: {type(obj).__name__} lacks {', '.join(missing)} "
            f"(what every {protocol.__name__.lower()} declares: see {protocol.__module__}.{protocol.__name__})"
        )


def _accepted_keys(obj_cls: Callable) -> list[str] | None:
    """The keyword arguments ``obj_cls`` accepts, following ``**kwargs`` up the classes whose
    ``__init__`` passes them on (a dataset to :class:`MultiLabelDataset`); None when open-ended."""
    inits = [c.__dict__["__init__"] for c in obj_cls.__mro__ if "__init__" in c.__dict__] if inspect.isclass(obj_cls) else [obj_cls]
    names: list[str] = []
    for depth, init in enumerate(inits):
        if getattr(init, "__qualname__", "") in ("Module.__init__", "object.__init__"):
            # a class without an __init__ of its own takes nothing; **kwargs that reach nn.Module
            # were the class's own to use (e.g. TimmBackbone's, for timm.create_model): open-ended
            return names if depth == 0 else None
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return None
        names += [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self" and n not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names
        if init in (object.__init__,) or getattr(init, "__module__", "").startswith("torch"):
            return None  # reaches a library class that takes anything
    return None


def _check_kwargs(reg: str, obj_cls: Callable, kwargs: dict, user_keys: set) -> None:
    """Reject a key the component does not accept, naming it and listing the valid ones."""
    valid = _accepted_keys(obj_cls)
    if valid is None:
        return
    params = set(valid)
    for key in kwargs:
        if key not in params:
            if key not in user_keys:  # a default the parent offers that this class doesn't take
                continue
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise BuildError(f"{reg} '{obj_cls.__name__}' got an unexpected key '{key}'{hint} (accepted: {', '.join(valid)})")
    for key in list(kwargs):
        if key not in params:
            del kwargs[key]


DATASETS = Registry("dataset", ("mlcls.datasets",))
TRANSFORMS = Registry("transform", ("mlcls.datasets.transforms",))
SAMPLERS = Registry("sampler", ("mlcls.datasets",))
MODELS = Registry("model", ("mlcls.models",))
LOSSES = Registry("loss", ("mlcls.losses",))
METRICS = Registry("metric", ("mlcls.evaluation",))
OPTIMIZERS = Registry("optimizer", ("mlcls.engine",))
SCHEDULERS = Registry("scheduler", ("mlcls.engine",))
HOOKS = Registry("hook", ("mlcls.engine",))
BATCH_AUGMENTS = Registry("batch augment", ("mlcls.datasets",))


def check_spec(cfg: dict, where: str) -> None:
    """Check a ``{type: Name, ...}`` section without building it: the name is registered (else
    the close names of every kind) and each key is one its class accepts; nested sections too.
    For values chosen before any training (a sweep's space)."""
    kinds = [DATASETS, TRANSFORMS, SAMPLERS, MODELS, LOSSES, METRICS, OPTIMIZERS, SCHEDULERS, HOOKS, BATCH_AUGMENTS]
    name = cfg.get("type")
    for value in cfg.values():
        if isinstance(value, dict) and "type" in value:
            check_spec(value, where)
    if not isinstance(name, str):
        return
    for reg in kinds:
        if name in reg:
            obj = reg.get(name)
            try:
                _check_kwargs(reg.name, obj, {k: v for k, v in cfg.items() if k != "type"}, set(cfg) - {"type"})
            except BuildError as e:
                raise BuildError(f"{where}: {e}") from None
            return
    names = {n for reg in kinds for n in reg.keys()}
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise BuildError(f"{where}: unknown type '{name}'{hint}")


def _register_torch() -> None:
    """torch optimizers, lr schedulers and torchvision v2 transforms, usable by their names."""
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            OPTIMIZERS.register_module(name, obj)
    sched = torch.optim.lr_scheduler
    for name in dir(sched):
        obj = getattr(sched, name)
        if inspect.isclass(obj) and issubclass(obj, sched.LRScheduler) and obj is not sched.LRScheduler:
            SCHEDULERS.register_module(name, obj)
    for name in dir(T):
        obj = getattr(T, name)
        if inspect.isclass(obj) and issubclass(obj, T.Transform) and obj is not T.Transform:
            TRANSFORMS.register_module(name, obj)


_register_torch()
