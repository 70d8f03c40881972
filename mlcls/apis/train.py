"""Config-driven training: what ``tools/train.py`` runs."""

from __future__ import annotations

import logging
from pathlib import Path

from mlcls.apis.builder import (
    build_evaluator,
    build_loader,
    build_model_for,
    check_same_classes,
    require,
    resolve_device,
)
from mlcls.config import dump_config
from mlcls.engine import CheckpointHook, LoggerHook, Trainer, build_hooks, build_optimizer, build_scheduler
from mlcls.engine.trainer import add_default_hooks
from mlcls.errors import ConfigError
from mlcls.utils.misc import get_logger, set_random_seed

logger = logging.getLogger("mlcls")

TRAIN_CFG_KEYS = {"max_epochs", "val_interval", "amp", "accumulate", "grad_clip"}


def build_trainer(cfg: dict) -> Trainer:
    """Everything :class:`Trainer` needs, built from the resolved config."""
    seed = int(cfg.get("seed", 0))
    set_random_seed(seed, deterministic=bool(cfg.get("deterministic", False)))
    device = resolve_device(cfg.get("device"))
    train_loader = build_loader(cfg, "train", shuffle=True, seed=seed)
    if train_loader is None:
        raise ConfigError("config: missing required key 'train_dataloader'")
    classes = list(train_loader.dataset.classes)
    val_loader = build_loader(cfg, "val", shuffle=False, seed=seed)
    if val_loader is not None:
        check_same_classes(classes, val_loader.dataset.classes, "train_dataloader", "val_dataloader")
    model = build_model_for(cfg, classes, label_stats=train_loader.dataset.label_stats()).to(device)
    train_cfg = dict(require(cfg, "train_cfg"))
    unknown = set(train_cfg) - TRAIN_CFG_KEYS
    if unknown:
        raise ConfigError(f"train_cfg: unknown key(s) {sorted(unknown)} (accepted: {', '.join(sorted(TRAIN_CFG_KEYS))})")
    max_epochs = int(require(train_cfg, "max_epochs", "train_cfg"))
    accumulate = int(train_cfg.get("accumulate", 1))
    optimizer = build_optimizer(require(cfg, "optimizer"), model)
    steps_per_epoch = -(-len(train_loader) // accumulate)
    scheduler = build_scheduler(cfg.get("param_scheduler"), optimizer, steps_per_epoch, max_epochs)
    default_hooks = cfg.get("default_hooks") or {}
    hooks = build_hooks(list(default_hooks.values()) + list(cfg.get("custom_hooks") or []))
    hooks = add_default_hooks(hooks, [LoggerHook(), CheckpointHook()])
    logger.info(
        "model: %s, %.2fM parameters, %d classes", cfg["model"].get("type"), sum(p.numel() for p in model.parameters()) / 1e6, len(classes)
    )
    return Trainer(
        model,
        optimizer,
        train_loader,
        max_epochs,
        scheduler=scheduler,
        val_loader=val_loader,
        evaluator=build_evaluator(cfg.get("val_evaluator")),
        val_interval=int(train_cfg.get("val_interval", 1)),
        hooks=hooks,
        work_dir=cfg["work_dir"],
        device=device,
        amp=bool(train_cfg.get("amp", False)),
        accumulate=accumulate,
        grad_clip=train_cfg.get("grad_clip"),
        seed=seed,
        # the schedule's identity: a resumed run restores the scheduler state only if it matches
        meta={
            "config": cfg,
            "classes": classes,
            "schedule": {"param_scheduler": cfg.get("param_scheduler"), "max_epochs": max_epochs, "steps_per_epoch": steps_per_epoch},
        },
    )


def train_model(cfg: dict, resume: str | None = None) -> dict:
    """Train from a resolved config; ``resume`` is a checkpoint path or ``'auto'`` (work_dir/latest.pth)."""
    work_dir = Path(cfg["work_dir"])
    work_dir.mkdir(parents=True, exist_ok=True)
    get_logger(work_dir / "train.log")
    dump_config(cfg, work_dir / "config.yaml")
    trainer = build_trainer(cfg)
    if resume == "auto":
        latest = work_dir / "latest.pth"
        if latest.is_file():
            trainer.resume(latest)
        else:
            logger.info("--resume auto: no %s yet, starting from scratch", latest)
    elif resume:
        trainer.resume(resume)
    elif cfg.get("load_from"):
        from mlcls.apis.test import load_weights

        load_weights(trainer.model, cfg["load_from"])
    metrics = trainer.train()
    return metrics
