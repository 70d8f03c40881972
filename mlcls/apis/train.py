"""Config-driven training: what ``tools/train.py`` runs."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

import torch

from mlcls.apis.config import resolve_device
from mlcls.apis.loaders import build_loader
from mlcls.apis.model import build_model_for, check_same_classes
from mlcls.config import dump_config
from mlcls.datasets.batch_augments import BatchAugments
from mlcls.datasets.class_balanced import ClassBalancedDataset
from mlcls.datasets.protocols import LabelledDataset
from mlcls.engine import (
    CheckpointHook,
    CollapseGuardHook,
    LoggerHook,
    ModelEMA,
    Trainer,
    build_hooks,
    build_optimizer,
    build_scheduler,
)
from mlcls.engine.hook import Hook
from mlcls.engine.hooks import CoreShareHook
from mlcls.engine.trainer import unwrap
from mlcls.errors import CheckpointError, ConfigError
from mlcls.evaluation.metrics import build_evaluator
from mlcls.losses import SampleIndexed
from mlcls.schema import check_config, get, require
from mlcls.utils.checkpoint import load_model_weights
from mlcls.utils.cores import CoreShare
from mlcls.utils.dist import get_rank, get_world_size, init_distributed, is_dist, is_main_process
from mlcls.utils.fileio import WorkDirLock, sweep_stale_temporaries
from mlcls.utils.misc import get_logger, set_random_seed

logger = logging.getLogger("mlcls")


def scale_lr(cfg: dict, batch_size: int) -> None:
    """``auto_scale_lr``: multiply ``optimizer.lr`` by (total batch size / ``base_batch_size``).

    The total batch is the per-process batch x processes x accumulation steps (the linear
    scaling rule of Goyal et al.; mmcls's ``--auto-scale-lr``).
    """
    if not get(cfg, "auto_scale_lr.enable"):
        return
    base = get(cfg, "auto_scale_lr.base_batch_size")
    if not base:
        raise ConfigError("auto_scale_lr: 'base_batch_size' is required (the total batch size the lr was tuned for)")
    total = batch_size * get_world_size() * get(cfg, "train_cfg.accumulate")
    old = float(require(cfg, "optimizer")["lr"])
    cfg["optimizer"]["lr"] = old * total / float(base)
    logger.info("auto_scale_lr: total batch %d vs base %d: lr %.4g -> %.4g", total, base, old, cfg["optimizer"]["lr"])


def wrap_distributed(model: torch.nn.Module, cfg: dict, device: torch.device) -> torch.nn.Module:
    """SyncBN (CUDA only: torch's SyncBatchNorm has no CPU kernel) and DDP when torch.distributed is up."""
    if not is_dist():
        return model
    if get(cfg, "sync_bn"):
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("sync_bn: torch's SyncBatchNorm needs CUDA; on %s each process keeps its own batch statistics", device)
    return torch.nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None,
        find_unused_parameters=get(cfg, "find_unused_parameters"),
    )


# the hooks every run gets unless its config names them: a key set to null switches one off
DEFAULT_HOOKS = {"logger": LoggerHook, "checkpoint": CheckpointHook, "collapse_guard": CollapseGuardHook}


def build_default_and_custom_hooks(default_hooks: dict, custom_hooks: list) -> list:
    """``default_hooks`` (a dict; ``key: null`` disables that default) plus ``custom_hooks`` (a list).

    A default hook is added for each :data:`DEFAULT_HOOKS` key the config leaves out, unless a
    hook of its class is configured under another key or in ``custom_hooks``.
    """
    if not isinstance(default_hooks, dict):
        raise ConfigError(f"default_hooks: expected a mapping of name -> hook config, got {type(default_hooks).__name__}")
    hooks = build_hooks([c for c in default_hooks.values() if c is not None] + list(custom_hooks))
    have = {type(h) for h in hooks}
    disabled = {k for k, c in default_hooks.items() if c is None}
    return hooks + [cls() for key, cls in DEFAULT_HOOKS.items() if key not in disabled and cls not in have]


def build_batch_augments(cfgs: list | None, seed: int, model_cfg: dict):
    """``train_cfg.batch_augments`` as a :class:`BatchAugments` (None when absent or empty)."""
    if not cfgs:
        return None

    if not isinstance(cfgs, list):
        raise ConfigError(f"train_cfg.batch_augments: expected a list of {{type: Mixup|CutMix, ...}}, got {cfgs!r}")
    if (model_cfg.get("head") or {}).get("type") == "LabelPowersetHead":
        raise ConfigError(
            "train_cfg.batch_augments: soft mixed targets have no label combination; LabelPowersetHead cannot use Mixup/CutMix"
        )
    return BatchAugments(cfgs, seed=seed, rank=get_rank())


def _return_sample_index(dataset) -> None:
    """Make the training dataset (inside its repeat-factor wrapper) return each sample's index."""
    while isinstance(dataset, ClassBalancedDataset):
        dataset = dataset.dataset
    if not isinstance(dataset, LabelledDataset):
        raise ConfigError(f"the loss keeps state per training sample, and {type(dataset).__name__} cannot say which sample a batch row is")
    dataset.return_index = True


def build_trainer(cfg: dict) -> Trainer:
    """Everything :class:`Trainer` needs, built from the resolved config."""
    check_config(cfg)  # also when called with a dict that did not come through prepare_config
    seed = get(cfg, "seed")
    set_random_seed(seed, deterministic=get(cfg, "deterministic"))
    device = resolve_device(get(cfg, "device"))
    train_loader = build_loader(cfg, "train", "train", seed)
    if train_loader is None:
        raise ConfigError("config: missing required key 'train_dataloader'")
    classes = list(train_loader.dataset.classes)
    val_loader = build_loader(cfg, "val", "eval", seed)
    if val_loader is not None:
        check_same_classes(classes, val_loader.dataset.classes, "train_dataloader", "val_dataloader")
    label_stats = train_loader.dataset.label_stats()
    if not any(label_stats["pos"]):
        logger.warning(
            "the training set has no positive label at all (%d images): the model can only learn to predict nothing; "
            "check the labels column and the class list (python tools/check_dataset.py CONFIG)",
            label_stats["num_samples"],
        )
    model = build_model_for(cfg, classes, label_stats=label_stats).to(device)
    if any(isinstance(m, SampleIndexed) and m.uses_sample_index for m in model.modules()):
        _return_sample_index(train_loader.dataset)  # a loss keeps state per training sample: batches carry their indices
    cfg["model"] = model.resolved_config(cfg["model"])  # 'auto' values as numbers: checkpoints rebuild without the labels
    max_epochs = get(cfg, "train_cfg.max_epochs")
    accumulate = get(cfg, "train_cfg.accumulate")
    scale_lr(cfg, train_loader.batch_size or train_loader.batch_sampler.batch_size)
    ema = ModelEMA(model, decay=get(cfg, "ema.decay"), warmup=get(cfg, "ema.warmup")) if cfg.get("ema") else None
    model = wrap_distributed(model, cfg, device)
    optimizer = build_optimizer(require(cfg, "optimizer"), unwrap(model))
    steps_per_epoch = -(-len(train_loader) // accumulate)
    scheduler = build_scheduler(cfg.get("param_scheduler"), optimizer, steps_per_epoch, max_epochs)
    hooks = build_default_and_custom_hooks(get(cfg, "default_hooks"), get(cfg, "custom_hooks"))
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
        evaluator=build_evaluator(get(cfg, "val_evaluator")),
        val_interval=get(cfg, "train_cfg.val_interval"),
        hooks=hooks,
        work_dir=cfg["work_dir"],
        device=device,
        amp=get(cfg, "train_cfg.amp"),
        accumulate=accumulate,
        grad_clip=get(cfg, "train_cfg.grad_clip"),
        channels_last=get(cfg, "train_cfg.channels_last"),
        skip_nonfinite=get(cfg, "train_cfg.skip_nonfinite"),
        batch_augments=build_batch_augments(get(cfg, "train_cfg.batch_augments"), seed, cfg["model"]),
        ema=ema,
        val_weights=get(cfg, "ema.val_weights"),
        seed=seed,
        # the schedule's identity: a resumed run restores the scheduler state only if it matches
        meta={
            "config": cfg,
            "classes": classes,
            # training frequency per class: the evaluation report plots AP against it
            "train_counts": {"num_samples": label_stats["num_samples"], "pos": list(label_stats["pos"])},
            # the label fixes the training labels went through (None: the annotation file as it is)
            "label_fixes": getattr(train_loader.dataset, "label_fixes", None),
            "schedule": {"param_scheduler": cfg.get("param_scheduler"), "max_epochs": max_epochs, "steps_per_epoch": steps_per_epoch},
        },
    )


RUN_FILES = ("latest.pth", "best.pth", "epoch_*.pth", "train.log", "scalars.jsonl", "config.yaml", "thresholds.json", "tb")


def previous_run_files(work_dir: Path) -> list[Path]:
    """What an earlier run left in ``work_dir`` (checkpoints, logs, TensorBoard events)."""
    return sorted(p for pattern in RUN_FILES for p in work_dir.glob(pattern))


def claim_work_dir(work_dir: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder: continuing needs ``--resume``, replacing ``--overwrite``."""
    found = previous_run_files(work_dir)
    if not found or resume:
        return
    trained = [p for p in found if p.suffix == ".pth" or p.name in ("scalars.jsonl", "tb")]
    if not trained:  # only the log/config of an attempt that stopped before its first step: start afresh
        for p in found:
            p.unlink()
        return
    if not overwrite:
        names = ", ".join(p.name for p in trained[:4]) + (", ..." if len(trained) > 4 else "")
        raise ConfigError(
            f"{work_dir} already holds a run ({names}); continue it with --resume, start a new one with --work-dir DIR, "
            "or replace it with --overwrite"
        )

    for p in found:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    logger.warning("--overwrite: removed the earlier run's %d files from %s", len(found), work_dir)


def resume_candidates(work_dir: Path) -> list[Path]:
    """Checkpoints to resume from, newest first: latest.pth, then epoch_N.pth by N (a damaged
    latest.pth falls back to the newest loadable epoch file instead of ending the run)."""
    epochs = sorted(
        work_dir.glob("epoch_*.pth"), key=lambda p: int(p.stem.split("_")[1]) if p.stem.split("_")[1].isdigit() else -1, reverse=True
    )
    latest = work_dir / "latest.pth"
    out, seen = [], set()
    for p in ([latest] if latest.is_file() else []) + epochs:
        key = (p.stat().st_dev, p.stat().st_ino)  # latest.pth is a hard link to an epoch file: try each file once
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def train_model(cfg: dict, resume: str | None = None, launcher: str = "none", overwrite: bool = False, hooks: Sequence[Hook] = ()) -> dict:
    """Train from a resolved config.

    Args:
        cfg: the resolved config.
        resume: a checkpoint path or ``'auto'`` (work_dir/latest.pth when it exists).
        launcher: ``none`` (one process) or ``pytorch`` (started by torchrun: one process per
            device, torch.distributed initialised from its environment variables).
        overwrite: replace an earlier run in ``work_dir`` (without it, and without ``resume``,
            a work dir that holds a run is refused: two runs' logs and curves never mix).
        hooks: ready hook objects added to the config's (a caller's own, e.g. a sweep's report
            of each validation to its study).
    """
    if launcher == "pytorch":
        init_distributed(get(cfg, "dist_backend"))
        if torch.cuda.is_available() and resolve_device(get(cfg, "device")).type == "cuda":
            cfg["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    elif launcher != "none":
        raise ConfigError(f"--launcher: expected 'none' or 'pytorch', got '{launcher}'")
    work_dir = Path(cfg["work_dir"])
    created = not work_dir.exists()
    top = work_dir  # the outermost folder this run creates (work_dirs/ itself on a fresh checkout)
    while not top.parent.exists():
        top = top.parent
    lock = WorkDirLock(work_dir) if is_main_process() else None
    if lock is not None:  # before anything in the folder is looked at or changed: one run per work dir
        lock.acquire()
    try:
        # registered as one of the machine's trainings before the loaders count the cores left for their workers
        with CoreShare() as share:
            return _train_in(cfg, work_dir, resume, overwrite, created, [CoreShareHook(share), *hooks])
    finally:
        _close_log_file(work_dir / "train.log", remove=False)  # later log lines of this process are not this run's
        if lock is not None:
            lock.release()
            if created:
                _remove_if_empty(work_dir, top)


def _train_in(cfg: dict, work_dir: Path, resume: str | None, overwrite: bool, created: bool, hooks: list[Hook]) -> dict:
    """:func:`train_model` once the work dir is locked."""
    if is_main_process():
        claim_work_dir(work_dir, resume, overwrite)
    get_logger(work_dir / "train.log")
    if is_main_process():
        sweep_stale_temporaries(work_dir)
    if is_dist():
        logger.info("distributed: %d processes, backend %s", get_world_size(), torch.distributed.get_backend())
    try:
        trainer = build_trainer(cfg)
        trainer.hooks = sorted([*trainer.hooks, *hooks], key=lambda h: h.priority)
        if resume == "auto":
            candidates = resume_candidates(work_dir)
            if not candidates:
                logger.info("--resume auto: no %s yet, starting from scratch", work_dir / "latest.pth")
            for i, path in enumerate(candidates):
                try:
                    trainer.resume(path)
                    break
                except CheckpointError as e:
                    if i + 1 == len(candidates):
                        raise CheckpointError(f"--resume: no loadable checkpoint in {work_dir}; the last one tried: {e}") from None
                    logger.warning("--resume: %s is damaged (%s); trying the next newest, %s", path.name, e, candidates[i + 1].name)
        elif resume:
            trainer.resume(resume)
    except BaseException:
        if created and is_main_process():  # nothing was trained: leave no log of a run that never started
            _close_log_file(work_dir / "train.log")
        raise
    if is_main_process():  # once the run is accepted: the config that runs (scaled lr, 'auto' values written out)
        dump_config(trainer.meta["config"], work_dir / "config.yaml")
    if resume and trainer.epoch >= trainer.max_epochs and not trainer.inner_iter:
        logger.info(
            "the run in %s is complete (%d of %d epochs); to train longer, raise max_epochs and resume: "
            "--cfg-options train_cfg.max_epochs=%d --resume",
            work_dir, trainer.epoch, trainer.max_epochs, trainer.max_epochs * 2,
        )  # fmt: skip
        return trainer.val_metrics
    elif cfg.get("load_from"):
        load_model_weights(unwrap(trainer.model), cfg["load_from"])
        if trainer.ema is not None:  # average from the loaded weights, not the random init
            trainer.ema.module.load_state_dict(unwrap(trainer.model).state_dict())
    metrics = trainer.train()
    if is_main_process():
        report_outputs(work_dir)
    return metrics


def _close_log_file(path: Path, remove: bool = True) -> None:
    """Detach the run's log file from the ``mlcls`` logger; ``remove`` it too (a run that failed before it started)."""
    log = logging.getLogger("mlcls")
    for h in [h for h in log.handlers if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve()]:
        log.removeHandler(h)
        h.close()
    if remove:
        path.unlink(missing_ok=True)


def _remove_if_empty(work_dir: Path, top: Path) -> None:
    """Folders this call created (``work_dir`` up to ``top``) and left empty are removed: a run that
    failed before writing anything leaves no trace."""
    folder = work_dir
    try:
        while folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            if folder == top:
                break
            folder = folder.parent
    except OSError:
        pass


def report_outputs(work_dir: Path) -> None:
    """Say where the run's files are (checkpoints, logs, TensorBoard)."""
    found = previous_run_files(work_dir)
    ckpts = [p.name for p in found if p.suffix == ".pth"]
    logs = [p.name for p in found if p.suffix in (".log", ".jsonl", ".yaml", ".json")]
    logger.info("outputs in %s: checkpoints %s; logs %s%s", work_dir, ", ".join(ckpts) or "none", ", ".join(logs),
                f"; TensorBoard: tensorboard --logdir {work_dir / 'tb'}" if (work_dir / "tb").is_dir() else "")  # fmt: skip
