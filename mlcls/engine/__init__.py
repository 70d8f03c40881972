from mlcls.engine.ema import ModelEMA
from mlcls.engine.hook import Hook, Priority, TrainerView
from mlcls.engine.hooks import (
    CheckpointHook,
    CollapseGuardHook,
    EarlyStoppingHook,
    LoggerHook,
    ThresholdTuningHook,
    build_hooks,
)
from mlcls.engine.optim import build_optimizer, build_scheduler
from mlcls.engine.trainer import Trainer

__all__ = [
    "Trainer", "ModelEMA", "Hook", "Priority", "TrainerView", "CheckpointHook", "LoggerHook", "ThresholdTuningHook", "CollapseGuardHook",
    "EarlyStoppingHook", "build_hooks", "build_optimizer", "build_scheduler",
]  # fmt: skip
