"""Optimizers (with per-parameter-group rules) and per-iteration lr schedules from config."""

from __future__ import annotations

import copy
import inspect
import logging
import re

import torch
import torch.nn as nn

from mlcls.errors import ConfigError
from mlcls.registry import OPTIMIZERS, SCHEDULERS

logger = logging.getLogger("mlcls")

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


FUSABLE = ("Adam", "AdamW", "SGD")


def _prefer_fused(cfg: dict, model: nn.Module) -> None:
    """On CUDA, Adam/AdamW/SGD default to ``fused=True``: one kernel per step, and a non-finite step is
    skipped inside it from a flag tensor (no host-device sync; see ``Trainer._step_unless_poisoned``).
    A config that sets ``fused`` or ``foreach`` keeps its choice."""
    if cfg.get("type") not in FUSABLE or "fused" in cfg or "foreach" in cfg:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    if params and all(p.is_cuda and p.is_floating_point() for p in params):
        if "fused" in inspect.signature(OPTIMIZERS.get(cfg["type"])).parameters:
            cfg["fused"] = True


def build_optimizer(cfg: dict, model: nn.Module) -> torch.optim.Optimizer:
    """Build ``{type: SGD, lr: 0.1, ..., paramwise_cfg: {...}}`` over the model's trainable parameters.

    ``paramwise_cfg`` (mmcls names):
        norm_decay_mult: weight-decay multiplier for normalisation layers' parameters (0 = none).
        bias_decay_mult: weight-decay multiplier for biases.
        custom_keys: ``{name_substring: {lr_mult: x, decay_mult: y}}``, e.g. ``{head: {lr_mult: 10}}``;
            the longest matching key wins.
        layer_decay_rate: layer-wise lr decay (the BEiT/MAE fine-tuning recipe): a parameter of
            layer ``i`` gets ``lr x rate^(depth - i)``; the head (and neck) is layer ``depth``.
            Layers (see :func:`layer_ids`): ResNet stem 0 and stages 1-4; VGG blocks 0-4; timm
            models' embeddings 0 and ``blocks``/``stages``/``layers`` ``k`` at ``k + 1``.
            Multiplies with ``custom_keys``' ``lr_mult``.
    """
    cfg = copy.deepcopy(cfg)
    pw = cfg.pop("paramwise_cfg", None) or {}
    unknown = set(pw) - {"norm_decay_mult", "bias_decay_mult", "custom_keys", "layer_decay_rate"}
    if unknown:
        raise ConfigError(f"optimizer.paramwise_cfg: unknown key(s) {sorted(unknown)}")
    if "lr" not in cfg:
        raise ConfigError("optimizer: 'lr' is required")
    base_lr, base_wd = float(cfg["lr"]), float(cfg.get("weight_decay", 0.0))
    _prefer_fused(cfg, model)
    if not pw:
        params = [p for p in model.parameters() if p.requires_grad]
        return OPTIMIZERS.build(cfg, params=params)
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    custom = pw.get("custom_keys", {}) or {}
    rate = pw.get("layer_decay_rate")
    if rate is not None and not (isinstance(rate, (int, float)) and 0 < rate <= 1):
        raise ConfigError(f"optimizer.paramwise_cfg.layer_decay_rate must be in (0, 1], got {rate!r}")
    ids, depth = layer_ids(model) if rate is not None else ({}, 0)
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr_mult, decay_mult = 1.0, 1.0
        if id(p) in norm_params and "norm_decay_mult" in pw:
            decay_mult = float(pw["norm_decay_mult"])
        elif name.endswith(".bias") and "bias_decay_mult" in pw:
            decay_mult = float(pw["bias_decay_mult"])
        for key in sorted((k for k in custom if k in name), key=len, reverse=True)[:1]:
            lr_mult = float(custom[key].get("lr_mult", 1.0))
            decay_mult *= float(custom[key].get("decay_mult", 1.0))
        if rate is not None:
            lr_mult *= float(rate) ** (depth - ids[name])
        groups.setdefault((lr_mult, decay_mult), []).append(p)
    param_groups = [
        {"params": ps, "lr": base_lr * lm, "weight_decay": base_wd * dm, "lr_mult": lm, "decay_mult": dm} for (lm, dm), ps in groups.items()
    ]
    logger.info("optimizer param groups (lr_mult, decay_mult: n): %s", {k: len(v) for k, v in groups.items()})
    return OPTIMIZERS.build(cfg, params=param_groups)


