from mlcls.engine.ema import ModelEMA
from mlcls.engine.hooks import (
    CheckpointHook,
    CollapseGuardHook,
    EarlyStoppingHook,
    Hook,
    LoggerHook,
    ThresholdTuningHook,
    build_hooks,
)
from mlcls.engine.optim import build_optimizer, build_scheduler
from mlcls.engine.trainer import Trainer

__all__ = [
    "Trainer", "ModelEMA", "Hook", "CheckpointHook", "LoggerHook", "ThresholdTuningHook", "CollapseGuardHook",
    "EarlyStoppingHook", "build_hooks", "build_optimizer", "build_scheduler",
]  # fmt: skip
