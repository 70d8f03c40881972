"""What a hook is, when it runs, and what it may read and change on the trainer.

A hook is called at six points (``before_train, before_epoch, after_step, after_eval,
after_epoch, after_train``) with the trainer, seen through :class:`TrainerView`: the state it
may read, and the four calls by which it may change a run (stop it, store tuned thresholds,
ask for the gradient norm, add a validation scalar). Hooks run in :class:`Priority` order;
two hooks of one priority keep the order they were given in.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Protocol

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from mlcls.evaluation.metrics import Evaluator


class Priority(IntEnum):
    """When a hook runs relative to the others at each point (lower first)."""

    GUARD = 5  #: checks that add validation scalars others log (CollapseGuardHook)
    LOG = 10  #: logging, progress bars, TensorBoard (LoggerHook)
    NORMAL = 50  #: the default for user hooks
    TUNE = 60  #: results derived from validation that checkpoints must hold (ThresholdTuningHook)
    CHECKPOINT = 80  #: writes checkpoints (CheckpointHook)
    STOP = 90  #: decisions taken once the epoch's checkpoint is written (EarlyStoppingHook)


class TrainerView(Protocol):
    """The part of :class:`~mlcls.engine.trainer.Trainer` a hook may use."""

    # read-only state
    epoch: int  #: epochs completed
    iter: int  #: batches processed
    inner_iter: int  #: batches done in the current epoch
    max_epochs: int
    work_dir: Path
    meta: dict  #: config, class names, training label counts
    model: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader | None
    evaluator: Evaluator
    last_eval: tuple[torch.Tensor, torch.Tensor] | None  #: the last validation's (scores [N, C], targets [N, C])
    thresholds: dict | None  #: the tuned threshold record checkpoints store

    @property
    def iters_per_epoch(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    def current_lr(self) -> float: ...
    def save_checkpoint(self, path: str | Path) -> None: ...

    # the ways a hook changes the run
    def request_stop(self, reason: str) -> None:
        """End training after the current epoch (its checkpoint is still written)."""

    def set_thresholds(self, record: dict) -> None:
        """Store tuned per-class thresholds: every later checkpoint carries them."""

    def measure_grad_norm(self, every: int) -> None:
        """Measure the global gradient norm every ``every`` iterations (``outputs['grad_norm']``)."""

    def put_metric(self, name: str, value: float) -> None:
        """Add a scalar to the current validation's metrics (hooks of a later priority see and log it)."""


class Hook:
    """Base class; override the points you need. ``priority``: a :class:`Priority` (or any int; lower runs first)."""

    priority: int = Priority.NORMAL

    def before_train(self, trainer: TrainerView) -> None: ...
    def before_epoch(self, trainer: TrainerView) -> None: ...
    def after_step(self, trainer: TrainerView, outputs: dict) -> None: ...
    def after_eval(self, trainer: TrainerView, metrics: dict) -> None: ...
    def after_epoch(self, trainer: TrainerView) -> None: ...
    def after_train(self, trainer: TrainerView) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...

    def monitored_metrics(self) -> dict[str, str]:
        """``{option: metric name}`` this hook reads from validation metrics (checked before training)."""
        return {}


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The scalar entries of a metrics dict (per-class lists left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