_EMBEDDING = re.compile(r"^backbone\.(model\.)?(cls_token|pos_embed|reg_token|dist_token|patch_embed|stem|conv1|bn1)\b")
_NUMBERED = [
    re.compile(r"^backbone\.layer(\d+)\."),  # ResNet stages: layer1..4 -> 1..4
    re.compile(r"^backbone\.features\.(\d+)\."),  # VGG blocks 0..4
    re.compile(r"^backbone\.model\.(?:blocks|stages|layers)[._](\d+)[._]"),  # timm: block k -> k + 1
]


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """``({parameter name: layer id}, depth)`` for layer-wise lr decay; ``depth`` is the head's id."""
    ids: dict[str, int | None] = {}
    for name, _ in model.named_parameters():
        if not name.startswith("backbone."):
            ids[name] = None  # neck and head: the top
        elif _EMBEDDING.match(name):
            ids[name] = 0
        else:
            for k, pattern in enumerate(_NUMBERED):
                m = pattern.match(name)
                if m:
                    ids[name] = int(m.group(1)) + (1 if k == 2 else 0)
                    break
            else:
                ids[name] = None  # e.g. a ViT's final norm: with the head
    depth = max([i for i in ids.values() if i is not None], default=0) + 1
    return {n: depth if i is None else i for n, i in ids.items()}, depth


# Arguments of torch schedulers that count steps; with by_epoch they are given in epochs.
_STEP_ARGS = {
    "LinearLR": ["total_iters"],
    "ConstantLR": ["total_iters"],
    "PolynomialLR": ["total_iters"],
    "CosineAnnealingLR": ["T_max"],
    "StepLR": ["step_size"],
    "MultiStepLR": ["milestones"],
    "OneCycleLR": ["total_steps"],
    "CosineAnnealingWarmRestarts": ["T_0"],
}
# The argument that defaults to the scheduler's span (end - begin) when left out.
_SPAN_ARG = {
    "LinearLR": "total_iters",
    "ConstantLR": "total_iters",
    "PolynomialLR": "total_iters",
    "CosineAnnealingLR": "T_max",
    "OneCycleLR": "total_steps",
}


def build_scheduler(
    cfgs: list[dict] | dict | None, optimizer: torch.optim.Optimizer, iters_per_epoch: int, max_epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A scheduler that is stepped once per iteration, from a list of phases.

    Each entry is a torch scheduler by name plus ``by_epoch`` (default true: ``begin``, ``end`` and
    step-counting arguments such as ``T_max`` or ``milestones`` are in epochs and converted to
    iterations), ``begin`` (default: the previous entry's end) and ``end`` (default: max_epochs).
    Phases run back to back (``SequentialLR``). Example, linear warmup then cosine::

        param_scheduler:
          - {type: LinearLR, start_factor: 0.01, end: 1}
          - {type: CosineAnnealingLR, eta_min: 1.0e-6}
    """
    if not cfgs:
        return None
    if isinstance(cfgs, dict):
        cfgs = [cfgs]
    total = iters_per_epoch * max_epochs
    built, begins = [], []
    prev_end = 0
    for i, raw in enumerate(cfgs):
        cfg = copy.deepcopy(raw)
        where = f"param_scheduler[{i}]"
        by_epoch = bool(cfg.pop("by_epoch", True))
        unit = iters_per_epoch if by_epoch else 1
        begin = int(round(cfg.pop("begin", prev_end / unit if unit else 0) * unit))
        end = int(round(cfg.pop("end", max_epochs if by_epoch else total) * unit))
        if begin != prev_end:
            raise ConfigError(f"{where}: begins at iteration {begin} but the previous phase ends at {prev_end}; phases must be contiguous")
        if begin >= total:  # training ends before this phase would start (e.g. a 1-epoch run)
            logger.info("%s (%s) starts after the last iteration; skipped", where, cfg.get("type"))
            continue
        if end <= begin:
            raise ConfigError(f"{where}: empty phase (begin={begin}, end={end} iterations)")
        end = min(end, total)
        name = cfg.get("type")
        for arg in _STEP_ARGS.get(name, []):
            if arg in cfg and by_epoch:
                v = cfg[arg]
                cfg[arg] = [int(round(m * unit)) for m in v] if isinstance(v, list) else max(1, int(round(v * unit)))
        if name in _SPAN_ARG and _SPAN_ARG[name] not in cfg:
            cfg[_SPAN_ARG[name]] = end - begin
        if name == "OneCycleLR":
            cfg.setdefault("max_lr", [g["lr"] for g in optimizer.param_groups])
        if name == "ExponentialLR" and by_epoch:
            cfg["gamma"] = float(cfg["gamma"]) ** (1.0 / unit)
        built.append(SCHEDULERS.build(cfg, optimizer=optimizer))
        begins.append(begin)
        prev_end = end
    if len(built) == 1:
        return built[0]
    return torch.optim.lr_scheduler.SequentialLR(optimizer, built, milestones=begins[1:])
